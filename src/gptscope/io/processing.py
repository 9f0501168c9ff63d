"""Weight processing, as in TransformerLens: fold LayerNorm, centre writers, centre W_U.

Each step rewrites weights so the model computes the same log-probabilities (up to float
rounding, ~1e-6 in fp32) while its weights become easier to read. They return a new
Transformer (the config may change: processing unties tied embeddings and may add
biases); the model passed in is left as it was.

* ``fold_layer_norm``: a LayerNorm's scale ``w`` and shift ``b`` are moved into the
  matrices that read its output (W_Q/W_K/W_V after ln1, W_in after ln2, W_U after
  ln_final), and ``w=1, b=0`` is left behind. gptscope's LayerNorm still centres and
  divides by the norm, like TransformerLens's ``LNPre``. Readers are then centred over
  d_model (their input has mean zero, so this changes nothing).
* ``center_writing_weights``: every matrix that writes to the residual stream (W_E, W_pos,
  token-type embeddings, W_O, W_out and their biases) has its mean over d_model removed.
  Every reader sits behind a LayerNorm that removes that mean anyway, so nothing changes
  downstream. Needs a pre-LN model with LayerNorm (not RMSNorm) and a final LayerNorm.
* ``center_unembed``: W_U (and b_U) lose their mean over the vocabulary. That shifts each
  logit vector by a constant, which softmax ignores: logits change, log-probs do not.
* ``fold_value_biases``: each head's b_V moves into b_O (as ``b_V @ W_O``, summed over
  heads). A query's attention weights sum to 1, so every position receives the same
  ``b_V @ W_O`` whatever it attends to: logits stay, while hook_v and hook_z (and each
  head's result) lose that constant, and the bias shows up where it acts, in b_O.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptscope.config import ModelConfig


class State(dict):
    """A state dict whose updates, when ``inplace``, overwrite the existing tensor.

    In place, each rewrite needs room for one new tensor at a time instead of a second
    copy of the whole model; ``load_pretrained`` uses it to stay near one copy.
    """

    def __init__(self, items: dict[str, Tensor], inplace: bool) -> None:
        super().__init__(items)
        self.inplace = inplace

    def __setitem__(self, key: str, value: Tensor) -> None:
        old = self.get(key)
        if (self.inplace and old is not None and old.shape == value.shape
                and old.dtype == value.dtype):
            with torch.no_grad():
                old.copy_(value)
        else:
            super().__setitem__(key, value)


def process_weights(model, fold_ln: bool = False, center_writing_weights: bool = False,
                    center_unembed: bool = False, fold_value_biases: bool = False,
                    inplace: bool = False):
    """Apply the chosen steps in TransformerLens's order; returns ``model`` if none.

    inplace: overwrite ``model``'s tensors instead of allocating new ones (less memory;
    ``model`` must not be used afterwards, only the returned one).
    """
    if not (fold_ln or center_writing_weights or center_unembed or fold_value_biases):
        return model
    cfg = model.cfg
    state = State({k: v.detach() for k, v in model.state_dict().items()}, inplace)
    if fold_ln:
        cfg, state = _fold_layer_norm(cfg, state)
    if center_writing_weights:
        cfg, state = _center_writing_weights(cfg, state)
    if center_unembed:
        cfg, state = _center_unembed(cfg, state)
    if fold_value_biases:
        cfg, state = _fold_value_biases(cfg, state)
    return _rebuild(model, cfg, state)


def fold_layer_norm(model):
    """Fold every LayerNorm's w and b into the weights that read it (see module doc)."""
    return process_weights(model, fold_ln=True)


def center_writing_weights(model):
    """Remove the d_model mean from every matrix and bias writing to the residual stream."""
    return process_weights(model, center_writing_weights=True)


def center_unembed(model):
    """Remove the vocabulary mean from W_U and b_U (logits shift, log-probs stay)."""
    return process_weights(model, center_unembed=True)


def fold_value_biases(model):
    """Move every head's b_V into b_O (logits stay; see module doc)."""
    return process_weights(model, fold_value_biases=True)


# -- state-dict level -----------------------------------------------------------------------


def _note(cfg: ModelConfig, step: str, **changes) -> ModelConfig:
    extra = dict(cfg.extra)
    extra["processing"] = [*extra.get("processing", []), step]
    return cfg.replace(extra=extra, **changes)


def _untie(cfg: ModelConfig, state: State) -> ModelConfig:
    """Give the unembedding its own copy of W_E.T, so W_E and W_U can change apart."""
    if cfg.tie_embeddings:
        state["unembed.W_U"] = state["embed.W_E"].t().clone()
        cfg = cfg.replace(tie_embeddings=False)
    return cfg


def _add_biases(cfg: ModelConfig, state: State, part: str) -> ModelConfig:
    """Add zero biases (attn, mlp or unembed) so a fold has somewhere to put ln's b."""
    dtype = state["embed.W_E"].dtype
    device = state["embed.W_E"].device

    def zeros(*shape: int) -> Tensor:
        return torch.zeros(*shape, dtype=dtype, device=device)

    if part == "attn" and not cfg.attn_bias:
        for i in range(cfg.n_layers):
            for x in "QKV":
                state[f"blocks.{i}.attn.b_{x}"] = zeros(cfg.n_heads, cfg.d_head)
            state[f"blocks.{i}.attn.b_O"] = zeros(cfg.d_model)
        return cfg.replace(attn_bias=True)
    if part == "mlp" and not cfg.mlp_bias:
        for i in range(cfg.n_layers):
            state[f"blocks.{i}.mlp.b_in"] = zeros(cfg.d_mlp)
            state[f"blocks.{i}.mlp.b_out"] = zeros(cfg.d_model)
        return cfg.replace(mlp_bias=True)
    if part == "unembed" and not cfg.unembed_bias:
        state["unembed.b_U"] = zeros(cfg.d_vocab)
        return cfg.replace(unembed_bias=True)
    return cfg


