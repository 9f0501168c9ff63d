"""Causal interventions: activation patching, attribution patching and path patching.

All three ask "how much of the clean behaviour comes back if this one activation takes its
clean value inside a run on the corrupted input?". The answer is ``metric(logits)``, a
number the caller chooses; ``logit_diff_metric`` builds the usual one, scaled so the
corrupted run scores 0 and the clean run 1.

- ``activation_patching``: the real thing, one forward pass per patched component.
- ``attribution_patching``: its first-order estimate from one forward and backward pass on
  the corrupted input plus one clean forward: (clean - corrupted) . d metric / d act.
- ``path_patching``: patch a sender head's output only along its path into a receiver
  head's query, key or value input (or into the logits), freezing every other head.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from gptscope.model.hooks import act_name

Metric = Callable[[Tensor], Any]

# kind -> (its hook, act_name(hook, layer); position dims; head dim or None)
_KINDS: dict[str, tuple[str, tuple[int, ...], int | None]] = {
    "resid_pre": ("resid_pre", (1,), None),
    "resid_mid": ("resid_mid", (1,), None),
    "resid_post": ("resid_post", (1,), None),
    "attn_out": ("attn_out", (1,), None),
    "mlp_out": ("mlp_out", (1,), None),
    "z": ("z", (1,), 2),
    "q": ("q", (1,), 2),
    "k": ("k", (1,), 2),
    "v": ("v", (1,), 2),
    "pattern": ("pattern", (2,), 1),  # position = query position
    # One attention weight at a time: [layer, head, query (dest), key (src)].
    "pattern_dest_src": ("pattern", (2, 3), 1),
}
_ALIASES = {"head": "z"}
KINDS = tuple(_KINDS) + tuple(_ALIASES)


def logit_diff(logits: Tensor, answer: Any, wrong: Any, pos: int = -1) -> Tensor:
    """Mean over the batch of ``logits[b, pos, answer[b]] - logits[b, pos, wrong[b]]``."""
    last = logits[:, pos]  # [batch, d_vocab]
    rows = torch.arange(last.shape[0], device=last.device)
    a = torch.as_tensor(answer, device=last.device).long().reshape(-1).expand(last.shape[0])
    w = torch.as_tensor(wrong, device=last.device).long().reshape(-1).expand(last.shape[0])
    return (last[rows, a] - last[rows, w]).mean()


def logit_diff_metric(
    clean_logits: Tensor,
    corrupted_logits: Tensor,
    answer: Any,
    wrong: Any,
    pos: int = -1,
) -> Callable[[Tensor], Tensor]:
    """A metric ``logits -> scalar`` that is 1 on the clean logits and 0 on the corrupted ones.

    answer, wrong: an int or ids ``[batch]``; the logit difference is read at ``pos``.
    """
    clean = logit_diff(clean_logits, answer, wrong, pos).detach()
    corrupted = logit_diff(corrupted_logits, answer, wrong, pos).detach()
    gap = clean - corrupted
    if gap.abs() < 1e-6:
        raise ValueError(
            f"clean and corrupted logit differences are equal ({clean.item():.4g}); the "
            "corruption does not change the answer, so there is nothing to restore. Pick a "
            "corruption that flips it."
        )

    def metric(logits: Tensor) -> Tensor:
        return (logit_diff(logits, answer, wrong, pos) - corrupted) / gap

    return metric


def _kind(kind: str, model: Any) -> tuple[str, tuple[int, ...], int | None]:
    """(the kind's hook for act_name, position dims, head dim or None)."""
    kind = _ALIASES.get(kind, kind)
    if kind not in _KINDS:
        raise ValueError(f"unknown patching kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in ("resid_mid", "mlp_out") and model.cfg.attn_only:
        raise ValueError(f"attention-only models have no {kind}; use resid_pre/attn_out/z")
    return _KINDS[kind]


def _tokens(model: Any, clean: Any, corrupted: Any) -> tuple[Tensor, Tensor]:
    clean, corrupted = model.to_tokens(clean), model.to_tokens(corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} tokens must "
            "have the same shape (patching swaps activations position by position); pad or "
            "pick corruptions of equal length"
        )
    return clean, corrupted


def _per_position(per_position: bool | None, pos_dims: tuple[int, ...],
                  head_dim: int | None) -> bool:
    """Whether the map has position axes: by default for the residual kinds, not per head;
    always for pattern_dest_src, which is one entry per (query, key)."""
    if len(pos_dims) > 1:
        if per_position is False:
            raise ValueError("pattern_dest_src patches one (query, key) weight at a time; "
                             "use kind='pattern' for whole heads or query rows")
        return True
    return head_dim is None if per_position is None else per_position


def _map_dims(pos_dims: tuple[int, ...], head_dim: int | None, per_pos: bool
              ) -> tuple[int, ...]:
    """The activation dims a map entry picks one index of, in map order (head, positions)."""
    return ((head_dim,) if head_dim is not None else ()) + (pos_dims if per_pos else ())


def _out_shape(model: Any, n_pos: int, dims: tuple[int, ...], head_dim: int | None
               ) -> tuple[int, ...]:
    """[layer, (head,) (pos...)]: the map's shape."""
    return (model.cfg.n_layers, *(model.cfg.n_heads if d == head_dim else n_pos for d in dims))


def _index(ndim: int, dims: tuple[int, ...], unit: tuple) -> tuple:
    """The activation index that a map entry (``unit``, one index per dim) patches."""
    idx: list[Any] = [slice(None)] * ndim
    for d, i in zip(dims, unit):
        idx[d] = i
    return tuple(idx)


def _scalar(value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric must return a scalar, got shape {tuple(value.shape)}; "
                             "average over the batch inside the metric")
        return value.item()
    return float(value)


class _Plan:
    """What activation and attribution patching share: the checked tokens, the hooks of
    ``kind`` in every layer, the activation dims a map entry indexes, the clean activations."""

    def __init__(self, model: Any, clean_tokens: Any, corrupted_tokens: Any, kind: str,
                 per_position: bool | None) -> None:
        hook, pos_dims, self.head_dim = _kind(kind, model)
        self.model = model
        self.clean, self.corrupted = _tokens(model, clean_tokens, corrupted_tokens)
        self.dims = _map_dims(pos_dims, self.head_dim,
                              _per_position(per_position, pos_dims, self.head_dim))
        self.names = [act_name(hook, i) for i in range(model.cfg.n_layers)]
        self.clean_acts = model.activations(self.clean, self.names)

    def empty_map(self) -> Tensor:
        """[layer, (head,) (pos...)], to fill in."""
        return torch.empty(_out_shape(self.model, self.clean.shape[1], self.dims,
                                      self.head_dim))


def activation_patching(
    model: Any,
    clean_tokens: Any,
    corrupted_tokens: Any,
    metric: Metric,
    kind: str = "resid_pre",
    per_position: bool | None = None,
) -> Tensor:
    """Patch each clean activation into the corrupted run, one at a time; return the metric.

    kind: resid_pre | resid_mid | resid_post | attn_out | mlp_out (map ``[layer, pos]``, or
    ``[layer]`` with ``per_position=False``) or, per head, z (alias "head") | q | k | v |
    pattern (map ``[layer, head]``, or ``[layer, head, pos]`` with ``per_position=True``;
    for pattern the position is the query) | pattern_dest_src (one attention weight at a time:
    ``[layer, head, query, key]``). Runs one forward pass per map entry whose clean and
    corrupted values differ; the others (e.g. weights the causal mask zeroes in both) get
    the unpatched metric.
    """
    plan = _Plan(model, clean_tokens, corrupted_tokens, kind, per_position)
    corrupted, dims, names, clean_acts = plan.corrupted, plan.dims, plan.names, plan.clean_acts
    corrupted_acts = model.activations(corrupted, names)
    out = plan.empty_map()
    with torch.no_grad():
        unpatched = _scalar(metric(model(corrupted)))
        for layer, name in enumerate(names):
            source = clean_acts[name]
            for unit in itertools.product(*(range(n) for n in out.shape[1:])):
                idx = _index(source.dim(), dims, unit)
                if torch.equal(source[idx], corrupted_acts[name][idx]):
                    out[(layer, *unit)] = unpatched  # nothing to patch (e.g. a masked weight)
                    continue

                def patch(x: Tensor, hook: Any, idx: tuple = idx, src: Tensor = source) -> Tensor:
                    x = x.clone()
                    x[idx] = src[idx]
                    return x

                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)])
                out[(layer, *unit)] = _scalar(metric(logits))
    return out


