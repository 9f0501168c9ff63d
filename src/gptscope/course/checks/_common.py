"""Shared machinery of the checks: run the learner's code, compare, diagnose.

A check raises :class:`Mismatch` with a message naming the mistake; :func:`run_check` turns
that (or an exception from the learner's code) into a :class:`CheckResult`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.result import CheckResult


class Mismatch(Exception):
    """The learner's answer differs from the reference; the message says how."""

    def __init__(self, message: str, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class LearnerError(Exception):
    """The learner's code raised; the original exception is the cause."""


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function, wrapping anything it raises (NotImplementedError too)."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, Mismatch):
        raise
    except Exception as e:  # the learner's bug, reported as a failed check
        raise LearnerError(f"{type(e).__name__}: {e}") from e


def module_as_function(obj: Any) -> Callable[..., Any]:
    """Accept an ``nn.Module`` class as an answer: ``cls(cfg)``, load the reference weights
    (by name, strictly), call it on the input. Functions pass through unchanged."""
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        return obj

    def run(x: Tensor, params: dict[str, Tensor], cfg: Any) -> Tensor:
        module = call(obj, cfg)
        result = module.load_state_dict(params, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise Mismatch(
                "your module's parameter names differ from the reference's: missing "
                f"{sorted(result.unexpected_keys)[:6]}, unexpected "
                f"{sorted(result.missing_keys)[:6]}; name them as in the docstring")
        module.eval()
        return call(module, x)

    return run


def as_tensor(value: Any, what: str) -> Tensor:
    """The learner's output as a tensor, or a Mismatch saying what came back instead."""
    if isinstance(value, Tensor):
        return value
    if value is None:
        raise Mismatch(f"{what} returned None; did you forget the `return`?")
    try:
        return torch.as_tensor(value)
    except Exception as e:
        raise Mismatch(f"{what} returned a {type(value).__name__}, expected a tensor") from e


def close(got: Tensor, want: Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values (NaN where the reference has NaN)."""
    if got.shape != want.shape:
        return False
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return bool(torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True))


def first_match(got: Tensor, variants: dict[str, Callable[[], Tensor]], atol: float = 1e-5,
                rtol: float = 1e-4) -> str | None:
    """The message of the first wrong variant the learner's output equals, if any."""
    for message, make in variants.items():
        try:
            want = make()
        except Exception:  # a variant that cannot be built for this case does not apply
            continue
        if isinstance(want, Tensor) and close(got, want, atol, rtol):
            return message
    return None


def compare(
    got: Any,
    want: Tensor,
    case: str,
    variants: dict[str, Callable[[], Tensor]] | None = None,
    what: str = "your function",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Raise Mismatch unless ``got`` equals ``want``; name the mistake when a variant matches."""
    got = as_tensor(got, what)
    if got.shape != want.shape:
        hint = first_match(got, variants or {}, atol, rtol)
        raise Mismatch(hint or f"{case}: returned shape {tuple(got.shape)}, expected "
                       f"{tuple(want.shape)}", [f"case: {case}"])
    if got.dtype == torch.bool and want.dtype != torch.bool:
        got = got.to(want.dtype)
    if want.dtype == torch.bool and got.dtype != torch.bool:
        raise Mismatch(f"{case}: returned dtype {got.dtype}, expected a bool tensor "
                       "(True = may attend)", [f"case: {case}"])
    if close(got, want, atol, rtol):
        return
    hint = first_match(got, variants or {}, atol, rtol)
    if hint:
        raise Mismatch(hint, [f"case: {case}"])
    g = got.detach().double().cpu()
    if not torch.isfinite(g).all() and torch.isfinite(want.double()).all():
        raise Mismatch(f"{case}: your output has nan or inf where the reference is finite",
                       [f"case: {case}"])
    diff = (g - want.detach().double().cpu()).abs()
    diff = torch.nan_to_num(diff, nan=float("inf"))
    raise Mismatch(f"{case}: values differ from the reference (max abs difference "
                   f"{diff.max().item():.3g})", [f"case: {case}"])


def run_check(exercise: str, body: Callable[[], list[str] | None]) -> CheckResult:
    """Run a check body; it returns the cases it passed or raises Mismatch."""
    try:
        cases = body() or []
    except NotImplementedError:
        return CheckResult(exercise, False, "not implemented yet: replace the "
                           "`raise NotImplementedError` with your code", implemented=False)
    except Mismatch as m:
        return CheckResult(exercise, False, m.message, m.details)
    except LearnerError as e:
        cause = e.__cause__
        where = ""
        if cause is not None:
            frames = traceback.extract_tb(cause.__traceback__)
            if frames:
                last = frames[-1]
                where = f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
        return CheckResult(exercise, False, f"your code raised {e}{where}")
    return CheckResult(exercise, True, f"all {len(cases)} cases match the reference"
                       if cases else "passed", [f"ok: {c}" for c in cases])


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0
          ) -> Tensor:
    """Seeded normal noise, so every learner sees the same cases."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
