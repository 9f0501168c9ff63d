"""Shared fixtures: a 2-layer attention-only model trained here on repeated random tokens
(it learns induction, about 20 s), and small random models for agreement tests with
TransformerLens.

The training loop is local on purpose: these tests must not depend on gptscope.train.
"""

from __future__ import annotations

import time

import pytest
import torch
from bounds import seed

import gptscope as gs

VOCAB, HALF = 64, 20


def repeated_batch(n: int, g: torch.Generator, vocab: int = VOCAB, half: int = HALF
                   ) -> torch.Tensor:
    """[n, 2 * half]: random tokens, then the same tokens again."""
    x = torch.randint(0, vocab, (n, half), generator=g)
    return torch.cat([x, x], dim=1)


def varied_repeats(n: int, g: torch.Generator, vocab: int = VOCAB, n_pos: int = 2 * HALF
                   ) -> torch.Tensor:
    """[n, n_pos] random tokens in which a span of random length (10 to n_pos/2) at a random
    start is repeated right after itself.

    A fixed layout (always 20 + 20) would let a single layer solve the task by position
    alone (attend 19 back); varying the period forces the two-layer induction circuit.
    """
    x = torch.randint(0, vocab, (n, n_pos), generator=g)
    for row in x:
        length = int(torch.randint(10, n_pos // 2 + 1, (1,), generator=g))
        start = int(torch.randint(0, n_pos - 2 * length + 1, (1,), generator=g))
        row[start + length:start + 2 * length] = row[start:start + length]
    return x


def train_induction_model(steps: int = 1200, seed: int = 0) -> gs.Transformer:
    """Rotary positions, LayerNorm, AdamW at 3e-3 after a 20-step warmup: every seed tried
    (0-4 and the robustness runs) forms previous-token and induction heads. With learned
    positions, most seeds found the repeat some other way and no induction head formed."""
    cfg = gs.ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=VOCAB, n_ctx=2 * HALF,
                         attn_only=True, positional="rotary", normalization="layer",
                         seed=seed)
    model = gs.Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    threads = torch.get_num_threads()
    # Tiny matmuls: one thread is fastest, and far faster on a loaded machine.
    torch.set_num_threads(1)
    try:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = 3e-3 * min(1.0, (step + 1) / 20)
            loss = model(varied_repeats(32, g), return_type="loss")
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


@pytest.fixture(scope="session")
def induction_model() -> gs.Transformer:
    start = time.perf_counter()
    model = train_induction_model(seed=seed(0))
    model.train_seconds = time.perf_counter() - start
    return model


@pytest.fixture(scope="session")
def rep_tokens() -> torch.Tensor:
    """[8, 40] held-out repeated sequences."""
    return repeated_batch(8, torch.Generator().manual_seed(seed(1234)))


def small_model(attn_only: bool = False, normalization: str | None = "layer",
                seed: int = 0, **kw) -> gs.Transformer:
    cfg = gs.ModelConfig(n_layers=3, d_model=32, n_heads=4, d_vocab=50, n_ctx=24,
                         attn_only=attn_only, normalization=normalization, seed=seed, **kw)
    model = gs.Transformer(cfg).eval()
    # Non-zero biases and LayerNorm weights, so tests see every term the maths carries.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def to_hooked_transformer(model: gs.Transformer):
    """The same weights in a TransformerLens HookedTransformer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    c = model.cfg
    norm = {"layer": "LN", "rms": "RMS", None: None}[c.normalization]
    rotary = c.positional == "rotary"
    tl_cfg = HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head,
        d_vocab=c.d_vocab, n_ctx=c.n_ctx, d_mlp=None if c.attn_only else c.d_mlp,
        act_fn=c.act_fn, normalization_type=norm, attn_only=c.attn_only,
        positional_embedding_type="rotary" if rotary else "standard",
        rotary_dim=c.rotary_dim if rotary else None,
        rotary_base=int(c.rotary_base), device="cpu", seed=0,
    )
    tl = HookedTransformer(tl_cfg)
    state = model.state_dict()
    if c.tie_embeddings:
        state["unembed.W_U"] = model.W_E.detach().T.clone()
    tl.load_state_dict(state, strict=False)
    tl.eval()
    return tl


@pytest.fixture(scope="session")
def make_small_model():
    """small_model as a fixture, so test modules need not import conftest."""
    return small_model


@pytest.fixture(scope="session")
def to_tl():
    return to_hooked_transformer


@pytest.fixture(scope="session")
def make_repeated():
    return repeated_batch
