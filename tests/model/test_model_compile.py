"""torch.compile: the forward traces as one graph, and compiled training matches eager.

On CUDA the trainer compiles by default; these tests run the same paths on the CPU.
"""

from __future__ import annotations

import pytest
import torch

import gptscope as gs
from gptscope.train import DataSpec, TrainConfig, train

CONFIGS = {
    "gpt2-like": gs.ModelConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=16, d_vocab=50,
                                seed=0),
    "rotary-rms": gs.ModelConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=16, d_vocab=50,
                                 positional="rotary", normalization="rms", act_fn="silu",
                                 seed=0),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_is_one_graph_without_breaks(name: str) -> None:
    model = gs.Transformer(CONFIGS[name])
    tokens = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(0))
    explained = torch._dynamo.explain(model)(tokens, return_type="loss")
    reasons = [b.reason for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_compiled_forward_and_grads_match_eager() -> None:
    model = gs.Transformer(CONFIGS["gpt2-like"])
    tokens = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    eager_loss = model(tokens, return_type="loss")
    eager_loss.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    compiled_loss = compiled(tokens, return_type="loss")
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager_grads[n], msg=n)
    torch._dynamo.reset()


def test_out_of_range_ids_still_fail_when_compiled() -> None:
    model = gs.Transformer(CONFIGS["gpt2-like"])
    compiled = torch.compile(model, backend="eager")
    with pytest.raises((IndexError, RuntimeError)):
        compiled(torch.tensor([[1, 2, 50]]))
    torch._dynamo.reset()


def test_training_with_compile_and_bf16_saves_a_loadable_run(tmp_path) -> None:
    """The default CUDA recipe (inductor + bf16 autocast), here on the CPU."""
    cfg = TrainConfig(data=DataSpec(task="reverse", task_kwargs={"n_items": 5}), batch_size=16,
                      lr=3e-3, warmup_steps=2, max_steps=6, eval_every=3, eval_steps=1,
                      ckpt_every=0, device="cpu", progress=False, compile=True, bf16=True)
    result = train(gs.ModelConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=11), cfg, tmp_path)
    assert result.step == 6
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_eval.values())
    loaded = gs.load(tmp_path)  # plain parameter names, not the compiled wrapper's
    seeded = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, loaded.cfg.d_vocab, (2, 11), generator=seeded)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), result.model(tokens))
    torch._dynamo.reset()
