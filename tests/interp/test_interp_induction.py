"""Acceptance: the toolkit finds the induction circuit in a 2-layer attention-only model
trained here (conftest.induction_model, about a minute on one CPU thread)."""

from __future__ import annotations

import math

import pytest
import torch

import gptscope.interp as gi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task(induction_model, rep_tokens):
    """Clean: 20 random tokens repeated; corrupted: a different first half, so the second
    half is no longer a repeat. Metric: mean log-prob of the second half, 1 clean, 0
    corrupted."""
    model, clean = induction_model, rep_tokens
    corrupted = clean.clone()
    corrupted[:, :20] = torch.randint(0, 64, (len(clean), 20),
                                      generator=torch.Generator().manual_seed(99))

    def logprob(logits):
        return logits[:, 19:-1].log_softmax(-1).gather(-1, clean[:, 20:, None]).mean()

    with torch.no_grad():
        lp_clean, lp_corr = logprob(model(clean)), logprob(model(corrupted))

    def metric(logits):
        return (logprob(logits) - lp_corr) / (lp_clean - lp_corr)

    return model, clean, corrupted, metric


def _second_half_loss(model, tokens, fwd_hooks=()):
    per = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                               fwd_hooks=list(fwd_hooks))
    return per[:, 20:].mean().item()


def test_model_learned_induction(induction_model, rep_tokens):
    per = induction_model(rep_tokens, return_type="loss", loss_per_token=True)
    assert per[:, :19].mean() > 0.9 * math.log(64)  # the first half is unpredictable
    assert per[:, 20:].mean() < 1.0  # the repeat is predicted
    print(f"training took {induction_model.train_seconds:.1f}s")


def test_head_detectors_find_the_circuit(induction_model):
    induction = gi.head_scores(induction_model, "induction")
    previous = gi.head_scores(induction_model, "previous_token")
    assert induction[1].max() > 0.4 and induction[0].max() < 0.2
    assert previous[0].max() > 0.4 and previous[1].max() < 0.2


def test_detect_head_agrees_on_the_trained_model(induction_model, to_tl, rep_tokens):
    from transformer_lens.head_detector import detect_head

    tl = to_tl(induction_model)
    tokens = rep_tokens[:1, :39]  # detect_head needs seq_len < n_ctx
    tl.to_tokens = lambda *a, **k: tokens
    for kind in ("previous_token", "induction"):
        theirs = detect_head(tl, "ids", f"{kind}_head")
        ours = gi.head_scores(induction_model, kind, tokens=tokens, rows="all")
        torch.testing.assert_close(ours, theirs.float(), atol=1e-4, rtol=1e-3)


def test_ablating_induction_heads_breaks_the_repeat(induction_model, rep_tokens):
    model = induction_model
    scores = gi.head_scores(model, "induction")[1]
    top = int(scores.argmax())
    weakest = int(scores.argmin())

    def ablate(heads):
        def fn(z, hook):
            z = z.clone()
            z[:, :, heads] = 0.0
            return z
        return [("blocks.1.attn.hook_z", fn)]

    base = _second_half_loss(model, rep_tokens)
    one = _second_half_loss(model, rep_tokens, ablate([top]))
    heads = [h for h in range(4) if scores[h] > 0.4]
    all_induction = _second_half_loss(model, rep_tokens, ablate(heads))
    other = _second_half_loss(model, rep_tokens, ablate([weakest]))
    print(f"second-half loss {base:.3f}; top head ablated {one:.3f}; all {len(heads)} "
          f"induction heads {all_induction:.3f}; weakest head {other:.3f}")
    # Training grows several redundant induction heads: one alone raises the loss by a
    # good share, all of them together send it back to chance.
    assert one > 1.3 * base and one - base > 0.15
    assert all_induction > 0.75 * math.log(64)
    assert other < one


