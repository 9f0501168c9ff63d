"""Hook points: identity layers that name every activation, and the machinery to use them.

A ``HookPoint`` returns its input unchanged until someone attaches a function to it. The
names follow TransformerLens (``blocks.0.attn.hook_pattern``), so code and habits port.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from gptscope.model.cache import ActivationCache

HookFn = Callable[[Tensor, "HookPoint"], Tensor | None]
NameFilter = None | str | Sequence[str] | Callable[[str], bool]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")

# Hook points that cost extra compute (or memory) when observed, opt-in in TransformerLens
# too: cached only when asked for by name.
ON_REQUEST = ("hook_result", "hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input",
              "hook_mlp_in")


class ForwardPositions:
    """Where the model's running forward pass is in its sequence; shared by its hook points.

    The model sets it for the length of each forward call (see ``HookPoint.offset`` and
    ``HookPoint.positions``), so a hook that acts "from position k on" knows, during
    cached decoding, which positions its activation holds.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.positions: Tensor | None = None

    @contextlib.contextmanager
    def during(self, offset: int, positions: Tensor) -> Iterator[None]:
        """Set for one forward pass; restored after, so a hook may run the model itself."""
        saved = self.offset, self.positions
        self.offset, self.positions = offset, positions
        try:
            yield
        finally:
            self.offset, self.positions = saved


class HookPoint(nn.Module):
    """An identity layer with a name; forward and backward functions can be attached.

    ``fn(tensor, hook)`` may return a new tensor of the same shape, dtype and device
    (replacing the activation; anything else is a ValueError naming fn and the hook) or None
    (keeping it, possibly edited in place). A function with ``fn.reads_only = True`` promises not to
    edit, which spares the copy described in ``__init__``. A spliced module (``splice``)
    transforms the activation first; its own hook points become addressable under this
    point's name.
    """

    def __init__(self, saved_for_backward: bool = False) -> None:
        """saved_for_backward: the op that makes this activation keeps it for its own
        backward (softmax, SDPA, relu), so hooks that may edit it in place get a copy."""
        super().__init__()
        self.saved_for_backward = saved_for_backward
        self.name: str = ""
        self.fwd_fns: list[HookFn] = []
        self.bwd_fns: list[HookFn] = []
        self.splice: nn.Module | None = None
        self._where = ForwardPositions()  # replaced by the model's own in setup_hooks

    @property
    def offset(self) -> int:
        """During a forward pass: the sequence index of this activation's first position (0,
        or the number of cached positions during KV-cached decoding)."""
        return self._where.offset

    @property
    def positions(self) -> Tensor | None:
        """During a forward pass: the position ids of this activation's positions, [pos]
        (or [batch, pos] when padding makes rows differ); None outside one."""
        return self._where.positions

    @property
    def active(self) -> bool:
        return bool(self.fwd_fns or self.bwd_fns or self.splice is not None)

    def layer(self) -> int | None:
        """The block index this hook lives in, or None for embeddings and ln_final."""
        return self.layer_of(self.name)

    @staticmethod
    def layer_of(name: str) -> int | None:
        """The block index in a hook name ("blocks.3.hook_resid_pre" -> 3), or None."""
        m = _LAYER_RE.match(name)
        return int(m.group(1)) if m else None

    def forward(self, x: Tensor) -> Tensor:
        if self.splice is not None:
            # Shape only: a module (an SAE) may compute in its own dtype, as before.
            x = _checked(self.splice(x), x, f"module {type(self.splice).__name__} attached at "
                         f"{self.name}", attrs=("shape",))
        if self.saved_for_backward and x.requires_grad and any(
                not getattr(fn, "reads_only", False) for fn in self.fwd_fns):
            x = x.clone()  # an in-place edit would otherwise break the producer's backward
        for fn in self.fwd_fns:
            out = fn(x, self)
            if out is not None:
                x = _checked(out, x, f"hook function {_fn_name(fn)} on {self.name}")
        if self.bwd_fns and x.requires_grad:
            # Bind the functions attached now: run_with_hooks removes them before the
            # caller's backward pass, which must still run them on this forward's graph.
            fns = list(self.bwd_fns)
            x.register_hook(lambda grad: self._run_bwd(grad, fns))
        return x

    def _run_bwd(self, grad: Tensor, fns: list[HookFn]) -> Tensor:
        for fn in fns:
            out = fn(grad, self)
            if out is not None:
                grad = _checked(out, grad, f"backward hook function {_fn_name(fn)} on "
                                f"{self.name}", "return a gradient of the input's")
        return grad

    def extra_repr(self) -> str:
        return self.name

    @property
    def ctx(self) -> dict:
        """Scratch space for hook functions that need state across calls."""
        if not hasattr(self, "_ctx"):
            self._ctx: dict = {}
        return self._ctx


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _checked(out: Any, x: Tensor, who: str, fix: str = "return a tensor of the input's",
             attrs: tuple[str, ...] = ("shape", "dtype", "device")) -> Tensor:
    """``out`` if it can stand in for ``x`` (same ``attrs``), else a ValueError naming ``who``:
    a wrong tensor would otherwise fail later, deep inside torch, or silently change the
    dtype of everything downstream."""
    if not isinstance(out, Tensor):
        raise ValueError(f"{who} returned {type(out).__name__}, expected a Tensor; {fix} "
                         "shape, dtype and device, or None to keep the (possibly edited) input")
    for attr in attrs:
        got, want = getattr(out, attr), getattr(x, attr)
        if got != want:
            if attr == "shape":
                got, want, hint = tuple(got), tuple(want), ""
            else:
                hint = f" (x.to({want}))" if attr == "dtype" else f" (x.to('{want}'))"
            raise ValueError(f"{who} returned {attr} {got}, expected {want}; {fix} {attr}"
                             f"{hint} or None")
    return out


