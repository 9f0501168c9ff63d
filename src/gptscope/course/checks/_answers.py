"""Strict reading of a learner's answer, for checks whose answers are losses.

A loss that comes back as a Python float has lost its gradient, and a list of numbers is not
a tensor, so nothing here converts silently: each wrong kind of answer gets a message that
says what came back. Comparisons run in float64 against a float64 truth; a wrong answer is
named only when it matches exactly one known mistake that the case can tell apart from the
right answer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor

from gptscope.course.checks._common import LearnerError, Mismatch, call, close

# (message, function building the wrong answer in float64) pairs; a message may repeat
# when several wrong answers come from one mistake.
Variants = Iterable[tuple[str, Callable[[], Tensor | None]]]
C = TypeVar("C")

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


class Ambiguous(Mismatch):
    """The answer matches several known mistakes in one case; later cases may narrow them."""

    def __init__(self, suspects: list[str], details: Iterable[str] = ()) -> None:
        super().__init__(AMBIGUOUS + "; or ".join(suspects), details)
        self.suspects = suspects


AMBIGUOUS = "your answer matches more than one known mistake: "


def diagnose(got: Tensor, want: Tensor, variants: Variants, atol: float, rtol: float
             ) -> list[str]:
    """The known mistakes ``got`` matches, among those this case tells apart from the
    right answer."""
    found: list[str] = []
    for message, make in variants:
        try:
            with warnings.catch_warnings():  # e.g. std(correction=1) of one reward
                warnings.simplefilter("ignore")
                wrong = make()
        except Exception:  # a mistake that cannot be built for this case does not apply
            continue
        if not isinstance(wrong, Tensor) or wrong.shape != got.shape:
            continue
        if close(wrong, want, atol, rtol):  # this case cannot tell it from the right answer
            continue
        if close(got, wrong, atol, rtol) and message not in found:
            found.append(message)
    return found


def _named(found: list[str], details: list[str]) -> Mismatch | None:
    if len(found) > 1:
        return Ambiguous(found, details)
    return Mismatch(found[0], details) if found else None


def expect_close(got: Tensor, want: Tensor, case: str, what: str, variants: Variants = (),
                 atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Raise Mismatch unless ``got`` equals the float64 ``want`` within the tolerances
    (Ambiguous when it matches several known mistakes)."""
    details = [f"case: {case}"]
    variants = list(variants)
    if got.shape != want.shape:
        raise _named(diagnose(got, want, variants, atol, rtol), details) or Mismatch(
            f"{case}: {what} has shape {list(got.shape)}, expected {list(want.shape)}",
            details)
    if close(got, want, atol, rtol):
        return
    named = _named(diagnose(got, want, variants, atol, rtol), details)
    if named:
        raise named
    g = got.detach().double().cpu()
    if not torch.isfinite(g).all() and torch.isfinite(want).all():
        raise Mismatch(f"{case}: {what} holds nan or inf where the right answer is finite",
                       details)
    diff = torch.nan_to_num((g - want.detach().double().cpu()).abs(), nan=float("inf"))
    raise Mismatch(f"{case}: {what} differs from the right answer (largest difference "
                   f"{diff.max().item():.3g})", details)


def run_cases(cases: Iterable[C], one_case: Callable[[C], str]) -> list[str]:
    """Run ``one_case`` on every case and return the labels it passed. The first failure
    is raised, unless it matched several known mistakes: then the later cases narrow the
    suspects, and only a mistake every failing case agrees on is named alone."""
    passed: list[str] = []
    pending: Ambiguous | None = None
    for case in cases:
        try:
            passed.append(one_case(case))
        except Ambiguous as again:
            if pending is None:
                pending = again
            common = [m for m in pending.suspects if m in again.suspects]
            if common and common != pending.suspects:
                pending = Ambiguous(common, pending.details)
        except Mismatch as failure:
            if pending is None or failure.message in pending.suspects:
                raise
        if pending is not None and len(pending.suspects) == 1:
            raise Mismatch(pending.suspects[0], pending.details)
    if pending is not None:
        raise pending
    return passed


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


def guarded(body: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """``body``, with an answer the check could not read reported as a failed check rather
    than an exception out of the checker."""
    def run() -> list[str]:
        try:
            return body()
        except (NotImplementedError, Mismatch, LearnerError):
            raise
        except Exception as e:
            raise Mismatch(f"the check could not read your answer ({type(e).__name__}: {e}); "
                           "return what the docstring describes") from e
    return run
