"""Direct logit attribution: split a logit difference into what each component wrote.

With the final LayerNorm's scale frozen at its value on this input, the logit of token t
is a linear function of the residual stream, and the residual stream is a sum of parts
(embeddings, each head, each MLP, biases). So the logit difference splits exactly:

    d = W_U[:, c] - W_U[:, w]
    logit[c] - logit[w] = sum over parts of (centre(part) / scale) . (w_ln * d)
                          + b_ln . d + b_U[c] - b_U[w]

"Direct" because it counts only a part's straight path to the logits; a head whose output
is read by later heads gets no credit for that here (see ``interp.patching``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gptscope.interp._util import as_token_ids
from gptscope.interp.resid import head_results
from gptscope.model.cache import ActivationCache
from gptscope.model.hooks import act_name


@dataclass
class DLA:
    """Direct logit attribution of a logit difference, per example.

    heads ``[batch, layer, head]``, mlp ``[batch, layer]`` (None for attention-only
    models), embed, pos_embed, bias, rest, logit_diff ``[batch]``; cross_heads ``[batch,
    layer, head]``, the cross-attention heads of a decoder (None for other models). ``bias``
    gathers the attention output biases, the final LayerNorm bias and the unembedding bias;
    ``rest`` is
    whatever is left (other embeddings, float error) so that every part sums to
    ``logit_diff``. Properties without ``_per_example`` average over the batch.
    """

    heads_per_example: Tensor
    mlp_per_example: Tensor | None
    embed_per_example: Tensor
    pos_embed_per_example: Tensor
    bias_per_example: Tensor
    rest_per_example: Tensor
    logit_diff_per_example: Tensor
    cross_heads_per_example: Tensor | None = None

    @property
    def heads(self) -> Tensor:
        """``[layer, head]``"""
        return self.heads_per_example.mean(0)

    @property
    def cross_heads(self) -> Tensor | None:
        """``[layer, head]``, or None without cross-attention"""
        cross = self.cross_heads_per_example
        return None if cross is None else cross.mean(0)

    @property
    def mlp(self) -> Tensor | None:
        """``[layer]``"""
        return None if self.mlp_per_example is None else self.mlp_per_example.mean(0)

    @property
    def embed(self) -> float:
        return self.embed_per_example.mean().item()

    @property
    def pos_embed(self) -> float:
        return self.pos_embed_per_example.mean().item()

    @property
    def bias(self) -> float:
        return self.bias_per_example.mean().item()

    @property
    def rest(self) -> float:
        return self.rest_per_example.mean().item()

    @property
    def logit_diff(self) -> float:
        return self.logit_diff_per_example.mean().item()

    def total(self) -> float:
        """Sum of every part; equals ``logit_diff``."""
        return sum(v for _, v in self.items())

    def items(self) -> list[tuple[str, float]]:
        """Every part as (label, mean value): embed, pos_embed, L{l}H{h}, the cross-attention
        heads L{l}X{h} of a decoder, MLP{l}, bias, rest."""
        out = [("embed", self.embed), ("pos_embed", self.pos_embed)]
        n_layers, n_heads = self.heads.shape
        heads, cross = self.heads, self.cross_heads
        for layer in range(n_layers):
            out += [(f"L{layer}H{h}", heads[layer, h].item()) for h in range(n_heads)]
            if cross is not None:
                out += [(f"L{layer}X{h}", cross[layer, h].item()) for h in range(n_heads)]
            if self.mlp is not None:
                out.append((f"MLP{layer}", self.mlp[layer].item()))
        return out + [("bias", self.bias), ("rest", self.rest)]

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` parts with the largest absolute contribution."""
        return sorted(self.items(), key=lambda kv: -abs(kv[1]))[:k]

    def to_table(self, k: int | None = None) -> str:
        rows = self.top(k) if k else self.items()
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value:+.4f}" for name, value in rows]
        return "\n".join(lines + [f"{'total'.ljust(width)}  {self.total():+.4f} "
                                  f"(logit diff {self.logit_diff:+.4f})"])

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{v:+.4f}</td></tr>"
                       for n, v in self.top(20))
        return (f"<table><tr><th>component</th><th>logit diff</th></tr>{rows}"
                f"<tr><th>logit diff</th><th>{self.logit_diff:+.4f}</th></tr></table>")

    def __repr__(self) -> str:
        return f"DLA(logit_diff={self.logit_diff:+.4f}, top={self.top(3)})"


