"""Residual-stream bookkeeping on an ActivationCache: accumulate, decompose, scale, attribute.

The residual stream entering layer ``l`` is a sum: token embedding + position embedding +
every earlier attention and MLP output (and each attention output is a sum over heads plus
its bias). These functions return those pieces as a stack ``[component, ...batch_dims,
d_model]`` so they can be projected onto a direction, e.g. an answer's unembedding.

Names, arguments and label strings follow TransformerLens's ``ActivationCache`` methods,
but each is a function taking the cache first, and ``stack_head_results`` works from
``hook_z`` when ``hook_result`` was not cached.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gptscope.interp._util import PosSlice, as_token_ids, cache_model, resolve_layer, slice_pos
from gptscope.model.hooks import act_name


def _labelled(stack: Tensor, labels: list[str], return_labels: bool) -> Any:
    return (stack, labels) if return_labels else stack


def _has_mid(model: Any) -> bool:
    return not model.cfg.attn_only


def accumulated_resid(
    cache: Any,
    layer: int | None = None,
    incl_mid: bool = False,
    apply_ln: bool = False,
    pos_slice: PosSlice = None,
    mlp_input: bool = False,
    return_labels: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """The residual stream as it stands before each layer: ``[component, batch, pos, d_model]``.

    Components are ``resid_pre`` of layers ``0..layer-1`` and, when ``layer`` is None/-1 or
    n_layers, the final ``resid_post`` (label ``final_post``). ``incl_mid`` adds each earlier
    layer's ``resid_mid``; ``mlp_input`` adds ``resid_mid`` of ``layer`` itself.

    ``apply_ln``: for the final stream, every component goes through ``ln_final`` with its
    own statistics (the logit lens: each is read as if it were the last); for an earlier
    ``layer``, the cached scale of that layer's LayerNorm is used (frozen, see
    ``apply_ln_to_stack``). Labels: ``"0_pre"``, ``"0_mid"``, ..., ``"final_post"``.
    """
    model = cache_model(cache)
    n_layers = model.cfg.n_layers
    layer = resolve_layer(layer, n_layers)
    if (incl_mid or mlp_input) and not _has_mid(model):
        raise ValueError("attention-only models have no resid_mid; pass incl_mid=False, "
                         "mlp_input=False")
    parts: list[Tensor] = []
    labels: list[str] = []
    for i in range(layer + 1):
        if i == n_layers:
            parts.append(cache[act_name("resid_post", n_layers - 1)])
            labels.append("final_post")
            continue
        parts.append(cache[act_name("resid_pre", i)])
        labels.append(f"{i}_pre")
        if (incl_mid and i < layer) or (mlp_input and i == layer):
            parts.append(cache[act_name("resid_mid", i)])
            labels.append(f"{i}_mid")
    stack = torch.stack([slice_pos(p, pos_slice) for p in parts])
    if apply_ln:
        stack = apply_ln_to_stack(cache, stack, layer, mlp_input=mlp_input, pos_slice=pos_slice,
                                  recompute_ln=layer == n_layers)
    return _labelled(stack, labels, return_labels)


def decompose_resid(
    cache: Any,
    layer: int | None = None,
    mlp_input: bool = False,
    mode: str = "all",
    apply_ln: bool = False,
    pos_slice: PosSlice = None,
    incl_embeds: bool = True,
    return_labels: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """The residual stream entering ``layer`` split into what wrote it: ``[component, ...,
    d_model]``.

    Components: ``embed``, ``pos_embed`` (when the model has them and ``incl_embeds``), then
    ``{l}_attn_out``, ``{l}_cross_attn_out`` (a decoder with cross-attention) and
    ``{l}_mlp_out`` of each earlier layer (``mode`` "attn" keeps both attentions, "mlp" the
    MLPs). ``mlp_input`` adds ``layer``'s own attention outputs. With learned positions the
    components sum to ``resid_pre`` of ``layer``.
    """
    model = cache_model(cache)
    if mode not in ("all", "attn", "mlp"):
        raise ValueError(f"mode must be 'all', 'attn' or 'mlp', got {mode!r}")
    layer = resolve_layer(layer, model.cfg.n_layers)
    incl_attn = mode != "mlp"
    incl_mlp = mode != "attn" and _has_mid(model)
    parts: list[Tensor] = []
    labels: list[str] = []
    if incl_embeds:
        for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
            if name in model.hook_dict:
                parts.append(cache[name])
                labels.append(label)
    attention = ["attn_out"] + (["cross_attn_out"] if model.cfg.cross_attention else [])
    for i in range(layer):
        for kind in attention if incl_attn else []:
            parts.append(cache[f"blocks.{i}.hook_{kind}"])
            labels.append(f"{i}_{kind}")
        if incl_mlp:
            parts.append(cache[act_name("mlp_out", i)])
            labels.append(f"{i}_mlp_out")
    if mlp_input and incl_attn:
        if layer == model.cfg.n_layers:
            raise ValueError("mlp_input=True needs a layer below n_layers")
        for kind in attention:
            parts.append(cache[f"blocks.{layer}.hook_{kind}"])
            labels.append(f"{layer}_{kind}")
    if not parts:
        raise ValueError("no components selected; widen mode, incl_embeds or layer")
    stack = torch.stack([slice_pos(p, pos_slice) for p in parts])
    if apply_ln:
        stack = apply_ln_to_stack(cache, stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
    return _labelled(stack, labels, return_labels)


def _finish_stack(cache: Any, stack: Tensor, labels: list[str], layer: int,
                  pos_slice: PosSlice, incl_remainder: bool, apply_ln: bool,
                  return_labels: bool) -> Tensor | tuple[Tensor, list[str]]:
    """Append the remainder (``resid_post`` of ``layer - 1`` minus the stack's sum) and put
    the stack ``[component, ..., d_model]`` through ``layer``'s frozen LayerNorm, as asked."""
    if incl_remainder:
        if layer == 0:
            raise ValueError("incl_remainder needs layer >= 1 (the remainder is resid_post of "
                             "layer - 1)")
        resid = slice_pos(cache[act_name("resid_post", layer - 1)], pos_slice)
        stack = torch.cat([stack, (resid - stack.sum(0))[None]])
        labels.append("remainder")
    if apply_ln:
        stack = apply_ln_to_stack(cache, stack, layer, pos_slice=pos_slice)
    return _labelled(stack, labels, return_labels)


def head_results(cache: Any, layer: int, cross: bool = False) -> Tensor:
    """Each head's write into the residual stream at ``layer``: ``[batch, pos, head, d_model]``.

    Read from ``hook_result`` when it was cached; otherwise computed from ``hook_z`` and
    ``W_O`` (the same numbers: result = z @ W_O per head, without b_O). ``cross``: the
    heads of the block's cross-attention (a decoder with ``cross_attention=True``).
    """
    model = cache_model(cache)
    part = "cross_attn" if cross else "attn"
    if cross and not model.cfg.cross_attention:
        raise ValueError("cross=True needs a decoder built with cross_attention=True")
    name, z_name = (f"blocks.{layer}.{part}.hook_{kind}" for kind in ("result", "z"))
    if name in cache:
        return cache[name]
    if z_name not in cache:
        raise ValueError(
            f"per-head results need {name} or {z_name} in the cache; add one to names_filter "
            "(hook_z is the cheaper: hook_result is computed only on request)"
        )
    z = cache[z_name]  # [batch, pos, head, d_head]
    W_O = getattr(model.blocks[layer], part).W_O.detach()  # [head, d_head, d_model]
    return torch.einsum("...hd,hdm->...hm", z, W_O.to(z.dtype))


def stack_head_results(
    cache: Any,
    layer: int | None = None,
    return_labels: bool = False,
    incl_remainder: bool = False,
    pos_slice: PosSlice = None,
    apply_ln: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """Every head's output in the layers before ``layer``: ``[layer * head, batch, pos, d_model]``.

    Labels ``L{l}H{h}``, layer-major. ``incl_remainder`` appends ``resid_post`` of the last
    included layer minus the sum of the heads (embeddings, biases, MLPs), so the stack sums
    to that residual stream.
    """
    model = cache_model(cache)
    layer = resolve_layer(layer, model.cfg.n_layers)
    n_heads = model.cfg.n_heads
    parts = [slice_pos(head_results(cache, i), pos_slice, dim=-3) for i in range(layer)]
    labels = [f"L{i}H{h}" for i in range(layer) for h in range(n_heads)]
    if parts:
        # [..., layer * head, d_model] -> [layer * head, ..., d_model]
        stack = torch.cat(parts, dim=-2).movedim(-2, 0)
    else:
        shape = slice_pos(cache["hook_embed"], pos_slice).shape
        stack = cache["hook_embed"].new_zeros((0, *shape))
    return _finish_stack(cache, stack, labels, layer, pos_slice, incl_remainder, apply_ln,
                         return_labels)


def stack_neuron_results(
    cache: Any,
    layer: int | None = None,
    pos_slice: PosSlice = None,
    neuron_slice: PosSlice = None,
    return_labels: bool = False,
    incl_remainder: bool = False,
    apply_ln: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """Every MLP neuron's write in the layers before ``layer``: ``[layer * neuron, batch,
    pos, d_model]``.

    Neuron n of layer l writes ``hook_post[..., n] * W_out[l, n]`` (b_out is not any
    neuron's). Labels ``L{l}N{n}``, layer-major; ``neuron_slice`` (like ``pos_slice``) keeps
    some neurons of every layer. ``incl_remainder`` appends ``resid_post`` of ``layer - 1``
    minus the neurons' sum.
    """
    model = cache_model(cache)
    if not _has_mid(model):
        raise ValueError("attention-only models have no MLP neurons")
    layer = resolve_layer(layer, model.cfg.n_layers)
    neurons = slice_pos(torch.arange(model.cfg.d_mlp), neuron_slice, dim=0).reshape(-1)
    embed = slice_pos(cache["hook_embed"], pos_slice)
    stack = embed.new_zeros((0, *embed.shape))
    labels: list[str] = []
    for i in range(layer):
        post = slice_pos(cache[act_name("post", i)], pos_slice)[..., neurons]  # [.., neuron]
        w_out = model.blocks[i].mlp.W_out.detach()[neurons].to(post.dtype)  # [neuron, d_model]
        stack = torch.cat([stack, torch.einsum("...n,nm->n...m", post, w_out)])
        labels += [f"L{i}N{n}" for n in neurons.tolist()]
    return _finish_stack(cache, stack, labels, layer, pos_slice, incl_remainder, apply_ln,
                         return_labels)


def accumulated_bias(model: Any, layer: int | None = None, mlp_input: bool = False,
                     include_mlp_biases: bool = True) -> Tensor:
    """The biases written into the residual stream before ``layer``: ``[d_model]``.

    Each earlier attention's b_O and (with ``include_mlp_biases``) MLP's b_out; with
    ``mlp_input``, ``layer``'s own b_O too (the stream its MLP reads).
    """
    cfg = model.cfg
    layer = resolve_layer(layer, cfg.n_layers)
    if mlp_input and layer == cfg.n_layers:
        raise ValueError("mlp_input=True needs a layer below n_layers")
    total = torch.zeros(cfg.d_model, device=model.device, dtype=model.dtype)
    for i in range(layer + (1 if mlp_input else 0)):
        block = model.blocks[i]
        biases = [block.attn.b_O]
        if include_mlp_biases and i < layer and _has_mid(model):
            biases.append(block.mlp.b_out)
        for bias in biases:
            if bias is not None:
                total = total + bias.detach()
    return total


def full_resid_decomposition(
    cache: Any,
    layer: int | None = None,
    mlp_input: bool = False,
    expand_neurons: bool = True,
    apply_ln: bool = False,
    pos_slice: PosSlice = None,
    return_labels: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """The residual stream entering ``layer`` as the sum of every head, every neuron (or
    each MLP, ``expand_neurons=False``), the embeddings and the biases: ``[component,
    batch, pos, d_model]``.

    Labels: ``L{l}H{h}``, then ``L{l}N{n}`` (or ``{l}_mlp_out``), ``embed``, ``pos_embed``,
    ``bias``. The components sum to ``resid_pre`` of ``layer`` (``resid_mid`` with
    ``mlp_input``), the final ``resid_post`` for layer None.
    """
    model = cache_model(cache)
    if model.cfg.norm_position != "pre":
        raise ValueError("the decomposition sums to the residual stream of pre-LN models only; "
                         "post-LN models normalise after each residual add")
    if model.cfg.cross_attention:
        raise ValueError("full_resid_decomposition lists self-attention heads only; for a "
                         "decoder with cross-attention use decompose_resid (its "
                         "{l}_cross_attn_out parts) or dla (its cross_heads)")
    layer = resolve_layer(layer, model.cfg.n_layers)
    stack, labels = stack_head_results(cache, layer + (1 if mlp_input else 0),
                                       return_labels=True, pos_slice=pos_slice)
    parts, names = [stack], list(labels)
    if _has_mid(model) and layer > 0:
        if expand_neurons:
            mlps, mlp_labels = stack_neuron_results(cache, layer, pos_slice, return_labels=True)
        else:
            mlps, mlp_labels = decompose_resid(cache, layer, mode="mlp", pos_slice=pos_slice,
                                               incl_embeds=False, return_labels=True)
        parts.append(mlps)
        names += mlp_labels
    for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
        if name in model.hook_dict:
            parts.append(slice_pos(cache[name], pos_slice)[None])
            names.append(label)
    # Unexpanded MLP outputs already hold their b_out.
    bias = accumulated_bias(model, layer, mlp_input, include_mlp_biases=expand_neurons)
    parts.append(bias.to(stack.dtype).expand(1, *stack.shape[1:]))
    names.append("bias")
    stack = torch.cat(parts)
    if apply_ln:
        stack = apply_ln_to_stack(cache, stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
    return _labelled(stack, names, return_labels)


def ln_scale(cache: Any, layer: int | None = None, mlp_input: bool = False,
             pos_slice: PosSlice = None) -> Tensor | None:
    """The cached LayerNorm scale read by ``layer`` (None/n_layers: ln_final): ``[batch, pos,
    1]``, or None for models without normalization."""
    model = cache_model(cache)
    cfg = model.cfg
    layer = resolve_layer(layer, cfg.n_layers)
    if cfg.normalization is None:
        return None
    if cfg.norm_position != "pre":
        raise ValueError("apply_ln_to_stack assumes pre-LN models (GPT-style); post-LN models "
                         "normalise after each residual add, so no single scale applies")
    if layer == cfg.n_layers:
        if model.ln_final is None:
            return None
        name = "ln_final.hook_scale"
    else:
        name = act_name("scale", layer, "ln2" if mlp_input else "ln1")
    if name not in cache:
        raise ValueError(f"{name} is not in the cache; include it in names_filter to apply the "
                         "LayerNorm scale")
    return slice_pos(cache[name], pos_slice)


def apply_ln_to_stack(
    cache: Any,
    stack: Tensor,
    layer: int | None = None,
    mlp_input: bool = False,
    pos_slice: PosSlice = None,
    recompute_ln: bool = False,
) -> Tensor:
    """Put each component of ``stack`` ``[component, batch, pos, d_model]`` through the
    LayerNorm that ``layer`` reads (None: ln_final), with the scale **frozen** at its cached
    value.

    LayerNorm is linear once its scale is fixed: centring (LayerNorm, not RMSNorm) and
    division by the scale computed on the whole residual stream. So the scaled components
    still sum to the scaled whole, which is what makes direct attribution add up. The
    learned weight and bias are not applied (as in TransformerLens); ``dla`` applies them.
    ``pos_slice`` must be the one the stack was cut with. ``recompute_ln`` (final layer only)
    instead runs ``ln_final`` on each component with its own statistics, weight and bias.
    """
    model = cache_model(cache)
    layer = resolve_layer(layer, model.cfg.n_layers)
    if recompute_ln and layer == model.cfg.n_layers and model.ln_final is not None:
        return model.ln_final(stack)
    scale = ln_scale(cache, layer, mlp_input, pos_slice)
    if scale is None:
        return stack
    if model.cfg.normalization == "layer":
        stack = stack - stack.mean(-1, keepdim=True)
    try:
        return stack / scale.to(stack.dtype)
    except RuntimeError as e:
        raise ValueError(
            f"stack {tuple(stack.shape)} does not match the cached scale {tuple(scale.shape)}; "
            "pass the pos_slice the stack was cut with"
        ) from e


def unembed_directions(model: Any, tokens: Any) -> Tensor:
    """Columns of W_U for ``tokens`` (int or LongTensor of any shape): ``[*tokens, d_model]``."""
    ids = as_token_ids(tokens, "tokens", model.cfg.d_vocab).to(model.W_U.device)
    return model.W_U.detach().T[ids]


def logit_attrs(
    cache: Any,
    stack: Tensor,
    tokens: Any,
    incorrect_tokens: Any = None,
    pos_slice: PosSlice = None,
) -> Tensor:
    """How much each component of ``stack`` pushes up ``tokens``' logits (minus
    ``incorrect_tokens``' when given): ``[component, ...batch_dims]``.

    Each component is scaled by the final LayerNorm's frozen scale (``apply_ln_to_stack``)
    and dotted with the answer's unembedding column. ``tokens`` broadcasts against the
    stack's batch dims (e.g. ``[batch]`` for a stack cut at one position). This matches
    TransformerLens's ``logit_attrs``; ``dla`` also applies ln_final's weight and the
    biases so that its parts sum exactly to the logit difference.
    """
    model = cache_model(cache)
    direction = unembed_directions(model, tokens)
    if incorrect_tokens is not None:
        wrong = as_token_ids(incorrect_tokens, "incorrect_tokens", model.cfg.d_vocab)
        if wrong.shape != direction.shape[:-1]:
            raise ValueError(f"tokens {tuple(direction.shape[:-1])} and incorrect_tokens "
                             f"{tuple(wrong.shape)} must have the same shape")
        direction = direction - unembed_directions(model, wrong)
    scaled = apply_ln_to_stack(cache, stack, None, pos_slice=pos_slice)
    return (scaled * direction.to(scaled.dtype)).sum(-1)
