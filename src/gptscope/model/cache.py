"""ActivationCache: the activations one forward pass saved, looked up by hook name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gptscope.model.hooks import act_name

if TYPE_CHECKING:
    from torch import nn


class ActivationCache:
    """A read-only mapping from hook names to tensors, with TransformerLens shorthand.

    ``cache["blocks.0.attn.hook_pattern"]``, ``cache["pattern", 0]`` and
    ``cache["scale", 1, "ln2"]`` all work. ``model`` is kept so analyses can read weights.
    """

    def __init__(self, store: dict[str, Tensor], model: nn.Module | None = None) -> None:
        self._store = store
        self.model = model

    def _key(self, key: str | tuple) -> str:
        if isinstance(key, tuple):
            return act_name(*key)
        return key if key in self._store else act_name(key)

    def __getitem__(self, key: str | tuple) -> Tensor:
        name = self._key(key)
        if name not in self._store:
            import difflib

            close = difflib.get_close_matches(name, list(self._store), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"{name!r} is not in the cache{hint} (cached {len(self._store)} names; "
                "widen names_filter to keep more)"
            )
        return self._store[name]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, tuple)):
            return False
        return self._key(key) in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def keys(self):
        return self._store.keys()

    def values(self):
        return self._store.values()

    def items(self):
        return self._store.items()

    def to(self, device: str | torch.device) -> ActivationCache:
        return ActivationCache({k: v.to(device) for k, v in self._store.items()}, self.model)

    def submodel(self, prefix: str) -> ActivationCache:
        """The activations of one part of the model (``"decoder"`` or ``"encoder"`` of an
        ``EncoderDecoder``) under that part's own hook names, bound to that part: tools that
        take a model and a cache (the logit lens, ``dla``, ``decompose_resid``) then read
        ``cache.submodel("decoder")`` with ``model.decoder`` as a cache of that model."""
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be the name of a submodule, got {prefix!r}")
        start = prefix + "."
        store = {k[len(start):]: v for k, v in self._store.items() if k.startswith(start)}
        parts = sorted({k.split(".")[0] for k in self._store if "." in k})
        if not store:
            raise ValueError(f"no cached activation starts with {start!r}; this cache's "
                             f"prefixes are {parts}")
        try:
            part = self.model.get_submodule(prefix) if self.model is not None else None
        except AttributeError:
            part = None
        if part is None:
            raise ValueError(f"the cache's model has no submodule {prefix!r}; pass one of "
                             f"{parts}")
        return ActivationCache(store, part)

    def remove_batch_dim(self) -> ActivationCache:
        """Drop a leading batch dimension of size 1 from every tensor."""
        for name, t in self._store.items():
            if t.shape[0] != 1:
                raise ValueError(f"{name} has batch size {t.shape[0]}; only 1 can be removed")
        return ActivationCache({k: v[0] for k, v in self._store.items()}, self.model)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self._store)} activations)"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{k}</code></td><td>{tuple(v.shape)}</td></tr>"
            for k, v in self._store.items()
        )
        return f"<table><tr><th>hook</th><th>shape</th></tr>{rows}</table>"

    def get(self, key: str | tuple, default: Any = None) -> Any:
        return self[key] if key in self else default
