"""Strict reading of a learner's answer, for checks whose answers are losses.

A loss that comes back as a Python float has lost its gradient, and a list of numbers is not
a tensor, so nothing here converts silently: each wrong kind of answer gets a message that
says what came back; the comparison itself is ``_common.compare``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._common import Mismatch, call

NO_GRADIENT = ("your loss carries no gradient: build it with tensor operations on the inputs "
               "(.item(), float(), torch.tensor(...) or .detach() cut it off)")


def tensor_answer(value: Any, what: str) -> Tensor:
    """``value`` if it is a tensor; otherwise a Mismatch saying what it is instead."""
    if isinstance(value, Tensor):
        return value
    if value is None:
        raise Mismatch(f"{what} is None: did you forget the `return`?")
    kind = type(value).__name__
    if isinstance(value, (bool, int, float, complex)):
        raise Mismatch(f"{what} is a plain number ({kind}), not a tensor: return the tensor "
                       "itself (.item() and float() cut it off from the gradient)")
    if isinstance(value, (list, tuple)):
        raise Mismatch(f"{what} is a {kind}, not a tensor: return one tensor (torch.stack "
                       "the pieces if you built them one by one)")
    raise Mismatch(f"{what} is a {kind}, not a tensor")


def tuple_answer(value: Any, names: tuple[str, ...], fn_name: str) -> tuple[Any, ...]:
    """``value`` as a tuple of len(names), or a Mismatch naming what came back."""
    wanted = f"({', '.join(names)})"
    if not isinstance(value, tuple):
        kind = "None" if value is None else f"a {type(value).__name__}"
        raise Mismatch(f"{fn_name} should return a tuple {wanted}; it returned {kind}")
    if len(value) != len(names):
        raise Mismatch(f"{fn_name} should return {len(names)} values {wanted}; it returned "
                       f"{len(value)}")
    return value


def dict_answer(value: Any, required: tuple[str, ...], fn_name: str) -> Mapping[str, Any]:
    """``value`` as a mapping holding ``required`` keys, or a Mismatch naming the gap."""
    keys = " and ".join(repr(k) for k in required)
    if not isinstance(value, Mapping):
        kind = "None" if value is None else f"a {type(value).__name__}"
        raise Mismatch(f"{fn_name} should return a dict with keys {keys}; it returned {kind}")
    for key in required:
        if key not in value:
            has = ", ".join(repr(k) for k in value) or "no keys"
            raise Mismatch(f"the dict {fn_name} returned has no key {key!r} (it has {has})")
    return value


def gradients(loss: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor | None]:
    """d loss / d each input (None where the loss does not depend on it)."""
    if not loss.requires_grad:
        raise Mismatch(NO_GRADIENT)
    names = list(inputs)
    grads = call(torch.autograd.grad, loss, [inputs[n] for n in names], allow_unused=True)
    return dict(zip(names, grads))


def reaches(grad: Tensor | None) -> bool:
    """Whether a gradient reached an input at all (a zero gradient counts as none)."""
    return grad is not None and bool(grad.detach().abs().sum() > 0)