def act_name(name: str, layer: int | None = None, sub: str | None = None) -> str:
    """Full hook name from TransformerLens-style shorthand.

    act_name("pattern", 0) -> "blocks.0.attn.hook_pattern";
    act_name("scale", 1, "ln2") -> "blocks.1.ln2.hook_scale"; act_name("embed") -> "hook_embed".
    """
    if "." in name or name.startswith("hook_"):
        return name if layer is None else f"blocks.{layer}.{name}"
    aliases = {"attn": "pattern", "attn_logits": "attn_scores", "rot_q": "rot_q",
               "resid_pre": "resid_pre"}
    name = aliases.get(name, name)
    if layer is None:
        if name in ("scale", "normalized"):
            return f"ln_final.hook_{name}"
        return f"hook_{name}"
    if name in ("q", "k", "v", "z", "pattern", "attn_scores", "result", "rot_q", "rot_k"):
        return f"blocks.{layer}.attn.hook_{name}"
    if name in ("pre", "post", "mlp_pre", "mlp_post"):
        return f"blocks.{layer}.mlp.hook_{name.replace('mlp_', '')}"
    if name in ("scale", "normalized"):
        return f"blocks.{layer}.{sub or 'ln1'}.hook_{name}"
    return f"blocks.{layer}.hook_{name}"


def _one_name(hook_name: Any) -> str:
    if not isinstance(hook_name, str):
        raise ValueError(f"hook_name must be one hook's name (a str), got {hook_name!r:.80}")
    return hook_name


def _hook_entries(arg: str, entries: Any) -> list[tuple[Any, HookFn]]:
    """Check ``fwd_hooks``/``bwd_hooks``: an iterable of (name or filter, fn) pairs."""
    example = "e.g. [('blocks.0.hook_resid_pre', fn)]"
    if isinstance(entries, (str, bytes, dict)) or not isinstance(entries, Iterable):
        raise ValueError(f"{arg} must be a list of (hook name or filter, fn) pairs, got "
                         f"{entries!r:.80}; {example}")
    entries = list(entries)
    for i, entry in enumerate(entries):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise ValueError(f"{arg}[{i}] must be a (hook name or filter, fn) pair, got "
                             f"{entry!r:.80}; {arg} is a list of pairs, {example}")
        if not callable(entry[1]):
            raise ValueError(f"{arg}[{i}] = ({entry[0]!r}, {entry[1]!r:.40}): the second item "
                             "must be a function fn(tensor, hook) -> tensor or None")
    return entries


