"""Looking inside what tuning changed (`gptscope.align.inside`) on hand-made "tuned" models:
a copy, a bias shifted by a known vector, one edited layer, a grown vocabulary; and the
report section a tuned run gets. Untrained tiny models: no training, a few seconds."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from gptscope.align import inside
from gptscope.align.inside import compare_models, residual_points, weight_changes
from gptscope.config import ModelConfig
from gptscope.data.stories import Span, Story
from gptscope.io.checkpoint import save
from gptscope.model.transformer import Transformer
from gptscope.report.alignment import HEADING
from gptscope.report.build import build_report
from gptscope.tokenizers.char import CharTokenizer
from gptscope.train.config import DataSpec, TrainConfig

CHARS = "\n ,.abcdefghijklmnoprstuvwxyz"  # the stories corpus's characters
FAST = {"n_stories": 40, "pairs": inside.slot_pairs(24), "prompts": inside.neutral_prompts()[::6]}


def tiny(d_vocab: int = len(CHARS), seed: int = 0) -> Transformer:
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_vocab=d_vocab, n_ctx=128, seed=seed)
    model = Transformer(cfg).eval()
    model.tokenizer = CharTokenizer(CHARS, special_tokens=["<|a|>", "<|b|>", "<|c|>"][
        : d_vocab - len(CHARS)])
    return model


def shifted(model: Transformer, name: str, delta: torch.Tensor) -> Transformer:
    out = copy.deepcopy(model)
    with torch.no_grad():
        dict(out.named_parameters())[name].add_(delta)
    return out


def test_identical_models_change_nothing_and_the_cosine_is_undefined() -> None:
    base = tiny()
    diff = compare_models(base, copy.deepcopy(base), **FAST)
    assert set(diff.weight_change.values()) == {0.0} and diff.block_change == [0.0, 0.0]
    assert set(diff.param_change.values()) == {0.0}
    assert diff.change_norm == [0.0] * 3
    assert all(math.isnan(c) for c in diff.cosine + diff.activation_cos)
    assert diff.steer_coef[1:] == [0.0, 0.0]  # no way along the vector either
    assert diff.probe_base == diff.probe_tuned and diff.lens_base == diff.lens_tuned
    assert diff.labels == ["embed", "after L0", "after L1"]
    assert diff.hooks == residual_points(base)
    assert "n/a" in diff.summary()
    json.dumps(diff.to_dict())  # NaN included


def test_a_bias_shift_is_exactly_that_residual_change_with_cosine_one() -> None:
    """Adding u to layer 0's MLP b_out adds u to the stream after layer 0, nothing before."""
    base = tiny()
    u = torch.randn(32, generator=torch.Generator().manual_seed(3))
    tuned = shifted(base, "blocks.0.mlp.b_out", u)
    tokens = inside._encode(base, FAST["prompts"])
    change = inside.residual_change(inside._residuals(base, tokens),
                                    inside._residuals(tuned, tokens))
    assert torch.equal(change[0], torch.zeros(32))
    torch.testing.assert_close(change[1], u, atol=1e-5, rtol=0)
    diff = compare_models(base, tuned, steering=u, **FAST)
    assert math.isnan(diff.cosine[0])
    assert diff.cosine[1] == pytest.approx(1.0, abs=1e-6)
    assert diff.steer_coef[1] == pytest.approx(1.0, abs=1e-5)
    assert diff.change_norm[1] == pytest.approx(float(u.norm()), rel=1e-5)
    assert diff.probe_base[0] == diff.probe_tuned[0] and diff.lens_base[0] == diff.lens_tuned[0]
    # the weights: only that layer's MLP moved, by |u| / ||L0's MLP weights||
    mlp = [p for n, p in base.named_parameters() if n.startswith("blocks.0.mlp.")]
    expected = float(u.norm() / torch.cat([p.detach().flatten() for p in mlp]).norm())
    assert diff.weight_change["L0 mlp"] == pytest.approx(expected, rel=1e-5)
    assert {k for k, v in diff.weight_change.items() if v} == {"L0 mlp"}
    assert {k for k, v in diff.param_change.items() if v} == {"blocks.0.mlp.b_out"}


def test_adding_the_steering_vector_itself_reads_as_cosine_one() -> None:
    """A tuning that is exactly the base's sentiment vector at one point: cosine 1 there."""
    base = tiny()
    vector = inside.sentiment_steering(base, FAST["pairs"])[2]  # after L1
    diff = compare_models(base, shifted(base, "blocks.1.mlp.b_out", 5 * vector), **FAST)
    assert diff.cosine[2] == pytest.approx(1.0, abs=1e-5)
    assert diff.steer_coef[2] == pytest.approx(5.0, rel=1e-4)
    assert math.isnan(diff.cosine[0]) and math.isnan(diff.cosine[1])  # no change before it
    assert diff.activation_cos[2] < 0.9


def test_one_edited_layer_changes_only_there() -> None:
    base = tiny()
    w = dict(base.named_parameters())["blocks.1.attn.W_Q"]
    edit = torch.zeros_like(w)
    edit[0, 0, 0] = 0.5
    groups, blocks, params = weight_changes(base, shifted(base, "blocks.1.attn.W_Q", edit))
    attn = torch.cat([p.detach().flatten() for n, p in base.named_parameters()
                      if n.startswith("blocks.1.attn.")])
    assert groups["L1 attn"] == pytest.approx(0.5 / float(attn.norm()), rel=1e-5)
    assert [k for k, v in groups.items() if v] == ["L1 attn"]
    assert blocks[0] == 0.0 and blocks[1] > 0.0
    assert params["blocks.1.attn.W_Q"] == pytest.approx(0.5 / float(w.detach().norm()), rel=1e-5)
    assert list(groups) == ["embed", "L0 norm", "L0 attn", "L0 mlp", "L1 norm", "L1 attn",
                            "L1 mlp", "unembed"]


