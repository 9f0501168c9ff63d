"""Half precision on CPU, and the same checks on an accelerator when one is present."""

from __future__ import annotations

import pytest
import torch

import gptscope as gs

BASE = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=41, n_ctx=16, seed=0)
HALF = [torch.bfloat16, torch.float16]

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    DEVICES.append("mps")


def make(**kw) -> gs.Transformer:
    return gs.Transformer(gs.ModelConfig(**{**BASE, "init_range": 0.2, **kw})).eval()


TOKS = torch.randint(0, 41, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kw", [{}, {"positional": "rotary", "normalization": "rms"}],
                         ids=["gpt2", "rotary"])
def test_half_forward_close_to_fp32(device, dtype, kw):
    ref_model = make(**kw)
    ref = ref_model(TOKS)
    model = make(**kw).to(device=device, dtype=dtype)
    assert model.dtype == dtype and model.W_Q.dtype == dtype
    logits = model(TOKS.to(device))
    assert logits.dtype == dtype and logits.device.type == device
    assert logits.isfinite().all()
    tol = 0.05 if dtype == torch.bfloat16 else 0.01
    torch.testing.assert_close(logits.float().cpu(), ref, atol=tol * ref.abs().max().item(),
                               rtol=0)
    cached_logits, cache = model.run_with_cache(TOKS.to(device))
    torch.testing.assert_close(cached_logits.float().cpu(), ref,
                               atol=tol * ref.abs().max().item(), rtol=0)
    for name, t in cache.items():
        if name.endswith("attn_scores"):  # masked (future) scores are -inf by design
            t = t.masked_select(torch.ones(10, 10, dtype=torch.bool, device=device).tril())
        assert t.dtype == dtype and t.isfinite().all(), name
    loss = model(TOKS.to(device), return_type="loss")
    assert loss.isfinite() and abs(loss.item() - ref_model(TOKS, return_type="loss").item()) < 0.1


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_generate(device):
    model = make().to(device).to(torch.bfloat16)
    out = model.generate(TOKS[:, :4].to(device), max_new_tokens=14, temperature=0.0)
    assert out.shape == (2, 18) and out.device.type == device
    assert ((out >= 0) & (out < 41)).all()
    uncached = model.generate(TOKS[:, :4].to(device), max_new_tokens=14, temperature=0.0,
                              use_cache=False)
    # bf16 rounding differs between incremental and full passes; the start must agree.
    assert torch.equal(out[:, :6], uncached[:, :6])
    sampled = model.generate(TOKS[:, :4].to(device), max_new_tokens=5, temperature=1.0, seed=3,
                             top_p=0.9, top_k=10)
    assert sampled.shape == (2, 9)


def test_built_in_dtype_matches_cast():
    a = gs.Transformer(gs.ModelConfig(**BASE), dtype=torch.bfloat16)
    b = make().to(torch.bfloat16)
    assert a.dtype == torch.bfloat16
    for k, v in a.state_dict().items():
        assert v.dtype == torch.bfloat16, k
    assert torch.equal(a(TOKS), gs.Transformer(gs.ModelConfig(**BASE)).to(torch.bfloat16)(TOKS))
    assert b(TOKS).dtype == torch.bfloat16


@pytest.mark.skipif(len(DEVICES) == 1, reason="no CUDA or MPS device")
@pytest.mark.parametrize("device", DEVICES[1:])
def test_accelerator_matches_cpu_fp32(device):
    model = make()
    ref = model(TOKS)
    moved = make().to(device)
    torch.testing.assert_close(moved(TOKS.to(device)).cpu(), ref, atol=1e-4, rtol=1e-4)
    a = moved.generate(TOKS[:, :4].to(device), max_new_tokens=8, temperature=0.0).cpu()
    b = model.generate(TOKS[:, :4], max_new_tokens=8, temperature=0.0)
    assert torch.equal(a, b)