def _ensure_grad(x: Tensor, hook: Any) -> Tensor:
    # With frozen weights nothing would require grad; a fresh leaf at the embedding makes
    # every later activation part of the graph.
    return x if x.requires_grad else x.detach().requires_grad_(True)


def attribution_patching(
    model: Any,
    clean_tokens: Any,
    corrupted_tokens: Any,
    metric: Metric,
    kind: str = "resid_pre",
    per_position: bool | None = None,
) -> Tensor:
    """First-order estimate of ``activation_patching`` (same kinds, same map shape).

    Each entry is metric(corrupted) + sum over the patched slice of (clean - corrupted) *
    d metric / d activation at the corrupted run: one clean forward pass, one corrupted
    forward and backward pass, whatever the map size. Good where the metric is near linear
    in the activation (small components, e.g. single heads); crude for whole residual
    streams, where it tends to under- or overshoot.
    """
    plan = _Plan(model, clean_tokens, corrupted_tokens, kind, per_position)
    corrupted, dims, names, clean_acts = plan.corrupted, plan.dims, plan.names, plan.clean_acts
    acts: dict[str, Tensor] = {}

    def save(x: Tensor, hook: Any) -> None:
        acts[hook.name] = x

    hooks = [("hook_embed", _ensure_grad)] + [(n, save) for n in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        value = metric(model(corrupted))
        if not isinstance(value, Tensor) or value.numel() != 1 or not value.requires_grad:
            raise ValueError("attribution patching needs a metric that returns a scalar tensor "
                             "computed from the logits with torch ops (it is differentiated)")
        grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    base = value.item()
    out = plan.empty_map()
    for layer, (name, grad) in enumerate(zip(names, grads)):
        if grad is None:  # the activation does not reach the metric
            out[layer] = base
            continue
        prod = (clean_acts[name] - acts[name].detach()) * grad  # elementwise first-order terms
        # Sum over every dim the map does not index, the kept ones in map order.
        prod = prod.permute(*dims, *(d for d in range(prod.dim()) if d not in dims))
        out[layer] = base + prod.flatten(len(dims)).sum(-1).cpu()
    return out


def _check_path_args(model: Any, receivers: Any, receiver_input: Any
                     ) -> tuple[bool, list[tuple[int, int]], list[str], int]:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    to_logits = isinstance(receivers, str)
    if to_logits and receivers != "logits":
        raise ValueError(f"receivers must be 'logits' or a list of (layer, head), got "
                         f"{receivers!r}")
    if to_logits:
        return True, [], [], n_layers
    recv = [(int(r[0]), int(r[1])) for r in receivers]
    if not recv:
        raise ValueError("receivers is empty; give at least one (layer, head)")
    for layer, head in recv:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"receiver ({layer}, {head}) is outside the model")
    inputs = sorted(set(receiver_input))
    if not inputs or any(i not in ("q", "k", "v") for i in inputs):
        raise ValueError(f"receiver_input must be made of 'q', 'k', 'v', got {receiver_input!r}")
    return False, recv, inputs, min(layer for layer, _ in recv)