def test_a_grown_vocabulary_compares_the_old_ids_rows() -> None:
    base = tiny()
    grown = tiny(d_vocab=len(CHARS) + 3, seed=5)
    state = base.state_dict()
    new = grown.state_dict()
    for name, w in state.items():
        if w.shape == new[name].shape:
            new[name] = w.clone()
        elif name == "embed.W_E":
            new[name][: len(CHARS)] = w
        else:  # unembed.W_U [d_model, d_vocab]
            new[name][:, : len(CHARS)] = w
    grown.load_state_dict(new)
    diff = compare_models(base, grown, **FAST)
    assert set(diff.weight_change.values()) == {0.0}  # the 3 new rows are not compared
    assert diff.change_norm == [0.0] * 3 and diff.probe_base == diff.probe_tuned
    edit = torch.zeros_like(grown.embed.W_E)
    edit[4, :] = 1.0  # an old id's row
    groups, _, _ = weight_changes(base, shifted(grown, "embed.W_E", edit))
    size = torch.cat([base.embed.W_E.detach().flatten(), base.pos_embed.W_pos.detach().flatten()])
    assert groups["embed"] == pytest.approx(math.sqrt(32) / float(size.norm()), rel=1e-5)
    with pytest.raises(ValueError, match="fewer ids"):
        weight_changes(grown, base)


def test_models_of_other_shapes_are_refused() -> None:
    other = Transformer(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=len(CHARS),
                                    n_ctx=128))
    with pytest.raises(ValueError, match="d_model"):
        compare_models(tiny(), other)


def test_random_cosine_is_the_expected_absolute_cosine() -> None:
    assert inside.random_cosine(2) == pytest.approx(2 / math.pi)  # E|cos t|, t uniform
    assert inside.random_cosine(3) == pytest.approx(0.5)  # E|z|, z uniform on [-1, 1]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 128, generator=g)
    sampled = inside.cosines(x, torch.ones(128).expand_as(x)).abs().mean()
    assert float(sampled) == pytest.approx(inside.random_cosine(128), abs=0.002)
    assert inside.random_cosine(128) == pytest.approx(math.sqrt(2 / (math.pi * 128)), rel=0.01)


def test_the_inputs() -> None:
    text = "the dog loves the ball in the park. mary sees the cup by the river."
    story = Story(text, (Span(0, 35, {"kind": "sentiment", "sentiment": "positive"}),
                         Span(36, len(text), {"kind": "sentiment", "sentiment": "neutral"})))
    labels = inside._sentiment_chars(story)
    assert labels[:13] == [-1] * 13  # "the dog loves": unknown until "loves" ends
    assert labels[13:35] == [1] * 22 and labels[35:] == [-1] * (len(text) - 35)
    tok = CharTokenizer(CHARS)
    pos, neg = inside.sentiment_token_ids(tok)
    assert [tok.decode([i]) for i in pos] == ["l", "p"]
    assert [tok.decode([i]) for i in neg] == ["a", "c", "f", "s"]
    for p, n in inside.slot_pairs(40):
        assert p.endswith(" the ") and n.endswith(" the ") and p != n
        assert p.split()[:-2] == n.split()[:-2]  # the same subject, another verb
    prompts = inside.neutral_prompts()
    assert len(prompts) == 180 and all(p.startswith("\n") and p.endswith(" ") for p in prompts)
    tokens, lab = inside.sentiment_probe_data(tok, 5, n_ctx=64)
    assert tokens.shape == lab.shape and tokens.shape[1] <= 64 and (lab == 1).any()


def _run(folder: Path, model: Transformer, **train: object) -> Path:
    save(model, folder)
    (folder / "train_config.json").write_text(TrainConfig(**train).to_json())
    return folder


def test_a_tuned_runs_report_shows_the_comparison(tmp_path: Path) -> None:
    base = tiny()
    u = torch.randn(32, generator=torch.Generator().manual_seed(3))
    base_run = _run(tmp_path / "base", base, data=DataSpec(corpus="stories"))
    tuned_run = _run(tmp_path / "tuned", shifted(base, "blocks.0.mlp.b_out", u),
                     data=DataSpec(corpus="stories"), init_from=str(base_run))
    html = build_report(tuned_run).html()
    assert HEADING in html
    for title in ("relative weight change by component", "sentiment probe along the residual",
                  "logit-lens sentiment at the sentiment slot",
                  "is the tuning a learned steering vector?"):
        assert title in html
    assert html.count("<svg") >= 4 and "cos(change, vector)" in html
    assert "https://" not in html.split(HEADING, 1)[1].split("<h2", 1)[0]  # offline
    assert HEADING not in build_report(base_run).html()  # a base run has no base


def test_the_report_says_why_it_cannot_compare(tmp_path: Path) -> None:
    base = tiny()
    gone = _run(tmp_path / "orphan", base, init_from=str(tmp_path / "deleted"))
    assert "not there any more" in build_report(gone).html()
    other = _run(tmp_path / "base", base)  # a task run: no sentiment measures
    html = build_report(_run(tmp_path / "tuned", copy.deepcopy(base), init_from=str(other)))
    html = html.html()
    assert "relative weight change by component" in html
    assert "sentiment probe along" not in html and "sentiment measures" in html
