import pytest
import torch
from bounds import check, seed

from gptscope import ModelConfig, Transformer
from gptscope.train import DataSpec, TrainConfig, param_groups
from gptscope.train.optim import load_optimizer_tensors, make_optimizer, optimizer_tensors
from gptscope.train.trainer import Trainer


def _groups(decay_embeddings=True):
    model = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=11, n_ctx=8))
    cfg = TrainConfig(weight_decay=0.5, decay_embeddings=decay_embeddings)
    return {g["group"]: g for g in param_groups(model, cfg)}


def test_weight_decay_on_matrices_only():
    groups = _groups()
    decay, no_decay = set(groups["decay"]["names"]), set(groups["no_decay"]["names"])
    assert groups["decay"]["weight_decay"] == 0.5 and groups["no_decay"]["weight_decay"] == 0.0
    for name in ("blocks.0.attn.W_Q", "blocks.0.attn.W_O", "blocks.0.mlp.W_in",
                 "unembed.W_U", "embed.W_E", "pos_embed.W_pos"):
        assert name in decay
    # b_Q is 2-D [head, d_head] but a bias: a dim() >= 2 rule would wrongly decay it.
    for name in ("blocks.0.attn.b_Q", "blocks.0.attn.b_O", "blocks.0.ln1.w",
                 "blocks.0.ln1.b", "ln_final.w", "blocks.0.mlp.b_in"):
        assert name in no_decay


def test_embeddings_can_be_excluded():
    no_decay = set(_groups(decay_embeddings=False)["no_decay"]["names"])
    assert {"embed.W_E", "pos_embed.W_pos"} <= no_decay


def test_optimizer_state_round_trip_through_safetensors(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cfg = TrainConfig()
    model = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=11, n_ctx=8))
    opt = make_optimizer(model, cfg)
    model(torch.randint(0, 11, (2, 8)), return_type="loss").backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    save_file(tensors, str(tmp_path / "o.safetensors"), metadata=meta)
    opt2 = make_optimizer(model, cfg)
    with safe_open(str(tmp_path / "o.safetensors"), framework="pt") as f:
        meta2 = f.metadata()
    load_optimizer_tensors(opt2, load_file(str(tmp_path / "o.safetensors")), meta2)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][i][key]), key


def _first_gradients(tmp_path, name, batch_size, grad_accum) -> dict[str, torch.Tensor]:
    """The gradients the first optimizer step of a run would apply."""
    model_cfg = ModelConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=16)
    cfg = TrainConfig(data=DataSpec(task="reverse", task_kwargs={"n_items": 5}),
                      batch_size=batch_size, grad_accum=grad_accum, max_steps=3,
                      warmup_steps=0, device="cpu", progress=False, eval_every=0, lr=1e-2,
                      seed=seed(1337))
    trainer = Trainer(model_cfg, cfg, tmp_path / name)
    grads: dict[str, torch.Tensor] = {}

    def capture() -> None:
        grads.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})

    trainer.optimizer.step = capture
    trainer.train_step()
    trainer.close()
    return grads


@pytest.mark.learned
def test_grad_accumulation_equals_bigger_batch(tmp_path):
    """Compared on the gradients, not on weights after Adam steps: Adam divides each step
    by the gradient's own size, so float noise in a gradient that is truly ~0 (the key bias,
    whose shift every softmax ignores) becomes a full-size step."""
    big = _first_gradients(tmp_path, "big", batch_size=32, grad_accum=1)
    accumulated = _first_gradients(tmp_path, "acc", batch_size=8, grad_accum=4)
    scale = max(g.abs().max().item() for g in big.values())
    diff = max((accumulated[name] - g).abs().max().item() for name, g in big.items())
    # measured over 30 runs: 1.16e-07 to 2.48e-07
    check("optim.grad_accumulation_max_rel_diff", diff / scale, "<=", 1e-5)
