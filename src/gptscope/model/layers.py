"""The layers of a Transformer, with TransformerLens parameter names and shapes.

Parameters keep TransformerLens's shapes (W_Q [head, d_model, d_head], ...) so weights and
analysis code port. The forward passes fuse what they can (one QKV matmul, PyTorch SDPA,
fused LayerNorm) and fall back to the written-out path only when a hook needs to see it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptscope.config import ACTIVATIONS, ModelConfig
from gptscope.model import functional as gf
from gptscope.model.hooks import HookPoint

# F.rms_norm (one fused kernel) arrived in torch 2.4; older versions use the written-out form.
_rms_norm = (lambda x, w, eps: F.rms_norm(x, (x.shape[-1],), w, eps)) if hasattr(F, "rms_norm") \
    else gf.rms_norm


def _param(*shape: int, device=None, dtype=None) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, device=device, dtype=dtype))


class Embed(nn.Module):
    """Token ids -> vectors. W_E: [d_vocab, d_model]."""

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.W_E = _param(cfg.d_vocab, cfg.d_model, device=device, dtype=dtype)

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.W_E)  # [batch, pos, d_model]


# Fixed position tables (sinusoidal W_pos, rotary cos/sin) start with this many rows and
# double on demand up to n_ctx, so a model with a huge n_ctx costs memory only for the
# positions it reads. Models with n_ctx <= this get their whole table at init: their
# forward never grows it, and torch.compile traces it as one graph.
EAGER_POSITIONS = 4096


def table_rows(n_ctx: int, have: int = 0, need: int = 0) -> int:
    """Rows for a position table that holds ``have`` rows and must cover ``need`` positions."""
    return min(n_ctx, max(need, 2 * have, EAGER_POSITIONS))


class PosEmbed(nn.Module):
    """Positions -> vectors: learned (a parameter) or sinusoidal (a fixed buffer).

    W_pos: [n_ctx, d_model] when learned. The sinusoidal table is built lazily: it holds
    the first ``table_rows(n_ctx)`` positions and grows (``ensure``) as longer inputs come.
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.n_ctx, self.d_model = cfg.n_ctx, cfg.d_model
        self.learned = cfg.positional == "learned"
        if self.learned:
            self.W_pos = _param(cfg.n_ctx, cfg.d_model, device=device, dtype=dtype)
        else:
            self.register_buffer("W_pos", None, persistent=False)
            self.build(table_rows(cfg.n_ctx), device, dtype)

    def build(self, rows: int, device=None, dtype=None) -> None:
        """(Re)make the sinusoidal table with ``rows`` positions on ``device``."""
        table = gf.sinusoidal_positions(rows, self.d_model)
        self.W_pos = table.to(device=device, dtype=dtype)

    def ensure(self, n_pos: int) -> None:
        """Grow a sinusoidal table to cover positions [0, n_pos) (learned: nothing to do)."""
        have = self.W_pos.shape[0]
        if not self.learned and n_pos > have:
            self.build(table_rows(self.n_ctx, have, n_pos), self.W_pos.device, self.W_pos.dtype)

    def forward(self, positions: Tensor) -> Tensor:
        """positions: [pos] or [batch, pos] -> [pos, d_model] or [batch, pos, d_model]."""
        return self.W_pos[positions]


