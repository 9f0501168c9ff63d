"""Transformer: one model class for GPT-2, attention-only toys and BERT-style encoders."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptscope.config import ACTIVATIONS, ModelConfig
from gptscope.model import functional as gf
from gptscope.model import inputs
from gptscope.model.hooks import HookedModule, HookPoint, NameFilter
from gptscope.model.layers import (
    Block,
    Embed,
    KVCache,
    PaddingMask,
    PosEmbed,
    cross_inputs,
    make_norm,
    table_rows,
)
from gptscope.model.vision import PatchEmbed, check_images

RETURN_TYPES = ("logits", "loss", "both", None)


class Transformer(HookedModule):
    """A decoder (GPT) or encoder (BERT-style) transformer with a hook on every activation.

    >>> cfg = ModelConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=100, n_ctx=32)
    >>> model = Transformer(cfg)
    >>> model(torch.randint(0, 100, (2, 10))).shape
    torch.Size([2, 10, 100])
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"Transformer needs a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.tokenizer: Any = None  # set by training or loading; used for string prompts
        # A vision config embeds images: the class token and one vector per patch.
        self.embed = PatchEmbed(cfg, device, dtype) if cfg.is_vision else \
            Embed(cfg, device, dtype)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional in ("learned", "sinusoidal"):
            self.pos_embed = PosEmbed(cfg, device, dtype)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.n_token_types:
            self.token_type_embed = nn.Embedding(cfg.n_token_types, cfg.d_model, device=device,
                                                 dtype=dtype)
            self.hook_token_type_embed = HookPoint()
        if cfg.embed_norm:
            self.embed_ln = make_norm(cfg, cfg.normalization or "layer", device, dtype)
        if cfg.positional == "rotary":
            # Built for the first positions only and grown on demand (_ensure_positions).
            cos, sin = gf.rotary_angles(table_rows(cfg.n_ctx), cfg.rotary_dim, cfg.rotary_base)
            self.register_buffer("rotary_cos", cos.to(device), persistent=False)
            self.register_buffer("rotary_sin", sin.to(device), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, device, dtype) for _ in range(cfg.n_layers))
        if cfg.normalization and cfg.final_norm and cfg.norm_position == "pre":
            self.ln_final = make_norm(cfg, cfg.normalization, device, dtype)
        else:
            self.ln_final = None
        self.mlm_head = MLMHead(cfg, device, dtype) if cfg.mlm_head else None
        self.unembed = Unembed(cfg, self.embed, device, dtype)
        self.setup_hooks()
        if device is None or torch.device(device).type != "meta":
            self.init_weights()

    # -- weights ---------------------------------------------------------------------------

    def init_weights(self) -> None:
        """GPT-2 initialisation: N(0, init_range) matrices, residual writers scaled down.

        W_O and W_out are divided by sqrt(2 n_layers) so the residual stream's variance does
        not grow with depth. ``cfg.seed`` makes it reproducible without touching global RNG.
        """
        std = self.cfg.init_range
        out_std = std / math.sqrt(2 * max(self.cfg.n_layers, 1))
        with torch.random.fork_rng(devices=[]):
            if self.cfg.seed is not None:
                torch.manual_seed(self.cfg.seed)
            for name, p in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith("W_") or leaf in ("W", "cls_token"):  # mlm_head, ViT
                    nn.init.normal_(p, 0.0, out_std if leaf in ("W_O", "W_out") else std)
                elif name.startswith("token_type_embed"):
                    nn.init.normal_(p, 0.0, std)

    def rebuild_buffers(self, device=None) -> None:
        """Recompute the fixed tables (sinusoidal positions, rotary angles) on ``device``.

        They are not saved in checkpoints; a model built on the meta device needs them made.
        Like at init, they cover the first ``table_rows(n_ctx)`` positions and grow on demand.
        """
        device = device or self.device
        if self.cfg.positional == "sinusoidal":
            self.pos_embed.build(table_rows(self.cfg.n_ctx), device, self.dtype)
        if self.cfg.positional == "rotary":
            self._build_rotary(table_rows(self.cfg.n_ctx), device)

    def _build_rotary(self, rows: int, device) -> None:
        """(Re)make the rotary cos/sin tables for positions [0, rows) on ``device``."""
        cos, sin = gf.rotary_angles(rows, self.cfg.rotary_dim, self.cfg.rotary_base)
        self.rotary_cos, self.rotary_sin = cos.to(device), sin.to(device)

    def _ensure_positions(self, n_pos: int) -> None:
        """Grow the position tables to cover positions [0, n_pos), doubling, up to n_ctx.

        Python-level shape checks only: free in forward, and constant under torch.compile.
        """
        if self.cfg.positional == "sinusoidal":
            self.pos_embed.ensure(n_pos)
        elif self.cfg.positional == "rotary" and n_pos > self.rotary_cos.shape[0]:
            rows = table_rows(self.cfg.n_ctx, self.rotary_cos.shape[0], n_pos)
            self._build_rotary(rows, self.rotary_cos.device)

    def _stack(self, module: str, attr: str) -> Tensor:
        if not len(self.blocks):  # n_layers=0: an empty stack, still [0, ...]-shaped
            shape = getattr(getattr(Block(self.cfg, device="meta"), module), attr).shape
            return torch.empty(0, *shape, device=self.device, dtype=self.dtype)
        return torch.stack([getattr(getattr(b, module), attr) for b in self.blocks])

    W_E = property(lambda self: self.embed.W_E,
                   doc="[d_vocab, d_model]; a vision model's patch map [C * p * p, d_model]")
    W_U = property(lambda self: self.unembed.W_U, doc="[d_model, d_vocab]")
    b_U = property(lambda self: self.unembed.b_U, doc="[d_vocab] or None")
    W_Q = property(lambda self: self._stack("attn", "W_Q"), doc="[layer, head, d_model, d_head]")
    W_K = property(lambda self: self._stack("attn", "W_K"), doc="[layer, head, d_model, d_head]")
    W_V = property(lambda self: self._stack("attn", "W_V"), doc="[layer, head, d_model, d_head]")
    W_O = property(lambda self: self._stack("attn", "W_O"), doc="[layer, head, d_head, d_model]")
    b_Q = property(lambda self: self._stack("attn", "b_Q"), doc="[layer, head, d_head]")
    b_K = property(lambda self: self._stack("attn", "b_K"), doc="[layer, head, d_head]")
    b_V = property(lambda self: self._stack("attn", "b_V"), doc="[layer, head, d_head]")
    b_O = property(lambda self: self._stack("attn", "b_O"), doc="[layer, d_model]")
    W_in = property(lambda self: self._stack("mlp", "W_in"), doc="[layer, d_model, d_mlp]")
    W_out = property(lambda self: self._stack("mlp", "W_out"), doc="[layer, d_mlp, d_model]")
    b_in = property(lambda self: self._stack("mlp", "b_in"), doc="[layer, d_mlp]")
    b_out = property(lambda self: self._stack("mlp", "b_out"), doc="[layer, d_model]")

    @property
    def W_pos(self) -> Tensor:
        """[n_ctx, d_model]: learned or sinusoidal position vectors (all n_ctx of them)."""
        if not hasattr(self, "pos_embed"):
            raise ValueError(f"positional={self.cfg.positional!r} models have no W_pos")
        self.pos_embed.ensure(self.cfg.n_ctx)  # an explicit request builds the full table
        return self.pos_embed.W_pos

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.W_E.dtype

    # -- input checks (gptscope.model.inputs) ----------------------------------------------

    def to_tokens(self, tokens: Any) -> Tensor:
        """Accept a string (needs a tokenizer), a list of ids (or of equally long lists), a
        numpy array or an integer tensor; return a LongTensor [batch, pos] on the model's
        device."""
        if self.cfg.is_vision:
            raise ValueError("this is a vision transformer (image_shape="
                             f"{self.cfg.image_shape}): it reads images, not tokens or "
                             "strings; pass a float tensor [batch, C, H, W]")
        return inputs.token_ids(tokens, self.tokenizer, self.cfg.d_vocab, self.device)

    def _model_input(self, given: Any, return_type: str | None, extras: dict) -> Tensor:
        """Token ids [batch, pos], or for a vision model images [batch, C, H, W] (refusing
        what only token models take: the next-token loss, padding, segments, a KV cache)."""
        if not self.cfg.is_vision:
            return self.to_tokens(given)
        used = [k for k, v in extras.items() if v is not None]
        if return_type in ("loss", "both") or used:
            raise ValueError(f"a vision transformer takes images only, not return_type="
                             f"{return_type!r} or {used}; use model.classify(images) and "
                             "a cross-entropy against the labels")
        return check_images(given, self.cfg.image_shape, self.device, self.dtype)

    def classify(self, images: Tensor) -> Tensor:
        """A vision model's class logits: images [batch, C, H, W] -> [batch, n_classes].

        ``forward`` gives logits at every position, [batch, 1 + n_patches, n_classes], so
        hooks and per-position tools see the same shapes as in a token model; the class is
        read from position 0, the class token, as in the ViT paper.
        """
        if not self.cfg.is_vision:
            raise ValueError("classify is for vision transformers (a config with image_shape "
                             "and patch_size); a token model's logits come from model(tokens)")
        return self(images)[:, 0]

    def _check_length(self, n: int) -> None:
        inputs.check_length(n, self.cfg.n_ctx)

    # -- forward ---------------------------------------------------------------------------

    def embed_tokens(
        self,
        tokens: Tensor,
        positions: Tensor,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Token (+ position, + segment) embeddings: [batch, pos] -> [batch, pos, d_model]."""
        x = self.hook_embed(self.embed(tokens))
        if hasattr(self, "pos_embed"):
            pos = self.pos_embed(positions)  # [pos, d_model] or [batch, pos, d_model]
            if self.hook_pos_embed.active:
                # Hooks see [batch, pos, d_model], as in TransformerLens, and their own copy:
                # a broadcast view could not be edited in place.
                pos = self.hook_pos_embed(pos.expand(tokens.shape[0], -1, -1).contiguous())
            x = x + pos
        if self.cfg.n_token_types:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(tokens)
            x = x + self.hook_token_type_embed(self.token_type_embed(token_type_ids))
        if self.cfg.embed_norm:
            x = self.embed_ln(x)
        return self.drop(x)

    def _attention_mask(self, keys: Tensor | None, n_query: int, n_key: int):
        """Combine causality and padding (keys: bool [batch, key], True = real token) into a
        bool [batch, 1, query, key] mask (a PaddingMask with padding), or None.

        None lets SDPA use its causal kernel. Each query always sees itself, so fully
        padded rows give finite (ignored) values instead of NaN.
        """
        if keys is None:
            if self.cfg.causal and n_query != n_key and n_query > 1:
                return gf.causal_mask(n_query, n_key, device=self.device)[None, None]
            return None
        mask = keys[:, None, None, :].expand(-1, 1, n_query, -1)  # [batch, 1, query, key]
        if self.cfg.causal:
            mask = mask & gf.causal_mask(n_query, n_key, device=self.device)
        diag = torch.eye(n_query, n_key, dtype=torch.bool, device=self.device).roll(
            n_key - n_query, dims=-1
        )
        return PaddingMask(mask | diag, ~keys[:, None, :, None])

    def forward(
        self,
        tokens: Any,
        return_type: str | None = "logits",
        attention_mask: Tensor | None = None,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        token_type_ids: Tensor | None = None,
        loss_per_token: bool = False,
        past: KVCache | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        logits_at: Tensor | None = None,
    ) -> Any:
        """Run the model.

        tokens: LongTensor [batch, pos] (or [pos], a list, or a string with a tokenizer);
        with ``start_at_layer`` it is instead the residual stream [batch, pos, d_model]. A
        vision model (``cfg.image_shape``) takes float images [batch, C, H, W] instead and
        gives logits [batch, 1 + n_patches, n_classes] (``classify`` reads position 0).
        return_type: "logits" [batch, pos, d_vocab], "loss" (mean next-token loss; per token
        [batch, pos - 1] with ``loss_per_token``), "both" (logits, loss) or None.
        attention_mask: [batch, pos] (with ``past``: [batch, cached + new positions]), 1 for
        real tokens and 0 for padding; nothing in padded positions reaches real tokens.
        start_at_layer / stop_at_layer: ints in [-n_layers, n_layers], negative from the end.
        stop_at_layer: return the residual stream entering that block, [batch, pos, d_model].
        past: a KVCache for incremental decoding (see ``generate``).
        context: the encoder output [batch, src_pos, d_model] that a ``cross_attention``
        model's blocks attend to (required there, refused elsewhere); context_mask [batch,
        src_pos]: 1 for real source tokens, 0 for padding (cross-attention never reads it).
        logits_at: a bool mask [batch, pos]; with return_type "logits", only those positions
        are unembedded, as [n_true, d_vocab] in row-major order (a loss that reads some
        positions, e.g. DPO's completions, skips the largest matmul for the rest).
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
        if not isinstance(loss_per_token, bool):
            raise ValueError(f"loss_per_token must be True or False, got {loss_per_token!r}")
        start, stop = inputs.layer_range(self.cfg.n_layers, start_at_layer, stop_at_layer)
        offset = inputs.past_length(past, self.cfg.n_layers)
        residual_in = start_at_layer is not None
        if not residual_in:
            tokens = self._model_input(tokens, return_type, {
                "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                "past": past})
        x = inputs.residual_input(tokens, self.cfg.d_model, self.device, self.dtype) \
            if residual_in else tokens
        # Images [batch, C, H, W] become 1 + n_patches positions (n_ctx) once embedded.
        n = self.cfg.n_ctx if self.cfg.is_vision and not residual_in else x.shape[1]
        self._check_length(offset + n)
        keys, token_type_ids = inputs.mask_and_types(self.cfg, attention_mask, token_type_ids,
                                                     x, past, self.device)
        positions = inputs.positions(keys, offset, n, self.device)
        self._ensure_positions(offset + n)
        with self._where.during(offset, positions):
            if not residual_in:
                x = self.embed_tokens(tokens, positions, token_type_ids)
            cross = cross_inputs(self.cfg, context, context_mask, x.shape[0], self.device,
                                 self.dtype)
            x = self._blocks(x, start, stop, self._attention_mask(keys, n, offset + n),
                             positions, past, cross)
            if stop_at_layer is not None:
                return x
            if logits_at is not None:
                x = x[self._logits_at(logits_at, x, return_type)]  # [n_true, d_model]
            x = self.final_norm(x)
            if return_type is None:  # ln_final's hooks have run, as in TransformerLens
                return None
            logits = self.unembed(x)
        if return_type == "logits":
            return logits
        keep = keys[:, offset:] if keys is not None else None
        loss = self.loss(logits, tokens, keep, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    @staticmethod
    def _logits_at(keep: Any, x: Tensor, return_type: str | None) -> Tensor:
        """``logits_at`` checked against the residual stream x [batch, pos, d_model]."""
        if return_type != "logits":
            raise ValueError(f"logits_at needs return_type='logits', got {return_type!r}")
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or \
                tuple(keep.shape) != tuple(x.shape[:2]):
            got = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep).__name__
            raise ValueError(f"logits_at must be a bool mask [batch, pos] = "
                             f"{list(x.shape[:2])}, got {got}; pass mask.bool()")
        return keep.to(x.device)

    def _blocks(self, x: Tensor, start: int, stop: int, mask: Any, positions: Tensor,
                past: KVCache | None, cross: tuple[Tensor, Any] | None = None) -> Tensor:
        """Run blocks [start, stop) on the residual stream x [batch, pos, d_model]; cross:
        (context [batch, src_pos, d_model], its PaddingMask or None) for cross-attention."""
        rope = None
        if self.cfg.positional == "rotary":
            rope = (self.rotary_cos[positions], self.rotary_sin[positions])
        for layer in range(start, stop):
            x = self.blocks[layer](x, mask, rope, past.layers[layer] if past is not None
                                   else None, cross)
        if past is not None:
            past.length += x.shape[1]
        return x

    def final_norm(self, x: Tensor) -> Tensor:
        """The final residual stream [batch, pos, d_model] as the unembedding reads it: after
        ln_final (and BERT's MLM head)."""
        if self.ln_final is not None:
            x = self.ln_final(x)
        if self.mlm_head is not None:
            x = self.mlm_head(x)
        return x

    def resid_to_logits(self, resid: Tensor) -> Tensor:
        """The final residual stream [batch, pos, d_model] -> logits [batch, pos, d_vocab]:
        ln_final (and BERT's MLM head), then the unembedding."""
        return self.unembed(self.final_norm(resid))

    def activations(self, tokens: Any, names: NameFilter, device: str | torch.device | None
                    = None, **forward_kwargs: Any) -> dict[str, Tensor]:
        """The activations at the hooks ``names`` picks, for ``tokens``, without gradients.

        names: a hook name, a list of names, or a function name -> bool. Only as much of the
        model runs as those hooks need (``stop_at_layer`` after the deepest one; no
        unembedding). forward_kwargs: ``attention_mask``, ``token_type_ids``,
        ``context``, ``context_mask`` (a cross-attention decoder).
        Returns {name: tensor} in hook order, e.g. ``[batch, pos, d_model]`` for residuals.
        """
        if names is None:
            raise ValueError("names must pick the hooks to read (a name, a list of names or "
                             "a function name -> bool); for every hook use run_with_cache")
        bad = set(forward_kwargs) - {"attention_mask", "token_type_ids", "context",
                                     "context_mask"}
        if bad:
            raise ValueError(f"activations takes attention_mask, token_type_ids, context and "
                             f"context_mask, not {sorted(bad)}")
        points = self._resolve(names, default_all=False, arg="names")
        local = self.local_names(points)
        layers = [_layer_needed(name) for name in local]
        if any(layer is None for layer in layers):  # after the blocks: run to the end
            run = {"return_type": "logits" if any(name.startswith("unembed.")
                                                  for name in local) else None}
        else:
            run = {"stop_at_layer": max(layers, default=-1) + 1}
        with torch.no_grad(), self.recording(points, device) as store:
            self(tokens, **run, **forward_kwargs)
        return store

    @staticmethod
    def loss(
        logits: Tensor,
        tokens: Tensor,
        attention_mask: Tensor | None = None,
        per_token: bool = False,
    ) -> Tensor:
        """Next-token cross-entropy: logits [batch, pos, vocab] predict tokens[:, 1:]."""
        if not isinstance(tokens, Tensor) or tokens.dim() != 2:
            raise ValueError("loss needs the token ids [batch, pos]; not available with "
                             "start_at_layer (compute it from the logits yourself)")
        if tokens.shape[1] < 2:
            raise ValueError("loss needs at least 2 tokens per sequence (one to predict)")
        per = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none"
        ).view(tokens.shape[0], -1)
        if per_token:
            return per
        if attention_mask is None:
            return per.mean()
        keep = attention_mask[:, 1:].to(per.device).bool()
        return per[keep].mean()

    # -- generation ------------------------------------------------------------------------

    def generate(self, tokens: Any, max_new_tokens: int = 20, **kwargs: Any) -> Any:
        """Sample a continuation with a KV cache; see ``gptscope.model.generation.generate``."""
        from gptscope.model.generation import generate

        self._refuse_vision("generate")
        return generate(self, tokens, max_new_tokens, **kwargs)

    def stream(self, tokens: Any, max_new_tokens: int = 20, **kwargs: Any) -> Iterator[Any]:
        """Yield new tokens one step at a time (strings when the prompt was a string)."""
        from gptscope.model.generation import stream

        self._refuse_vision("stream")
        return stream(self, tokens, max_new_tokens, **kwargs)

    def _refuse_vision(self, what: str) -> None:
        if self.cfg.is_vision:
            raise ValueError(f"{what} continues token sequences; a vision transformer "
                             "classifies images: use model.classify(images)")

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        c = self.cfg
        return (
            f"Transformer(n_layers={c.n_layers}, d_model={c.d_model}, n_heads={c.n_heads}, "
            f"d_vocab={c.d_vocab}, n_ctx={c.n_ctx}, params={n:,})"
        )


GPT = Transformer

_EMBEDDING_HOOKS = ("hook_embed", "hook_pos_embed", "hook_token_type_embed", "embed_ln.")


def _layer_needed(name: str) -> int | None:
    """The last block a forward must run to reach hook ``name``: -1 for the embeddings,
    None for hooks after the blocks (ln_final, the MLM head)."""
    layer = HookPoint.layer_of(name)
    if layer is not None:
        return layer
    return -1 if name.startswith(_EMBEDDING_HOOKS) else None


class MLMHead(nn.Module):
    """BERT's masked-LM transform, applied before the unembedding (``cfg.mlm_head``).

    resid [batch, pos, d_model] -> LayerNorm(act(resid @ W + b)). W: [d_model, d_model].
    Names follow TransformerLens's ``BertMLMHead`` (mlm_head.W, .b, .ln.w, .ln.b).
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(cfg.d_model, cfg.d_model, device=device, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, device=device, dtype=dtype))
        self.act = ACTIVATIONS[cfg.act_fn]
        self.ln = make_norm(cfg, cfg.normalization or "layer", device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(self.act(F.linear(x, self.W.t(), self.b)))


class Unembed(nn.Module):
    """Residual -> logits. W_U: [d_model, d_vocab] (the transposed W_E when tied)."""

    def __init__(self, cfg: ModelConfig, embed: Embed, device=None, dtype=None) -> None:
        super().__init__()
        if cfg.tie_embeddings:
            # A plain attribute list hides the embedding from this module's state_dict, so
            # the shared matrix is stored once.
            self._tied = [embed]
        else:
            self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab, device=device,
                                                dtype=dtype))
        if cfg.unembed_bias:
            self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, device=device, dtype=dtype))
        else:
            self.b_U = None
        self.hook_in = HookPoint()  # [batch, pos, d_model]: the residual it reads
        self.hook_out = HookPoint()  # [batch, pos, d_vocab]: the logits

    def __getattr__(self, name: str):
        if name == "W_U" and "_tied" in self.__dict__:
            return self.__dict__["_tied"][0].W_E.t()
        return super().__getattr__(name)

    def forward(self, x: Tensor) -> Tensor:
        """[batch, pos, d_model] -> [batch, pos, d_vocab]."""
        x = self.hook_in(x)
        w = self._tied[0].W_E if "_tied" in self.__dict__ else self.W_U.t()
        return self.hook_out(F.linear(x, w, self.b_U))
