"""Steering vectors: construction, application at chosen positions, files, measures."""

import pytest
import torch

import gptscope as gs
from gptscope.steering import (
    SteeringVector,
    generation_effect,
    logit_diff_effect,
    loss_side_effect,
    sweep,
)

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def model():
    cfg = gs.ModelConfig(n_layers=2, d_model=32, n_heads=4, d_vocab=50, n_ctx=32, seed=0)
    return gs.Transformer(cfg).eval()


def cached(model, tokens, hook=HOOK):
    return model.run_with_cache(tokens, names_filter=hook)[1][hook]


def test_contrast_vector_is_the_activation_difference(model):
    pos, neg = torch.tensor([1, 2, 3]), torch.tensor([4, 5])
    vec = SteeringVector.from_contrast(model, pos, neg, HOOK)
    a, b = cached(model, pos)[0], cached(model, neg)[0]
    assert vec.vector.shape == (3, 32)
    torch.testing.assert_close(vec.vector[:2], a[:2] - b)
    torch.testing.assert_close(vec.vector[2], a[2])  # the shorter prompt is zero-padded
    last = SteeringVector.from_contrast(model, pos, neg, HOOK, aligned=False)
    torch.testing.assert_close(last.vector, a[-1] - b[-1])


def test_pairs_vector_is_the_mean_difference(model):
    pairs = [(torch.tensor([1, 2]), torch.tensor([3, 4])), (torch.tensor([5, 6]),
                                                            torch.tensor([7, 8]))]
    vec = SteeringVector.from_pairs(model, pairs, HOOK)
    diffs = [cached(model, p)[0, -1] - cached(model, n)[0, -1] for p, n in pairs]
    torch.testing.assert_close(vec.vector, (diffs[0] + diffs[1]) / 2)


@pytest.mark.parametrize("positions, changed", [("all", range(6)), (2, range(2, 6))])
def test_apply_adds_coefficient_times_vector_at_chosen_positions(model, positions, changed):
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9]])
    vec = SteeringVector.from_direction(torch.randn(32), HOOK)
    clean = cached(model, tokens)
    with vec.apply(model, coefficient=2.5, positions=positions):
        steered = cached(model, tokens)
    expected = clean.clone()
    expected[:, list(changed)] += 2.5 * vec.vector
    torch.testing.assert_close(steered, expected)
    assert all(not p.fwd_fns for p in model.hook_dict.values())  # removed afterwards


def test_aligned_vector_lands_on_the_prompt_start(model):
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9]])
    vec = SteeringVector(torch.randn(2, 32), HOOK)
    clean = cached(model, tokens)
    with vec.apply(model, coefficient=1.0, positions=1):
        steered = cached(model, tokens)
    expected = clean.clone()
    expected[:, 1:3] += vec.vector
    torch.testing.assert_close(steered, expected)


@pytest.mark.parametrize("positions", ["all", 5, "prompt"])
def test_generation_with_and_without_cache_agree_under_steering(model, positions):
    tokens = torch.tensor([[3, 1, 4, 1]])
    vec = SteeringVector.from_direction(torch.randn(32, generator=torch.Generator().manual_seed(1)),
                                        HOOK)
    with vec.apply(model, coefficient=8.0, positions=positions):
        fast = model.generate(tokens, 12, temperature=0, use_cache=True)
    with vec.apply(model, coefficient=8.0, positions=positions if positions != "prompt" else 0):
        # Without a cache every step re-runs the whole prefix; "prompt" is only defined with
        # a cache, so compare the other modes exactly.
        slow = model.generate(tokens, 12, temperature=0, use_cache=False)
    if positions != "prompt":
        assert torch.equal(fast, slow)
    plain = model.generate(tokens, 12, temperature=0)
    assert not torch.equal(fast, plain)  # a strong vector changes the greedy continuation


def test_logit_diff_effect_is_exact_without_normalization():
    cfg = gs.ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=20, n_ctx=16,
                         normalization=None, seed=3)
    model = gs.Transformer(cfg).eval()
    direction = model.W_U[:, 4] - model.W_U[:, 7]
    vec = SteeringVector(direction.detach(), "blocks.0.hook_resid_post")
    out = logit_diff_effect(model, vec, [torch.tensor([1, 2, 3])], 4, 7, coefficient=0.5)
    assert out["change"] == pytest.approx(0.5 * direction.dot(direction).item(), rel=1e-4)


def test_sweep_measures_generations_and_side_effect_at_each_coefficient():
    """A vector that raises one token's logit by 30 makes every sampled step that token:
    the generation effect goes to 1, and the loss on text without it goes up."""
    from gptscope.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abcxz ")
    cfg = gs.ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=tok.vocab_size, n_ctx=32,
                         normalization=None, seed=3)
    model = gs.Transformer(cfg).eval()
    model.tokenizer = tok
    w = model.W_U[:, tok.encode("z")[0]].detach()
    vec = SteeringVector(w / w.dot(w), "blocks.0.hook_resid_post")  # +1 on z's logit per unit

    def only_z(text: str) -> float:
        return float(set(text) == {"z"})

    prompts, texts = ["ab", "ca"], ["abcabc", "cabbac"]
    result = sweep(model, vec, [0.0, 30.0], prompts, only_z, texts, samples_per_prompt=3,
                   max_new_tokens=4, seed=5)
    assert result.effect[0] == generation_effect(model, None, prompts, only_z,
                                                 samples_per_prompt=3, max_new_tokens=4, seed=5)
    assert result.effect[0] < 0.5 and result.effect[1] == 1.0
    assert result.loss_increase[0] == pytest.approx(0.0, abs=1e-6)
    assert result.loss_increase[1] > 1.0  # the loss more than doubles
    assert result.best(max_loss_increase=0.1) == (0.0, 0.0)
    assert result.best(max_loss_increase=1e9) == (30.0, pytest.approx(1.0 - result.effect[0]))


def test_zero_coefficient_has_no_side_effect(model):
    vec = SteeringVector.from_direction(torch.randn(32), HOOK)
    texts = [torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7])]
    assert loss_side_effect(model, vec, texts, 0.0)["relative_increase"] == pytest.approx(0.0)
    assert loss_side_effect(model, vec, texts, 20.0)["relative_increase"] != pytest.approx(0.0)


def test_save_load_round_trip(tmp_path, model):
    vec = SteeringVector(torch.randn(3, 32), HOOK)
    vec.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(tmp_path / "v.safetensors")
    assert back.hook_name == HOOK and torch.equal(back.vector, vec.vector)
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        SteeringVector.load(tmp_path / "bad.safetensors")


def test_bad_vectors_are_refused(model):
    with pytest.raises(ValueError, match=r"\[32\]"):
        SteeringVector(torch.randn(31), HOOK).hook_fn(model)
    with pytest.raises(ValueError, match="did you mean"):
        SteeringVector(torch.randn(32), "blocks.1.hook_resid_pr").hook_fn(model)
    with pytest.raises(ValueError, match="positions"):
        SteeringVector(torch.randn(32), HOOK).hook_fn(model, positions="end")