class _Norm(nn.Module):
    """What LayerNorm and RMSNorm share: the gain ``w`` [d_model], the hooks, and the rule
    that hooks see the output before ``w`` and ``b`` (as in TransformerLens).

    hook_scale: [batch, pos, 1]; hook_normalized: [batch, pos, d_model]. With no hook
    active the whole norm is one fused kernel; with ``hook_scale`` active the output is
    computed from the scale the hook returns, so an edit there (in place or not) counts.
    """

    has_bias: bool = False

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.eps, self.d = cfg.eps, cfg.d_model
        self.w = nn.Parameter(torch.ones(cfg.d_model, device=device, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, device=device, dtype=dtype)) \
            if self.has_bias else None
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        if not (self.hook_scale.active or self.hook_normalized.active):
            return self._fused(x, self.w, self.b)
        normalized = self.hook_normalized(self._normalize(x))
        if self.b is None:
            return normalized * self.w
        return torch.addcmul(self.b, normalized, self.w)

    def _normalize(self, x: Tensor) -> Tensor:
        """x [batch, pos, d_model] -> normalised, before w and b, through hook_scale."""
        if not self.hook_scale.active:  # nobody watches the scale: one fused kernel
            return self._fused(x, None, None)
        centred, scale = self._centred_and_scale(x)
        return centred / self.hook_scale(scale)

    def _fused(self, x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _centred_and_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x - mean or x, scale [batch, pos, 1])`` with ``normalized = centred / scale``."""
        raise NotImplementedError


class LayerNorm(_Norm):
    """LayerNorm: ``(x - mean) / sqrt(var + eps) * w + b`` over d_model."""

    has_bias = True

    def _fused(self, x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        return F.layer_norm(x, (self.d,), w, b, self.eps)

    def _centred_and_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not (torch.is_grad_enabled() and x.requires_grad):
            # One fused pass gives both statistics (torch.var_mean is ~10x slower on CPU);
            # they carry no gradient, hence only without autograd.
            _, mean, rstd = torch.native_layer_norm(x, (self.d,), None, None, self.eps)
            return x - mean.to(x.dtype), rstd.reciprocal().to(x.dtype)
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        # ** 0.5 rather than sqrt: its backward keeps the input, not the output, so a
        # hook may edit the scale in place under autograd.
        return x - mean, (var + self.eps) ** 0.5


class RMSNorm(_Norm):
    """RMSNorm: ``x / sqrt(mean(x^2) + eps) * w`` over d_model (no centring, no bias)."""

    def _fused(self, x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        return _rms_norm(x, w, self.eps)

    def _centred_and_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, (x.pow(2).mean(-1, keepdim=True) + self.eps) ** 0.5


NORMS: dict[str, type[_Norm]] = {"layer": LayerNorm, "rms": RMSNorm}


def make_norm(cfg: ModelConfig, kind: str, device=None, dtype=None) -> _Norm:
    """The norm ``cfg.normalization`` names ("layer" or "rms")."""
    return NORMS[kind](cfg, device, dtype)


class PaddingMask(NamedTuple):
    """The mask of a padded batch. allowed: bool [batch, 1, query, key] (True = attend);
    pad: bool [batch, 1, key, 1], True at padding keys (zeroed, so nothing in them leaks)."""

    allowed: Tensor
    pad: Tensor


def cross_inputs(cfg: ModelConfig, context: Any, context_mask: Any, batch: int, device,
                 dtype) -> tuple[Tensor, PaddingMask | None] | None:
    """Check what a decoder's cross-attention reads; return (context, its mask) or None.

    context: the encoder output [batch, src_pos, d_model]; context_mask: [batch, src_pos],
    1 (or True) for real source tokens and 0 for padding, or the PaddingMask an earlier
    call returned (taken as it is: generation checks the mask once, not at every step).
    Only models built with ``cross_attention=True`` take a context, and they need one.
    """
    if not cfg.cross_attention:
        if context is not None or context_mask is not None:
            raise ValueError("context/context_mask given, but this model has "
                             "cross_attention=False; build the decoder with "
                             "ModelConfig(cross_attention=True) or drop the context")
        return None
    if not isinstance(context, Tensor):
        raise ValueError(f"this model has cross_attention=True, so it needs context (the "
                         f"encoder output [batch, src_pos, d_model={cfg.d_model}]), got "
                         f"{type(context).__name__}; pass context=encoder_out")
    if context.dim() != 3 or context.shape[0] != batch or context.shape[2] != cfg.d_model \
            or context.shape[1] == 0:
        raise ValueError(f"context must be [batch={batch}, src_pos >= 1, d_model="
                         f"{cfg.d_model}], got shape {tuple(context.shape)}; pass the encoder "
                         "output for the same batch")
    if not context.is_floating_point():
        raise ValueError(f"context must be float vectors, got dtype {context.dtype}; pass the "
                         "encoder output, not token ids")
    context = context.to(device=device, dtype=dtype)
    if context_mask is None or isinstance(context_mask, PaddingMask):
        return context, context_mask
    return context, _source_mask(context_mask, context.shape[:2], device)


def _source_mask(context_mask: Any, shape: tuple[int, int], device) -> PaddingMask:
    """context_mask [batch, src_pos] of 0/1 or bools -> the PaddingMask cross-attention uses:
    allowed [batch, 1, 1, src_pos] (broadcast over queries), pad [batch, 1, src_pos, 1]."""
    if not isinstance(context_mask, Tensor) or tuple(context_mask.shape) != tuple(shape):
        got = tuple(context_mask.shape) if isinstance(context_mask, Tensor) else \
            type(context_mask).__name__
        raise ValueError(f"context_mask must be a tensor [batch, src_pos] = {tuple(shape)} "
                         f"(1 = real source token, 0 = padding), got {got}")
    if context_mask.is_floating_point() or context_mask.is_complex() or \
            ((context_mask != 0) & (context_mask != 1)).any():
        raise ValueError("context_mask must hold 0/1 integers or bools, got "
                         f"dtype {context_mask.dtype}; pass (src != pad_id).long()")
    keys = context_mask.to(device).bool()
    if not keys.any(dim=1).all():
        row = int((~keys.any(dim=1)).nonzero()[0])
        raise ValueError(f"context_mask row {row} is all padding: its queries would have "
                         "nothing to attend to; give every source at least one real token")
    return PaddingMask(keys[:, None, None, :], ~keys[:, None, :, None])


class Attention(nn.Module):
    """Multi-head attention: self-attention, or (``cross=True``) cross-attention, whose
    queries come from this stream and keys and values from another (an encoder's output).

    W_Q, W_K, W_V: [head, d_model, d_head]; W_O: [head, d_head, d_model];
    b_Q, b_K, b_V: [head, d_head]; b_O: [d_model].
    Hooks: hook_q/k/v/z [batch, pos, head, d_head]; hook_attn_scores and hook_pattern
    [batch, head, query_pos, key_pos]; hook_result [batch, pos, head, d_model] (computed only
    when something hooks it); hook_rot_q/k for rotary models. In cross-attention key_pos
    runs over the source, k and v are [batch, src_pos, head, d_head], there is no causal
    mask and no rotation (the two sequences' positions are not comparable).
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None, cross: bool = False) -> None:
        super().__init__()
        H, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.cross = cross
        self.W_Q = _param(H, d, dh, device=device, dtype=dtype)
        self.W_K = _param(H, d, dh, device=device, dtype=dtype)
        self.W_V = _param(H, d, dh, device=device, dtype=dtype)
        self.W_O = _param(H, dh, d, device=device, dtype=dtype)
        if cfg.attn_bias:
            self.b_Q = nn.Parameter(torch.zeros(H, dh, device=device, dtype=dtype))
            self.b_K = nn.Parameter(torch.zeros(H, dh, device=device, dtype=dtype))
            self.b_V = nn.Parameter(torch.zeros(H, dh, device=device, dtype=dtype))
            self.b_O = nn.Parameter(torch.zeros(d, device=device, dtype=dtype))
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        self.scale = 1.0 / math.sqrt(dh)
        for name in ("q", "k", "v", "z", "attn_scores", "pattern", "result"):
            # SDPA keeps its output (z) and softmax its output (pattern) for backward.
            setattr(self, f"hook_{name}", HookPoint(saved_for_backward=name in ("z", "pattern")))
        if cfg.positional == "rotary" and not cross:
            self.hook_rot_q = HookPoint()
            self.hook_rot_k = HookPoint()

    def _fused_qkv(self) -> tuple[Tensor, Tensor | None]:
        """W_Q, W_K, W_V side by side as one [d_model, 3 * head * d_head] matrix (+ bias).

        Building it copies the weights, so when no gradient is needed (inference,
        generation) the result is reused until a weight changes (tracked by version).
        """
        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V)
        reuse = not (torch.is_grad_enabled() and self.W_Q.requires_grad)
        key = tuple((p._version, p.data_ptr()) for p in params if p is not None)
        if reuse and getattr(self, "_qkv_key", None) == key:
            return self._qkv_cached
        w = torch.cat([self.W_Q, self.W_K, self.W_V], dim=0)  # [3*head, d_model, d_head]
        w = w.permute(1, 0, 2).reshape(self.W_Q.shape[1], -1)
        bias = None
        if self.b_Q is not None:
            bias = torch.cat([self.b_Q, self.b_K, self.b_V], dim=0).reshape(-1)
        if reuse:
            self._qkv_key, self._qkv_cached = key, (w, bias)
        else:
            self._qkv_key = None
        return w, bias

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One matmul for all heads' q, k and v: each [batch, pos, head, d_head]."""
        H, dh = self.cfg.n_heads, self.cfg.d_head
        w, bias = self._fused_qkv()
        qkv = F.linear(x, w.t(), bias)
        qkv = qkv.view(*x.shape[:-1], 3, H, dh)
        # select, not unbind: autograd lets hooks edit a select view in place.
        return qkv.select(-3, 0), qkv.select(-3, 1), qkv.select(-3, 2)

    def _split_qkv(self, q_in: Tensor, k_in: Tensor, v_in: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [batch, pos, head, d_head], each head reading its own input [batch, pos,
        head, d_model] (the per-head input hooks of Block)."""
        out = []
        for x, w, b in ((q_in, self.W_Q, self.b_Q), (k_in, self.W_K, self.b_K),
                        (v_in, self.W_V, self.b_V)):
            y = torch.einsum("bphm,hmd->bphd", x, w)
            out.append(y + b if b is not None else y)
        return out[0], out[1], out[2]

    def _cross_qkv(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from x [batch, pos, d_model], keys and values from context [batch,
        src_pos, d_model]: q [batch, pos, head, d_head], k and v [batch, src_pos, head, d_head]."""
        out = []
        for src, w, b in ((x, self.W_Q, self.b_Q), (context, self.W_K, self.b_K),
                          (context, self.W_V, self.b_V)):
            # [head, d_model, d_head] -> [head * d_head, d_model]: one matmul for all heads
            y = F.linear(src, w.transpose(1, 2).reshape(-1, w.shape[1]),
                         b.reshape(-1) if b is not None else None)
            out.append(y.view(*src.shape[:-1], *w.shape[::2]))
        return out[0], out[1], out[2]

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor, Tensor],
        mask: Tensor | None,
        rope: tuple[Tensor, Tensor] | None = None,
        kv: KVLayer | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """x: [batch, pos, d_model], or per-head (query, key, value) inputs [batch, pos, head,
        d_model]; mask: bool [batch or 1, 1, query, key] (True = attend),
        a PaddingMask, or None for plain causal (or no mask when not causal). Returns
        [batch, pos, d_model]. context [batch, src_pos, d_model]: what a cross-attention's
        keys and values read (required when ``cross``; never cached: the source is fixed).
        """
        if self.cross != (context is not None):
            raise ValueError("a cross-attention needs context (the encoder output) and a "
                             "self-attention takes none; pass context only to cross_attn")
        pad = None
        if isinstance(mask, PaddingMask):
            mask, pad = mask
        if context is not None:
            q, k, v = self._cross_qkv(x, context)
        else:
            q, k, v = self._qkv(x) if isinstance(x, Tensor) else self._split_qkv(*x)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if rope is not None:
            q = self.hook_rot_q(gf.apply_rotary(q, *rope))
            k = self.hook_rot_k(gf.apply_rotary(k, *rope))
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if kv is not None:
            kh, vh = kv.append(kh, vh)  # every cached key and value: [batch, head, key, d_head]
        if pad is not None:
            # Padding must not reach real tokens even when it holds NaN or inf: a masked
            # weight of 0 times a NaN value is still NaN (in both paths), and SDPA adds its
            # mask as -inf, which a NaN score survives.
            zero = kh.new_zeros(())  # torch.where: ~1.6x faster than masked_fill on CPU
            kh, vh = torch.where(pad, zero, kh), torch.where(pad, zero, vh)
        causal = self.cfg.causal and mask is None and not self.cross
        dropout = self.cfg.dropout if self.training else 0.0
        if not (self.hook_attn_scores.active or self.hook_pattern.active):
            z = F.scaled_dot_product_attention(
                qh, kh, vh, attn_mask=mask, dropout_p=dropout,
                is_causal=causal and qh.shape[-2] == kh.shape[-2] and qh.shape[-2] > 1,
            )
            # A query whose scores are all NaN (a NaN query, or NaN keys wherever it looks)
            # comes out of SDPA's flash kernel as 0, like a fully masked row, while the
            # written-out path below gives NaN. Adding 0 * (query + first key), NaN exactly
            # then (every query sees key 0, or key 0 is zeroed padding), keeps broken
            # weights from looking healthy. Out of place: SDPA keeps z for its backward.
            z = z + 0.0 * (qh.sum(-1, keepdim=True) + kh[..., :1, :].sum(-1, keepdim=True))
        else:
            if causal and qh.shape[-2] > 1:
                mask = gf.causal_mask(qh.shape[-2], kh.shape[-2], device=qh.device)
            # Scale the small q rather than the big scores, and mask in place: the
            # [batch, head, q, k] tensors are what make this path cost more than SDPA.
            scores = (qh * self.scale) @ kh.transpose(-2, -1)
            if mask is not None:
                scores.masked_fill_(~mask, float("-inf"))
            scores = self.hook_attn_scores(scores)
            # At least float32 (half-precision softmax loses mass), float64 kept as float64.
            soft = torch.promote_types(scores.dtype, torch.float32)
            pattern = self.hook_pattern(F.softmax(scores, dim=-1, dtype=soft).to(q.dtype))
            if dropout:
                pattern = F.dropout(pattern, dropout)
            z = pattern @ vh
        z = self.hook_z(z.transpose(1, 2))  # [batch, pos, head, d_head]
        if self.hook_result.active:
            result = self.hook_result(torch.einsum("bphd,hdm->bphm", z, self.W_O))
            out = result.sum(dim=2)
            return out + self.b_O if self.b_O is not None else out
        # [batch, pos, head * d_head] @ [head * d_head, d_model], bias fused into the matmul
        return F.linear(z.reshape(*z.shape[:2], -1), self.W_O.reshape(-1, self.W_O.shape[-1]).t(),
                        self.b_O)