class _PathPatcher:
    """The caches and hooks path patching reuses across senders."""

    def __init__(self, model: Any, clean: Tensor, corrupted: Tensor, receivers: Any,
                 receiver_input: Any, freeze_mlps: bool) -> None:
        cfg = model.cfg
        self.model, self.corrupted = model, corrupted
        self.to_logits, self.receivers, inputs, self.lowest = _check_path_args(
            model, receivers, receiver_input)
        z_names = [act_name("z", i) for i in range(cfg.n_layers)]
        self.frozen_names = z_names + ([act_name("mlp_out", i) for i in range(cfg.n_layers)]
                                       if freeze_mlps and not cfg.attn_only else [])
        self.clean_cache = model.activations(clean, z_names)
        self.corr_cache = model.activations(corrupted, self.frozen_names)
        self.receiver_names = sorted({act_name(i, layer)
                                      for layer, _ in self.receivers for i in inputs})
        self.heads_at: dict[int, list[int]] = {}
        for layer, head in self.receivers:
            self.heads_at.setdefault(layer, []).append(head)

    def check_senders(self, senders: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        out = [(int(s[0]), int(s[1])) for s in senders]
        if not out:
            raise ValueError("senders is empty; give at least one (layer, head)")
        for layer, head in out:
            if not (0 <= layer < self.lowest and 0 <= head < self.model.cfg.n_heads):
                raise ValueError(f"sender ({layer}, {head}) must be a head below the lowest "
                                 f"receiver layer {self.lowest}")
        return out

    @torch.no_grad()
    def run(self, senders: list[tuple[int, int]], metric: Metric) -> float:
        by_layer: dict[str, list[int]] = {}
        for layer, head in senders:
            by_layer.setdefault(act_name("z", layer), []).append(head)

        def freeze(x: Tensor, hook: Any) -> Tensor:
            # Every head (and MLP, if frozen) at its corrupted value, senders at clean.
            x = self.corr_cache[hook.name].clone()
            for head in by_layer.get(hook.name, []):
                x[:, :, head] = self.clean_cache[hook.name][:, :, head]
            return x

        recorded: dict[str, Tensor] = {}

        def record(x: Tensor, hook: Any) -> None:
            recorded[hook.name] = x.clone()

        hooks = [(n, freeze) for n in self.frozen_names]
        hooks += [(n, record) for n in self.receiver_names]
        logits = self.model.run_with_hooks(self.corrupted, fwd_hooks=hooks)
        if self.to_logits:
            return _scalar(metric(logits))

        def patch_in(x: Tensor, hook: Any) -> Tensor:
            x = x.clone()
            for head in self.heads_at[hook.layer()]:
                x[:, :, head] = recorded[hook.name][:, :, head]
            return x

        logits = self.model.run_with_hooks(
            self.corrupted, fwd_hooks=[(n, patch_in) for n in self.receiver_names])
        return _scalar(metric(logits))


def path_patch_group(
    model: Any,
    clean_tokens: Any,
    corrupted_tokens: Any,
    metric: Metric,
    senders: Sequence[tuple[int, int]],
    receivers: Sequence[tuple[int, int]] | str = "logits",
    receiver_input: str | Iterable[str] = "v",
    freeze_mlps: bool = False,
) -> float:
    """The metric (one float) after patching a group of sender heads' clean outputs into the
    corrupted run along their paths into ``receivers`` only (see ``path_patching``)."""
    clean, corrupted = _tokens(model, clean_tokens, corrupted_tokens)
    patcher = _PathPatcher(model, clean, corrupted, receivers, receiver_input, freeze_mlps)
    return patcher.run(patcher.check_senders(senders), metric)


def path_patching(
    model: Any,
    clean_tokens: Any,
    corrupted_tokens: Any,
    metric: Metric,
    receivers: Sequence[tuple[int, int]] | str = "logits",
    receiver_input: str | Iterable[str] = "v",
    senders: Sequence[tuple[int, int]] | None = None,
    freeze_mlps: bool = False,
) -> Tensor:
    """Effect of each sender head's clean output along its path into ``receivers`` only.

    For each sender (by default every head below the lowest receiver): (1) run the corrupted
    input with the sender's ``hook_z`` set to its clean value and every other head frozen at
    its corrupted value (MLPs recompute unless ``freeze_mlps``, so paths through MLPs
    count), recording the receivers' ``receiver_input`` ("q", "k", "v" or several, e.g.
    "qk"); (2) run the corrupted input again with just those receiver inputs patched in,
    and take the metric. With ``receivers="logits"`` the metric is read from run (1): the
    sender's direct path to the output. Returns ``[layer, head]`` (NaN for heads that are
    not senders). ``path_patch_group`` patches a group of senders together.
    """
    clean, corrupted = _tokens(model, clean_tokens, corrupted_tokens)
    patcher = _PathPatcher(model, clean, corrupted, receivers, receiver_input, freeze_mlps)
    if senders is None:
        senders = [(layer, h) for layer in range(patcher.lowest)
                   for h in range(model.cfg.n_heads)]
    out = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    for sender in patcher.check_senders(senders):
        out[sender] = patcher.run([sender], metric)
    return out