class HookedModule(nn.Module):
    """Mixin giving a module TransformerLens-style hook management.

    Call ``setup_hooks()`` at the end of ``__init__``: every HookPoint below gets its
    dotted module path as its name.
    """

    def setup_hooks(self) -> None:
        self.hook_dict: dict[str, HookPoint] = {}
        if "_where" not in self.__dict__:  # a plain attribute: not a module, not state
            self._where = ForwardPositions()
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                # A spliced module's hooks read as children of the point they sit in.
                name = name.replace(".splice.", ".")
                module.name = name
                module._where = self._where
                self.hook_dict[name] = module

    # -- finding hook points -------------------------------------------------------------

    def _resolve(self, names: NameFilter, *, default_all: bool,
                 arg: str = "names_filter") -> list[HookPoint]:
        """The hook points ``names`` picks; ``arg`` names it in errors."""
        hook_dict = self.hook_dict
        if names is None:
            if not default_all:
                return []
            return [h for n, h in hook_dict.items() if not n.endswith(ON_REQUEST)]
        if isinstance(names, nn.Module):  # callable, but not a filter: it returns its input
            raise ValueError(f"{arg} got the module {names!r}; pass its name (e.g. hook.name)")
        if callable(names):
            return [h for n, h in hook_dict.items() if names(n)]
        if isinstance(names, str):
            names = [names]
        elif isinstance(names, Iterable) and not isinstance(names, bytes):
            names = list(names)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{arg} must be a hook name, a list of hook names or a function "
                             f"name -> bool, got {names!r:.80}; e.g. 'blocks.0.hook_resid_pre' "
                             "or lambda name: name.endswith('hook_pattern')")
        return [self.hook_point(n) for n in names]

    def local_names(self, points: list[HookPoint]) -> list[str]:
        """Each point's name in this module's ``hook_dict``. A part of a larger model (the
        decoder of an EncoderDecoder) keeps its own names there, while ``point.name`` is
        the name in the whole model."""
        names = {id(point): name for name, point in self.hook_dict.items()}
        return [names.get(id(p), p.name) for p in points]

    def hook_point(self, name: str) -> HookPoint:
        """The hook point called ``name``; a ValueError suggesting close names if none is."""
        point = self.hook_dict.get(_one_name(name))
        if point is None:
            close = difflib.get_close_matches(name, list(self.hook_dict), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown hook name {name!r}{hint} (model.hook_dict lists all "
                             f"{len(self.hook_dict)} hook names)")
        return point

    # -- attaching and removing ----------------------------------------------------------

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
    ) -> Iterator[HookedModule]:
        """Attach hooks for the duration of a ``with`` block; removed even if it raises.

        Each entry is (hook name or filter function on names, fn).
        """
        added: list[tuple[list[HookFn], HookFn]] = []
        try:
            for arg, entries, attr in (("fwd_hooks", fwd_hooks, "fwd_fns"),
                                       ("bwd_hooks", bwd_hooks, "bwd_fns")):
                for i, (name, fn) in enumerate(_hook_entries(arg, entries)):
                    for point in self._resolve(name, default_all=False, arg=f"{arg}[{i}]"):
                        fns = getattr(point, attr)
                        fns.append(fn)
                        added.append((fns, fn))
            yield self
        finally:
            for fns, fn in reversed(added):
                # Remove by identity: the same fn may be attached at several points.
                for i in range(len(fns) - 1, -1, -1):
                    if fns[i] is fn:
                        del fns[i]
                        break

    def reset_hooks(self) -> None:
        """Remove every attached function (spliced modules stay; use ``detach``)."""
        for point in self.hook_dict.values():
            point.fwd_fns.clear()
            point.bwd_fns.clear()

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Iterable = (),
        bwd_hooks: Iterable = (),
        **kwargs: Any,
    ) -> Any:
        """Run forward with hooks attached only for this call."""
        with self.hooks(fwd_hooks, bwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NameFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run forward and return (output, cache of the activations ``names_filter`` picks).

        ``names_filter``: None (all but on-request points such as hook_result), a name, a
        list of names, or a function name -> bool. With ``incl_bwd`` the output must be a
        scalar (e.g. ``return_type="loss"``); backward runs and gradients are cached under
        ``name + "_grad"``.
        """
        from gptscope.model.cache import ActivationCache

        if not isinstance(incl_bwd, bool):
            raise ValueError(f"incl_bwd must be True or False, got {incl_bwd!r}")
        points = self._resolve(names_filter, default_all=True)
        with self.recording(points, device, incl_bwd) as store:
            out = self(*args, **kwargs)
            if incl_bwd:
                if not isinstance(out, Tensor) or out.numel() != 1:
                    raise ValueError(
                        "incl_bwd=True needs a scalar output to call backward on; "
                        "pass return_type='loss'"
                    )
                out.backward()
        return out, ActivationCache(store, self)

    @contextlib.contextmanager
    def recording(self, points: list[HookPoint], device: str | torch.device | None = None,
                  incl_bwd: bool = False) -> Iterator[dict[str, Tensor]]:
        """Inside the block, every forward (and with ``incl_bwd``, backward) pass saves the
        activations at ``points`` (detached, moved to ``device``) in the yielded dict; after
        it, the dict lists them in ``points`` order, then the gradients (``name + "_grad"``)."""
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as e:
                raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got "
                                 f"{device!r}") from e
        store: dict[str, Tensor] = {}
        # Saved under this module's own names, which differ from point.name when this
        # module is part of a larger one (the decoder of an EncoderDecoder).
        names = {id(p): name for p, name in zip(points, self.local_names(points))}

        def save(tensor: Tensor, hook: HookPoint) -> None:
            t = tensor.detach()
            store[names[id(hook)]] = t.to(device) if device is not None else t

        save.reads_only = True  # type: ignore[attr-defined]  # no copy needed to guard it

        def save_grad(grad: Tensor, hook: HookPoint) -> None:
            t = grad.detach()
            store[names[id(hook)] + "_grad"] = t.to(device) if device is not None else t

        fwd = [(names[id(p)], save) for p in points]
        bwd = [(names[id(p)], save_grad) for p in points] if incl_bwd else []
        with self.hooks(fwd, bwd):
            yield store
        ordered = {names[id(p)]: store[names[id(p)]] for p in points
                   if names[id(p)] in store}
        ordered.update({k: v for k, v in store.items() if k.endswith("_grad")})
        store.clear()
        store.update(ordered)

    # -- splicing modules into the forward pass --------------------------------------------

    def attach(self, hook_name: str, module: nn.Module) -> None:
        """Route the activation at ``hook_name`` through ``module`` (e.g. an SAE).

        The module's own HookPoints become hooks named ``f"{hook_name}.{their path}"``.
        """
        point = self._resolve(_one_name(hook_name), default_all=False)[0]
        if point.splice is not None:
            raise ValueError(f"{hook_name} already has a module attached; detach it first")
        point.splice = module
        self.setup_hooks()

    def detach(self, hook_name: str) -> nn.Module:
        """Remove and return the module attached at ``hook_name``."""
        point = self._resolve(_one_name(hook_name), default_all=False)[0]
        if point.splice is None:
            raise ValueError(f"nothing is attached at {hook_name}")
        module, point.splice = point.splice, None
        self.setup_hooks()
        return module

    @contextlib.contextmanager
    def attached(self, hook_name: str, module: nn.Module) -> Iterator[nn.Module]:
        """``with model.attached(name, sae): ...`` splices ``module`` in for the block."""
        self.attach(hook_name, module)
        try:
            yield module
        finally:
            self.detach(hook_name)