class MLP(nn.Module):
    """Two-layer MLP. W_in: [d_model, d_mlp]; W_out: [d_mlp, d_model].

    hook_pre: [batch, pos, d_mlp] before the activation; hook_post: after it.
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.W_in = _param(cfg.d_model, cfg.d_mlp, device=device, dtype=dtype)
        self.W_out = _param(cfg.d_mlp, cfg.d_model, device=device, dtype=dtype)
        if cfg.mlp_bias:
            self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, device=device, dtype=dtype))
            self.b_out = nn.Parameter(torch.zeros(cfg.d_model, device=device, dtype=dtype))
        else:
            self.b_in = self.b_out = None
        self.act = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint(saved_for_backward=cfg.act_fn == "relu")  # relu keeps it

    def forward(self, x: Tensor) -> Tensor:
        pre = self.hook_pre(F.linear(x, self.W_in.t(), self.b_in))
        post = self.hook_post(self.act(pre))
        return F.linear(post, self.W_out.t(), self.b_out)


class Block(nn.Module):
    """One transformer block: attention then MLP, each reading and writing the residual.

    Pre-LN (GPT-2): resid_mid = resid_pre + attn(ln1(resid_pre)); resid_post = resid_mid +
    mlp(ln2(resid_mid)). Post-LN (BERT) normalises after each add instead.
    With ``cfg.cross_attention`` (a decoder reading an encoder), a cross-attention sits between
    the two: resid_mid_cross = resid_mid + cross_attn(ln_cross(resid_mid), context), and the
    MLP reads resid_mid_cross (TransformerLens's T5 names; the norm is ln_cross so that ln2
    stays the MLP's norm, as in every other block).
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.cfg = cfg
        norm = cfg.normalization
        # Registration order is the order run_with_cache lists activations in.
        self.hook_resid_pre = HookPoint()
        if cfg.norm_position == "pre":
            # On request (ON_REQUEST): the attention's input copied per head, [batch, pos,
            # head, d_model], before ln1; then one copy each for queries, keys and values,
            # so a patch can reach one head's keys alone.
            self.hook_attn_in = HookPoint()
            self.hook_q_input = HookPoint()
            self.hook_k_input = HookPoint()
            self.hook_v_input = HookPoint()
        self.ln1 = make_norm(cfg, norm, device, dtype) if norm else nn.Identity()
        self.attn = Attention(cfg, device, dtype)
        self.hook_attn_out = HookPoint()
        if not cfg.attn_only or cfg.cross_attention:
            self.hook_resid_mid = HookPoint()
        self.cross_attn = None
        if cfg.cross_attention:
            self.ln_cross = make_norm(cfg, norm, device, dtype) if norm else nn.Identity()
            self.cross_attn = Attention(cfg, device, dtype, cross=True)
            self.hook_cross_attn_out = HookPoint()
            self.hook_resid_mid_cross = HookPoint()
        if not cfg.attn_only:
            self.hook_mlp_in = HookPoint()  # on request: the MLP's input, before ln2
            self.ln2 = make_norm(cfg, norm, device, dtype) if norm else nn.Identity()
            self.mlp = MLP(cfg, device, dtype)
            self.hook_mlp_out = HookPoint()
        elif cfg.norm_position == "post":
            self.ln2 = make_norm(cfg, norm, device, dtype)
        self.hook_resid_post = HookPoint()
        if cfg.norm_position == "post":
            self.hook_normalized_resid_post = HookPoint()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask, rope=None, kv=None,
                cross: tuple[Tensor, PaddingMask | None] | None = None) -> Tensor:
        """x: [batch, pos, d_model] -> [batch, pos, d_model]. cross: (context [batch, src_pos,
        d_model], its PaddingMask or None), required exactly when cfg.cross_attention."""
        if (cross is None) == (self.cross_attn is not None):
            raise ValueError("a block with cross_attention needs cross=(context, mask), and a "
                             "block without takes none; call the Transformer with context=")
        resid_pre = self.hook_resid_pre(x)
        if self.cfg.norm_position == "post":
            return self._forward_post_ln(resid_pre, mask, rope, kv)
        attn_out = self.hook_attn_out(self.drop(self.attn(self._attn_input(resid_pre), mask,
                                                          rope, kv)))
        if self.cfg.attn_only and cross is None:
            return self.hook_resid_post(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        if cross is not None:
            context, context_mask = cross
            cross_out = self.cross_attn(self.ln_cross(resid_mid), context_mask, context=context)
            resid_mid = self.hook_resid_mid_cross(
                resid_mid + self.hook_cross_attn_out(self.drop(cross_out)))
            if self.cfg.attn_only:
                return self.hook_resid_post(resid_mid)
        mlp_out = self.hook_mlp_out(self.drop(self.mlp(self.ln2(self._mlp_input(resid_mid)))))
        return self.hook_resid_post(resid_mid + mlp_out)

    def _attn_input(self, resid_pre: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """ln1(resid_pre) [batch, pos, d_model]; when a per-head input hook is watched,
        (query, key, value) inputs [batch, pos, head, d_model], each normalised on its own."""
        split = (self.hook_q_input, self.hook_k_input, self.hook_v_input)
        if not (self.hook_attn_in.active or any(h.active for h in split)):
            return self.ln1(resid_pre)
        per_head = resid_pre[:, :, None].expand(-1, -1, self.cfg.n_heads, -1)
        attn_in = self.hook_attn_in(per_head.clone())
        # Copies, so that editing one input in place leaves the others alone.
        q, k, v = (self.ln1(hook(attn_in.clone())) for hook in split)
        return q, k, v

    def _mlp_input(self, resid_mid: Tensor) -> Tensor:
        """resid_mid through hook_mlp_in, copied when watched: resid_mid is added again."""
        return self.hook_mlp_in(resid_mid.clone()) if self.hook_mlp_in.active else resid_mid

    def _forward_post_ln(self, resid_pre: Tensor, mask, rope, kv) -> Tensor:
        attn_out = self.hook_attn_out(self.drop(self.attn(resid_pre, mask, rope, kv)))
        if self.cfg.attn_only:
            resid_post = self.hook_resid_post(resid_pre + attn_out)
            return self.hook_normalized_resid_post(self.ln2(resid_post))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        normalized = self.ln1(self._mlp_input(resid_mid))
        mlp_out = self.hook_mlp_out(self.drop(self.mlp(normalized)))
        resid_post = self.hook_resid_post(normalized + mlp_out)
        return self.hook_normalized_resid_post(self.ln2(resid_post))


class KVLayer:
    """One layer's cached keys and values, preallocated: [batch, head, max_len, d_head]."""

    def __init__(self, cache: KVCache, batch: int, cfg: ModelConfig, device, dtype) -> None:
        shape = (batch, cfg.n_heads, cache.max_len, cfg.d_head)
        self.cache = cache
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store new keys/values [batch, head, new, d_head]; return all so far."""
        start = self.cache.length
        end = start + k.shape[-2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """Keys and values of every layer, so generation feeds only the new tokens each step.

    ``length`` counts the positions already cached; the model advances it after each
    forward pass that used the cache. ``max_len`` (default n_ctx) is how many positions it
    holds: ``generate`` asks for prompt + new tokens only, so a model with a long context
    does not allocate all of it for a short generation.
    """

    def __init__(self, cfg: ModelConfig, batch: int, device=None, dtype=None,
                 max_len: int | None = None) -> None:
        max_len = cfg.n_ctx if max_len is None else max_len
        for name, value, high in (("batch", batch, None), ("max_len", max_len, cfg.n_ctx)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or \
                    (high is not None and value > high):
                limit = f"in [1, n_ctx={high}]" if high else ">= 1"
                raise ValueError(f"KVCache {name} must be an int {limit}, got {value!r}")
        self.length = 0
        self.n_ctx = cfg.n_ctx
        self.batch = batch
        self.max_len = max_len
        self.layers = [KVLayer(self, batch, cfg, device, dtype) for _ in range(cfg.n_layers)]
