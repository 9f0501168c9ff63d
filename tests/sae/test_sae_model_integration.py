"""SAEs spliced into a gptscope Transformer: hooks, CE loss recovered, streaming training."""

from __future__ import annotations

import pytest
import torch
from bounds import check, seed

import gptscope as gs
from gptscope.sae import SAE, train_sae_on_model
from gptscope.sae.metrics import ce_loss_recovered

HOOK = "blocks.0.hook_mlp_out"


@pytest.fixture(scope="module")
def model() -> gs.Transformer:
    torch.manual_seed(0)
    cfg = gs.ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=32, n_ctx=12,
                         init_range=0.3)  # large weights so the MLP matters
    return gs.Transformer(cfg).eval()


def _tokens(n: int = 4, pos: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 32, (n, pos), generator=torch.Generator().manual_seed(seed))


def identity_sae(d: int) -> gs.sae.SAE:
    """A ReLU SAE that reconstructs exactly: features +e_i and -e_i, relu(x) - relu(-x) = x."""
    sae = SAE(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_attached_sae_hooks_show_up_in_cache(model: gs.Transformer) -> None:
    sae = SAE(16, 64, kind="topk", k=4)
    tokens = _tokens()
    with model.attached(HOOK, sae):
        names = [f"{HOOK}.hook_sae_acts_post", f"{HOOK}.hook_sae_recons", HOOK]
        _, cache = model.run_with_cache(tokens, names_filter=names)
        acts = cache[f"{HOOK}.hook_sae_acts_post"]
        assert acts.shape == (4, 12, 64)
        assert ((acts != 0).sum(-1) <= 4).all()
        # the hook's own output is the SAE's reconstruction
        torch.testing.assert_close(cache[HOOK], cache[f"{HOOK}.hook_sae_recons"])
    assert f"{HOOK}.hook_sae_acts_post" not in model.hook_dict


def test_identity_sae_recovers_all_ce_loss(model: gs.Transformer) -> None:
    tokens = _tokens(8)
    sae = identity_sae(16)
    clean = model(tokens)
    with model.attached(HOOK, sae):
        torch.testing.assert_close(model(tokens), clean, atol=1e-5, rtol=1e-5)
    report = ce_loss_recovered(model, sae, tokens, HOOK)
    assert report["ce_sae"] == pytest.approx(report["ce_clean"], abs=1e-5)
    assert report["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    # (untrained model: ablating may help or hurt; the gap only has to be non-trivial)
    assert abs(report["ce_zero_ablation"] - report["ce_clean"]) > 0.05
    # a useless SAE recovers much less than a perfect one
    dead = SAE(16, 32)
    with torch.no_grad():
        dead.b_enc.fill_(-1e3)
    worse = ce_loss_recovered(model, dead, tokens, HOOK)
    assert worse["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-4)  # outputs b_dec = 0


def test_ce_loss_recovered_needs_a_hook(model: gs.Transformer) -> None:
    with pytest.raises(ValueError, match="needs a hook name"):
        ce_loss_recovered(model, SAE(16, 32), _tokens())


@pytest.mark.learned
def test_train_sae_on_model_streams_through_spilling_buffer(model, tmp_path) -> None:
    batches = [_tokens(4, 12, seed=seed(s)) for s in range(10)]  # 480 activation vectors
    torch.manual_seed(seed(0))
    sae = SAE(16, 64)
    res = train_sae_on_model(sae, model, HOOK, batches, buffer_size=128, batch_size=32,
                             max_memory_bytes=0, spill_dir=tmp_path, epochs=2, lr=1e-2,
                             log_every=10, show_progress=False, seed=seed(0))
    assert res.n_samples == 2 * 480
    assert sae.cfg.hook_name == HOOK
    # measured over 30 runs: 0.38 to 0.554
    check("sae_training.streamed_mse_last_over_first",
          res.history["mse"][-1] / res.history["mse"][0], "<", 1.0)
    assert list(tmp_path.iterdir()) == []  # spill folder cleaned up
    with pytest.raises(ValueError, match="expected d_in=8"):
        train_sae_on_model(SAE(8, 16), model, HOOK, batches, steps=1, show_progress=False)