def _dla_names(model: Any) -> list[str]:
    n = model.cfg.n_layers
    names = ["hook_embed", act_name("resid_post", n - 1)]
    names += [name for name in ("hook_pos_embed", "ln_final.hook_scale")
              if name in model.hook_dict]
    for i in range(n):
        names.append(act_name("z", i))
        if model.cfg.cross_attention:
            names.append(f"blocks.{i}.cross_attn.hook_z")
        if not model.cfg.attn_only:
            names.append(act_name("mlp_out", i))
    return names


def dla(
    model: Any,
    tokens_or_cache: Any,
    correct: Any,
    incorrect: Any = None,
    pos: int | Tensor = -1,
) -> DLA:
    """Direct logit attribution of ``logit[correct] - logit[incorrect]`` at position ``pos``.

    tokens_or_cache: ids ``[batch, pos]`` (the model is run) or a cache with hook_embed,
    hook_pos_embed, every hook_z (or hook_result) and hook_mlp_out, the last resid_post and
    ln_final.hook_scale; for a decoder with cross-attention, every cross_attn.hook_z too
    (``cache.submodel("decoder")`` of an EncoderDecoder's cache). correct / incorrect: an
    int or ids ``[batch]``; without ``incorrect`` the plain logit of ``correct`` is split.
    pos: an int or ``[batch]`` positions (e.g. each row's last real token).
    """
    cfg = model.cfg
    if cfg.norm_position != "pre" or cfg.embed_norm:
        raise ValueError("dla needs a pre-LN model without embedding LayerNorm (GPT-style): "
                         "elsewhere the residual stream is not a plain sum of parts")
    if cfg.n_layers == 0:
        raise ValueError("dla needs a model with at least one layer")
    if hasattr(tokens_or_cache, "keys") and hasattr(tokens_or_cache, "model"):
        cache = tokens_or_cache
    else:
        cache = ActivationCache(model.activations(tokens_or_cache, _dla_names(model)), model)
    with torch.no_grad():
        return _dla(model, cache, correct, incorrect, pos)


def _dla(model: Any, cache: Any, correct: Any, incorrect: Any, pos: int | Tensor) -> DLA:
    cfg = model.cfg
    final = cache[act_name("resid_post", cfg.n_layers - 1)]  # [batch, pos, d_model]
    batch, n_pos = final.shape[:2]
    rows, at = torch.arange(batch, device=final.device), _positions(pos, batch, n_pos, final)

    def pick(t: Tensor) -> Tensor:  # [batch, pos, ...] -> [batch, ...] at each row's position
        return t[rows, at]

    direction, unembed_bias = _logit_diff_direction(model, correct, incorrect, final)
    attr, norm_bias = _direct_effect(model, direction, pick(cache["ln_final.hook_scale"])
                                     if model.ln_final is not None else None)
    bias = unembed_bias + norm_bias
    embed = attr(pick(cache["hook_embed"]))
    pos_embed = attr(pick(cache["hook_pos_embed"])) if "hook_pos_embed" in model.hook_dict \
        else embed.new_zeros(batch)
    heads = torch.stack([attr(pick(head_results(cache, i))) for i in range(cfg.n_layers)], 1)
    cross = None
    if cfg.cross_attention:
        cross = torch.stack([attr(pick(head_results(cache, i, cross=True)))
                             for i in range(cfg.n_layers)], 1)  # [batch, layer, head]
    mlp = None
    if not cfg.attn_only:
        mlp = torch.stack([attr(pick(cache[act_name("mlp_out", i)]))
                           for i in range(cfg.n_layers)], 1)
    if cfg.attn_bias:
        b_O = model.b_O.detach()  # [layer, d_model]: every position gets the same bias
        if cfg.cross_attention:
            b_O = b_O + torch.stack([b.cross_attn.b_O.detach() for b in model.blocks])
        bias = bias + attr(b_O.sum(0).expand(batch, -1))

    final_x = pick(final)
    ln = model.ln_final
    normed = ln(final_x[:, None])[:, 0] if ln is not None else final_x
    logit_diff = (normed * direction).sum(-1) + unembed_bias
    total = embed + pos_embed + heads.sum((1, 2)) + bias
    if mlp is not None:
        total = total + mlp.sum(1)
    if cross is not None:
        total = total + cross.sum((1, 2))
    return DLA(
        heads_per_example=heads.cpu(),
        mlp_per_example=mlp.cpu() if mlp is not None else None,
        embed_per_example=embed.cpu(),
        pos_embed_per_example=pos_embed.cpu(),
        bias_per_example=bias.cpu(),
        rest_per_example=(logit_diff - total).cpu(),
        logit_diff_per_example=logit_diff.cpu(),
        cross_heads_per_example=cross.cpu() if cross is not None else None,
    )