def test_logit_lens_sees_the_answer_only_after_layer_1(induction_model, rep_tokens):
    lens = gi.logit_lens(induction_model, rep_tokens)
    probs = induction_model(rep_tokens).softmax(-1)
    torch.testing.assert_close(lens.top_probs[-1], probs.topk(5, dim=-1).values, atol=1e-5,
                               rtol=1e-4)
    second = lens.target_probs[:, :, 20:-1].mean((1, 2))  # [layer]
    assert second[-1] > 0.5 and second[1] < 0.1 and lens.labels == ["0_pre", "1_pre",
                                                                    "final_post"]
    first = lens.first_layer_above(0.5)[:, 20:-1]
    assert ((first == 2) | (first == -1)).all() and (first == 2).float().mean() > 0.5


def test_dla_credits_the_induction_heads(induction_model, rep_tokens):
    model = induction_model
    prefix = rep_tokens[:, :30]
    correct, wrong = rep_tokens[:, 30], rep_tokens[:, 0]
    result = gi.dla(model, prefix, correct, wrong)
    logits = model(prefix)[:, -1]
    diff = logits.gather(1, correct[:, None]) - logits.gather(1, wrong[:, None])
    assert result.logit_diff == pytest.approx(diff.mean().item(), abs=1e-4)
    assert abs(result.total() - result.logit_diff) < 1e-4 and abs(result.rest) < 1e-4
    induction = gi.head_scores(model, "induction")
    top_dla = result.heads.flatten().argmax()
    assert induction.flatten()[top_dla] > 0.4


def test_attribution_patching_tracks_activation_patching(task):
    model, clean, corrupted, metric = task
    for kind, threshold in (("z", 0.8), ("attn_out", 0.5)):
        act = gi.activation_patching(model, clean, corrupted, metric, kind=kind)
        attr = gi.attribution_patching(model, clean, corrupted, metric, kind=kind)
        r = torch.corrcoef(torch.stack([act.flatten(), attr.flatten()]))[0, 1].item()
        print(f"{kind}: pearson r = {r:.3f}")
        assert r > threshold
    heads = gi.activation_patching(model, clean, corrupted, metric, kind="z")
    induction = gi.head_scores(model, "induction")
    assert induction.flatten()[heads.flatten().argmax()] > 0.4


def test_path_patching_finds_the_k_composition(task):
    """Previous-token info reaches the induction heads through their keys, not queries.

    Restoring only the keys makes the heads find the right position but copy the corrupted
    token there, so the metric drops below the corrupted run: a large *negative* effect.
    """
    model, clean, corrupted, metric = task
    induction = gi.head_scores(model, "induction")
    receivers = [(1, h) for h in range(4) if induction[1, h] > 0.4]
    layer0 = [(0, h) for h in range(4)]
    k = gi.path_patch(model, clean, corrupted, metric, layer0, receivers, "k")
    q = gi.path_patch(model, clean, corrupted, metric, layer0, receivers, "q")
    print(f"path layer 0 -> induction heads: k {k:+.3f}, q {q:+.3f}")
    assert abs(k) > 0.2 and abs(q) < 0.05
    direct = gi.path_patch(model, clean, corrupted, metric, [(1, h) for h in range(4)],
                           "logits")
    assert direct == pytest.approx(1.0, abs=0.02)  # the last layer only writes to the logits
    per_head = gi.path_patching(model, clean, corrupted, metric, receivers, "k")
    assert per_head.shape == (2, 4) and torch.isnan(per_head[1]).all()


def test_probe_finds_previous_token_after_layer_0(induction_model):
    """The previous token's identity is absent from the embedding at a position, but the
    previous-token heads write it into the residual stream."""
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 64, (100, 40), generator=g)
    labels = torch.full_like(tokens, -1)  # position 0 has no previous token: skipped
    labels[:, 1:] = tokens[:, :-1]
    results = gi.probe_layers(induction_model, tokens, labels, control="shuffle")
    embed, layer0 = results["hook_embed"], results["blocks.0.hook_resid_post"]
    print({k: round(v.accuracy, 3) for k, v in results.items()})
    assert embed.accuracy < 0.06  # chance is 1/64
    assert layer0.accuracy > 0.3 and layer0.selectivity > 0.25
