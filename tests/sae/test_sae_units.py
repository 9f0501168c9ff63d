"""Unit tests for the SAE variants, the shared base, sae_loss and the metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch

import gptscope.sae as gsae
from gptscope.sae import SAE, load_sae, sae_loss
from gptscope.sae import metrics as M
from gptscope.sae.base import mean_active_count
from gptscope.sae.jumprelu import jumprelu, jumprelu_with_l0, step

KINDS = {"relu": {}, "topk": {"k": 4}, "jumprelu": {}}


@pytest.fixture(params=sorted(KINDS))
def sae(request: pytest.FixtureRequest) -> gsae.SAE:
    torch.manual_seed(0)
    return SAE(12, 48, kind=request.param, **KINDS[request.param])


def test_shapes_and_hook_names(sae: gsae.SAE) -> None:
    x = torch.randn(3, 5, 12)
    assert sae.encode(x).shape == (3, 5, 48)
    assert sae(x).shape == x.shape
    assert sae.W_enc.shape == (12, 48) and sae.W_dec.shape == (48, 12)
    assert sae.b_enc.shape == (48,) and sae.b_dec.shape == (12,)
    names = {n for n, _ in sae.named_modules() if n}
    assert {"hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons",
            "hook_sae_output"} <= names


def test_hook_points_see_the_activations(sae: gsae.SAE) -> None:
    seen = {}
    for name in ("hook_sae_acts_post", "hook_sae_recons"):
        getattr(sae, name).register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, out.detach())
        )
    x = torch.randn(4, 12)
    out = sae(x)
    assert torch.equal(seen["hook_sae_acts_post"], sae.encode(x))
    assert torch.equal(seen["hook_sae_recons"], out)


def test_factory_dispatch_and_package_attribute() -> None:
    import gptscope as gs
    import gptscope.sae  # noqa: F401  (makes gs.sae available even before the lead exports it)

    assert isinstance(gs.sae.SAE(4, 8), gsae.ReLUSAE)
    assert isinstance(SAE(4, 8, kind="topk", k=2), gsae.TopKSAE)
    assert isinstance(SAE(4, 8, kind="jumprelu"), gsae.JumpReLUSAE)
    # SAE is also the class of every kind, so isinstance checks read naturally
    assert all(isinstance(SAE(4, 64, kind=kind), gs.sae.SAE) for kind in gsae.SAE_REGISTRY)
    assert issubclass(gsae.TopKSAE, gs.sae.SAE)


def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match=r"unknown SAE kind 'gated'.*jumprelu.*relu.*topk"):
        SAE(4, 8, kind="gated")


def test_bad_options_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        SAE(4, 8, kind="relu", k=3)
    with pytest.raises(ValueError, match="d_sae must be a positive int"):
        SAE(4, 0)
    with pytest.raises(ValueError, match="k must be an int in"):
        SAE(4, 8, kind="topk", k=9)


def test_d_in_mismatch_is_a_clear_error(sae: gsae.SAE) -> None:
    with pytest.raises(ValueError, match=r"d_in=12.*got \(2, 7\)"):
        sae(torch.randn(2, 7))
    with pytest.raises(ValueError, match="floating point"):
        sae.encode(torch.ones(2, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="d_sae=48"):
        sae.decode(torch.randn(2, 12))


def test_init_has_unit_decoder_rows_and_tied_encoder(sae: gsae.SAE) -> None:
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(48))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)


def test_decoder_rows_stay_unit_norm_and_parallel_grad_removed() -> None:
    torch.manual_seed(0)
    sae = SAE(12, 48)
    x = torch.randn(64, 12)
    sae.training_forward(x, l1_coefficient=0.1).loss.backward()
    sae.remove_parallel_grad_()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=-1)
    assert parallel.abs().max() < 1e-5
    gsae.train_sae(sae, x, steps=5, batch_size=16, lr=0.05, show_progress=False, seed=0)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(48))


def test_topk_has_at_most_k_and_exactly_k_when_positive() -> None:
    torch.manual_seed(0)
    sae = SAE(12, 48, kind="topk", k=5)
    acts = sae.encode(torch.randn(30, 12))
    assert ((acts != 0).sum(-1) <= 5).all() and (acts >= 0).all()
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive: exactly k survive
    acts = sae.encode(torch.randn(30, 12))
    assert ((acts != 0).sum(-1) == 5).all()
    # and they are the k largest pre-activations
    pre = sae.encode_pre(torch.zeros(1, 12))
    top = set(pre[0].topk(5).indices.tolist())
    assert set(sae.encode(torch.zeros(1, 12))[0].nonzero().flatten().tolist()) == top


def test_topk_auxk_gives_dead_features_gradient() -> None:
    torch.manual_seed(0)
    sae = SAE(12, 48, kind="topk", k=2, aux_k=6, dead_steps_threshold=1)
    sae.train()
    x = torch.randn(32, 12)
    sae.training_forward(x)  # nothing is dead yet: every counter starts at 0
    out = sae.training_forward(x)  # now features unused in step 1 count as dead
    assert "aux" in out.losses and out.losses["aux"] > 0
    out.loss.backward()
    dead = sae.steps_since_fired >= 1
    assert dead.any()
    assert sae.W_enc.grad[:, dead].abs().sum() > 0


def test_jumprelu_threshold_behaviour() -> None:
    z = torch.tensor([[0.05, 0.2, -1.0, 0.1001]])
    theta = torch.tensor([0.1, 0.1, 0.1, 0.1])
    out = jumprelu(z, theta, 0.001)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.2, 0.0, 0.1001]]))
    torch.testing.assert_close(step(z, theta, 0.001), torch.tensor([[0.0, 1.0, 0.0, 1.0]]))


def test_jumprelu_pseudo_gradients_reach_the_threshold() -> None:
    eps = 0.01
    theta = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    # z inside the kernel window |z - theta| < eps/2 only for the first feature
    z = torch.tensor([[0.503, 0.9, 0.1]], requires_grad=True)
    jumprelu(z, theta, eps).sum().backward()
    torch.testing.assert_close(theta.grad, torch.tensor([-0.5 / eps, 0.0, 0.0]))
    torch.testing.assert_close(z.grad, torch.tensor([[1.0, 1.0, 0.0]]))
    theta.grad = None
    z.grad = None
    step(z, theta, eps).sum().backward()
    torch.testing.assert_close(theta.grad, torch.tensor([-1.0 / eps, 0.0, 0.0]))
    assert z.grad is None or not z.grad.any()  # L0 does not push z


def test_jumprelu_with_l0_hand_worked() -> None:
    # Two inputs; with eps = 0.01 only feature 0 lies inside the kernel window in both rows.
    eps, c = 0.01, 3.0
    theta = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    z = torch.tensor([[0.503, 0.9, 0.1], [0.498, 0.2, 0.7]], requires_grad=True)
    acts, l0 = jumprelu_with_l0(z, theta, eps)
    torch.testing.assert_close(acts, torch.tensor([[0.503, 0.9, 0.0], [0.0, 0.0, 0.7]]))
    assert l0.item() == 1.5  # (2 + 1) active features over 2 inputs
    (acts.sum() + c * l0).backward()
    # -(theta / eps) * 2 rows in the window - c / (eps * 2 inputs) * 2 rows = -100 - 300
    torch.testing.assert_close(theta.grad, torch.tensor([-400.0, 0.0, 0.0]))
    torch.testing.assert_close(z.grad, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    theta.grad = z.grad = None
    jumprelu_with_l0(z, theta, eps)[1].backward()  # the L0 alone never pushes z
    torch.testing.assert_close(theta.grad, torch.tensor([-100.0, 0.0, 0.0]))
    assert z.grad is None


def test_jumprelu_training_moves_thresholds() -> None:
    torch.manual_seed(0)
    sae = SAE(8, 32, kind="jumprelu", bandwidth=0.05, threshold_init=0.05)
    x = torch.randn(256, 8)
    out = sae.training_forward(x, l0_coefficient=1.0)
    out.loss.backward()
    assert sae.log_threshold.grad is not None and sae.log_threshold.grad.abs().sum() > 0
    before = sae.threshold.detach().clone()
    gsae.train_sae(sae, x, steps=20, batch_size=64, lr=1e-2, l0_coefficient=1.0,
                   show_progress=False, seed=0)
    assert not torch.equal(before, sae.threshold.detach())
    assert (sae.threshold > 0).all()


def test_save_load_round_trip_exact(sae: gsae.SAE, tmp_path) -> None:
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sae.cfg.hook_name = "blocks.0.hook_mlp_out"
    folder = sae.save(tmp_path / "my_sae")
    assert sorted(p.name for p in folder.iterdir()) == ["sae.safetensors", "sae_config.json"]
    assert json.loads((folder / "sae_config.json").read_text())["kind"] == sae.cfg.kind
    loaded = load_sae(folder)
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg
    for (n1, p1), (n2, p2) in zip(sae.state_dict().items(), loaded.state_dict().items(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(5, 12)
    assert torch.equal(sae(x), loaded(x))
    assert type(gsae.SAE.load(folder)) is type(sae)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="sae_config.json not found"):
        load_sae(tmp_path)
    folder = SAE(4, 8).save(tmp_path / "s")
    with pytest.raises(ValueError, match="holds a 'relu' SAE"):
        gsae.TopKSAE.load(folder)
    cfg = json.loads((folder / "sae_config.json").read_text())
    cfg["kind"] = "nope"
    (folder / "sae_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown SAE kind 'nope'"):
        load_sae(folder)


def test_sae_loss_matches_hand_computation() -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    x_hat = torch.tensor([[1.5, 2.0], [0.0, 0.0]])
    acts = torch.tensor([[0.5, 0.0, 2.0], [-1.0, 0.0, 0.0]])
    loss, mse, l1 = sae_loss(x, x_hat, acts, l1_coefficient=0.1)
    # mse: rows (0.25 + 0) and (0 + 1) -> mean 0.625; l1: rows 2.5 and 1.0 -> mean 1.75
    assert mse.item() == pytest.approx(0.625)
    assert l1.item() == pytest.approx(1.75)
    assert loss.item() == pytest.approx(0.625 + 0.1 * 1.75)
    _, _, l1w = sae_loss(x, x_hat, acts, 0.1, decoder_norms=torch.tensor([2.0, 1.0, 0.5]))
    assert l1w.item() == pytest.approx(((1.0 + 1.0) + 2.0) / 2)
    # With non-negative acts the promise skips |.| and gives the same numbers.
    positive = acts.abs()
    for norms in (None, torch.tensor([2.0, 1.0, 0.5])):
        plain = sae_loss(x, x_hat, positive, 0.1, decoder_norms=norms)
        promised = sae_loss(x, x_hat, positive, 0.1, decoder_norms=norms, acts_nonnegative=True)
        torch.testing.assert_close(promised, plain)
    with pytest.raises(ValueError, match="same shape"):
        sae_loss(x, x_hat[:1], acts, 0.1)


def test_mean_active_count_is_the_l0_norm() -> None:
    acts = torch.tensor([[[0.5, 0.0, 2.0], [0.0, 0.0, 0.0]], [[1e-30, 3.0, 1.0], [0.0, 7.0, 0.0]]])
    assert mean_active_count(acts).item() == pytest.approx((2 + 0 + 3 + 1) / 4)


def test_relu_training_forward_uses_sae_loss() -> None:
    torch.manual_seed(0)
    sae = SAE(6, 10)
    x = torch.randn(7, 6)
    out = sae.training_forward(x, l1_coefficient=0.3)
    loss, mse, l1 = sae_loss(x, sae(x), sae.encode(x), 0.3)
    torch.testing.assert_close(out.loss, loss)
    torch.testing.assert_close(out.losses["mse"], mse)


def test_metrics_against_hand_values() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    assert M.mse(x, x_hat) == pytest.approx((0 + 1 + 2) / 3)
    total = ((x - x.mean(0)) ** 2).sum().item()  # = 4/3
    assert total == pytest.approx(4 / 3)
    assert M.explained_variance(x, x_hat) == pytest.approx(1 - 3 / (4 / 3))
    # cosines: 1, 0 (zero vector -> 0), 1
    assert M.cosine_similarity(x, x_hat) == pytest.approx(2 / 3)
    acts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    assert M.l0(acts) == pytest.approx(1.5)
    freqs = torch.tensor([0.0, 0.5, 0.05, 0.0])
    assert M.dead_fraction(freqs) == 0.5
    assert M.dense_fraction(freqs, threshold=0.1) == 0.25
    eye = torch.eye(3)
    assert M.mmcs(eye, eye) == pytest.approx(1.0)
    rot = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # true e0, e1 -> best cos 1/sqrt2 each; e2 -> 1
    assert M.mmcs(rot, eye) == pytest.approx((2 / math.sqrt(2) + 1) / 3)


def test_feature_frequencies_and_evaluate() -> None:
    sae = SAE(2, 3)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]))
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    freqs = M.feature_frequencies(sae, x, batch_size=3)
    torch.testing.assert_close(freqs, torch.tensor([0.75, 0.5, 0.0]))
    report = M.evaluate_sae(sae, x)
    assert report["dead_fraction"] == pytest.approx(1 / 3)
    assert report["l0"] == pytest.approx(1.25)
    assert report["explained_variance"] == pytest.approx(1.0)