def _positions(pos: int | Tensor, batch: int, n_pos: int, like: Tensor) -> Tensor:
    """The position ``[batch]`` read in each row: one int for all, or one per row."""
    if isinstance(pos, int):
        if not -n_pos <= pos < n_pos:
            raise ValueError(f"pos {pos} is outside a sequence of length {n_pos}")
        return torch.full((batch,), pos % n_pos, dtype=torch.long, device=like.device)
    return torch.as_tensor(pos).long().to(like.device).reshape(-1).expand(batch)


def _logit_diff_direction(model: Any, correct: Any, incorrect: Any, like: Tensor
                          ) -> tuple[Tensor, Tensor]:
    """``(direction [batch, d_model], unembedding bias [batch])`` of the logit (difference)
    each row reads: ``W_U[:, correct] - W_U[:, incorrect]`` and the same of ``b_U``."""
    batch = like.shape[0]

    def ids(x: Any, name: str) -> Tensor:
        t = as_token_ids(x, name, model.cfg.d_vocab).to(like.device).reshape(-1)
        if t.numel() not in (1, batch):
            raise ValueError(f"{name} must be an int or [batch={batch}] ids, got {t.numel()}")
        return t.expand(batch)

    W_U, b_U = model.W_U.detach(), model.b_U
    b_U = b_U.detach() if b_U is not None else like.new_zeros(model.cfg.d_vocab)
    good = ids(correct, "correct")
    direction, bias = W_U.T[good], b_U[good]
    if incorrect is not None:
        bad = ids(incorrect, "incorrect")
        direction, bias = direction - W_U.T[bad], bias - b_U[bad]
    return direction, bias


def _direct_effect(model: Any, direction: Tensor, scale: Tensor | None
                   ) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``(attr, bias)``: ``attr`` maps a component ``[batch, ..., d_model]`` to its direct
    effect ``[batch, ...]`` on the logit difference through the final norm (frozen at its
    ``scale`` ``[batch, 1]``), and ``bias`` ``[batch]`` is what the norm's own bias adds."""
    ln, batch = model.ln_final, direction.shape[0]
    if ln is not None:
        eff = direction * ln.w.detach()  # the weight folds into the read direction
        bias = direction @ ln.b.detach() if ln.b is not None else direction.new_zeros(batch)
        centre = model.cfg.normalization == "layer"
    else:
        scale, eff, centre = direction.new_ones(batch, 1), direction, False
        bias = direction.new_zeros(batch)

    def attr(x: Tensor) -> Tensor:
        if centre:
            x = x - x.mean(-1, keepdim=True)
        shape = (batch,) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return (x * eff.reshape(shape)).sum(-1) / scale.reshape((batch,) + (1,) * (x.dim() - 2))

    return attr, bias