def _sub_mean(state: State, name: str, dim: int) -> None:
    """Remove ``state[name]``'s mean along ``dim`` (in place when the state says so)."""
    mean = state[name].mean(dim=dim, keepdim=True)
    if state.inplace:
        with torch.no_grad():
            state[name].sub_(mean)
    else:
        state[name] = state[name] - mean


def _fold(state: State, ln: str, readers: list[tuple[str, str]], center: bool) -> None:
    """Fold LayerNorm ``ln`` into each reader (weight [..., d_model, out], bias), then
    leave ``ln`` with w=1, b=0."""
    w_ln = state[f"{ln}.w"]
    b_ln = state.get(f"{ln}.b")
    for weight, bias in readers:
        if b_ln is not None:  # [d_model] @ [..., d_model, out] -> [..., out]
            state[bias] = state[bias] + b_ln @ state[weight]
        if state.inplace:
            with torch.no_grad():
                state[weight].mul_(w_ln[:, None])
        else:
            state[weight] = state[weight] * w_ln[:, None]
        if center:  # the input is centred, so the mean over d_model never contributes
            _sub_mean(state, weight, dim=-2)
    state[f"{ln}.w"] = torch.ones_like(w_ln)
    if b_ln is not None:
        state[f"{ln}.b"] = torch.zeros_like(b_ln)


def _fold_layer_norm(cfg: ModelConfig, state: State) -> tuple[ModelConfig, State]:
    if cfg.norm_position != "pre" or cfg.normalization not in ("layer", "rms"):
        raise ValueError(
            f"fold_ln needs a pre-LN model with LayerNorm or RMSNorm; this one has "
            f"norm_position={cfg.norm_position!r}, normalization={cfg.normalization!r}. "
            "Load it with fold_ln=False"
        )
    layer = cfg.normalization == "layer"
    if layer:  # ln.b lands in the readers' biases, which must exist
        cfg = _add_biases(cfg, state, "attn")
        if not cfg.attn_only:
            cfg = _add_biases(cfg, state, "mlp")
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        _fold(state, b + "ln1", [(f"{b}attn.W_{x}", f"{b}attn.b_{x}") for x in "QKV"], layer)
        if not cfg.attn_only:
            _fold(state, b + "ln2", [(b + "mlp.W_in", b + "mlp.b_in")], layer)
    if cfg.final_norm:
        cfg = _untie(cfg, state)
        if layer:
            cfg = _add_biases(cfg, state, "unembed")
        _fold(state, "ln_final", [("unembed.W_U", "unembed.b_U")], layer)
    return _note(cfg, "fold_ln"), state


def _center_writing_weights(cfg: ModelConfig, state: State) -> tuple[ModelConfig, State]:
    if cfg.norm_position != "pre" or cfg.normalization != "layer" or not cfg.final_norm:
        raise ValueError(
            "center_writing_weights needs a pre-LN model with LayerNorm (which removes the "
            "mean) before every reader, including a final LayerNorm; this one has "
            f"norm_position={cfg.norm_position!r}, normalization={cfg.normalization!r}, "
            f"final_norm={cfg.final_norm}. Load it with center_writing_weights=False"
        )
    cfg = _untie(cfg, state)  # centring W_E must not change W_U
    writers = ["embed.W_E", "token_type_embed.weight"]
    if cfg.positional == "learned":  # sinusoidal tables are fixed buffers: left alone
        writers.append("pos_embed.W_pos")
    for i in range(cfg.n_layers):
        writers += [f"blocks.{i}.attn.W_O", f"blocks.{i}.attn.b_O"]
        if not cfg.attn_only:
            writers += [f"blocks.{i}.mlp.W_out", f"blocks.{i}.mlp.b_out"]
    for name in writers:
        if name in state:
            _sub_mean(state, name, dim=-1)
    return _note(cfg, "center_writing_weights"), state


def _center_unembed(cfg: ModelConfig, state: State) -> tuple[ModelConfig, State]:
    cfg = _untie(cfg, state)  # W_E stays as it is
    for name in ("unembed.W_U", "unembed.b_U"):
        if name in state:
            _sub_mean(state, name, dim=-1)
    return _note(cfg, "center_unembed"), state


def _fold_value_biases(cfg: ModelConfig, state: State) -> tuple[ModelConfig, State]:
    if not cfg.attn_bias:  # no b_V: nothing to fold
        return _note(cfg, "fold_value_biases"), state
    for i in range(cfg.n_layers):
        a = f"blocks.{i}.attn."
        b_v, w_o = state[a + "b_V"], state[a + "W_O"]  # [head, d_head], [head, d_head, d_model]
        state[a + "b_O"] = state[a + "b_O"] + torch.einsum("hd,hdm->m", b_v, w_o)
        state[a + "b_V"] = torch.zeros_like(b_v)
    return _note(cfg, "fold_value_biases"), state


def _rebuild(model, cfg: ModelConfig, state: State):
    """A new Transformer with ``cfg`` adopting ``state``'s tensors (no copies)."""
    from gptscope.model.transformer import Transformer

    new = Transformer(cfg, device="meta")
    new.load_state_dict(state, strict=True, assign=True)
    new.rebuild_buffers(model.device)
    new.tokenizer = getattr(model, "tokenizer", None)
    return new.train(model.training)
