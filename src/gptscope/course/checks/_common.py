"""Shared machinery of the checks: run the learner's code, compare, diagnose.

A check raises :class:`Mismatch` with a message naming the mistake; :func:`run_check` turns
that (or an exception from the learner's code) into a :class:`CheckResult`.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from gptscope.course.checks._diagnose import explain, locate
from gptscope.course.result import CheckResult

C = TypeVar("C")


class Mismatch(Exception):
    """The learner's answer differs from the reference; the message says how.

    From ``compare``: ``matched`` holds the known mistakes the answer reproduces on this
    case, ``ruled_out`` those this case tells apart from the right answer but the answer
    does not reproduce, ``located`` a message that only says where the answer differs, and
    ``size`` the number of entries of the right answer (to show the smallest case).
    """

    def __init__(self, message: str, details: Iterable[str] = (),
                 matched: Iterable[str] = (), ruled_out: Iterable[str] = (),
                 located: str | None = None, size: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.matched = [] if matched is None else list(matched)
        self.ruled_out = set(ruled_out)
        self.located = located or message
        self.size = size


class Unexplained(Mismatch):
    """A wrong answer that no known or structural mistake explains on its case: the
    message only says where it differs (values, a shape, nan)."""


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
    """The learner's output if it is a tensor; otherwise a Mismatch saying what came back
    instead (a list or a number is not converted: the contract asks for a tensor)."""
    if isinstance(value, Tensor):
        return value
    if value is None:
        raise Mismatch(f"{what} returned None; did you forget the `return`?")
    kind = type(value).__name__
    if isinstance(value, (list, tuple)):
        raise Mismatch(f"{what} returned a {kind}, not a tensor: return one tensor "
                       "(torch.stack the pieces if you built them one by one)")
    raise Mismatch(f"{what} returned a {kind}, expected a tensor")


def close(got: Tensor, want: Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values (NaN where the reference has NaN)."""
    if got.shape != want.shape:
        return False
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return bool(torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True))


# Known mistakes: (message, zero-argument function building the wrong answer) pairs, or a
# dict from message to function; a message may repeat when several wrong answers come from
# one mistake.
Variants = Mapping[str, Callable[[], Any]] | Iterable[tuple[str, Callable[[], Any]]]


class Ambiguous(Mismatch):
    """The answer matches several known mistakes; other cases may narrow them."""

    def __init__(self, suspects: list[str], details: Iterable[str] = (), **evidence: Any
                 ) -> None:
        super().__init__(AMBIGUOUS + "; or ".join(suspects), details, suspects, **evidence)
        self.suspects = suspects


AMBIGUOUS = "your answer matches more than one known mistake: "


def diagnose(got: Tensor, want: Tensor, variants: Variants, atol: float, rtol: float
             ) -> tuple[list[str], set[str]]:
    """(the known mistakes ``got`` reproduces, those it does not), among the mistakes this
    case tells apart from the right answer; the others say nothing about this case."""
    found: list[str] = []
    ruled_out: set[str] = set()
    pairs = variants.items() if isinstance(variants, Mapping) else variants
    for message, make in pairs:
        try:
            with warnings.catch_warnings():  # e.g. std(correction=1) of one reward
                warnings.simplefilter("ignore")
                wrong = make()
        except Exception:  # a mistake that cannot be built for this case does not apply
            continue
        if not isinstance(wrong, Tensor) or close(wrong, want, atol, rtol):
            continue  # not this case's to judge: it cannot tell the mistake from the right
        if close(got, wrong, atol, rtol):
            found.append(message) if message not in found else None
        else:
            ruled_out.add(message)
    return found, ruled_out - set(found)


def _named(found: list[str], ruled_out: set[str], details: list[str], located: str,
           size: int) -> Mismatch | None:
    evidence = {"ruled_out": ruled_out, "located": located, "size": size}
    if len(found) > 1:
        return Ambiguous(found, details, **evidence)
    return Mismatch(found[0], details, found, **evidence) if found else None


def _kind_problem(got: Tensor, want: Tensor, case: str, what: str) -> str | None:
    """What is wrong with the dtype's family (bool for a mask, integers for ids, floats for
    values), or None."""
    if want.dtype == torch.bool and got.dtype != torch.bool:
        return f"{case}: {what} has dtype {got.dtype}, expected a bool tensor (True = may attend)"
    if want.is_floating_point() and (got.is_complex() or not (
            got.is_floating_point() or got.dtype == torch.bool)):
        return f"{case}: {what} has dtype {got.dtype}, expected floating point values"
    if not want.is_floating_point() and want.dtype != torch.bool and got.is_floating_point():
        return f"{case}: {what} has dtype {got.dtype}, expected integers ({want.dtype})"
    return None


def compare(
    got: Any,
    want: Tensor,
    case: str,
    variants: Variants | None = None,
    what: str = "your answer",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    axes: Sequence[str] = (),
) -> None:
    """Raise Mismatch unless ``got`` equals ``want`` within the tolerances.

    A wrong answer is named by the known mistake it reproduces on this case (Ambiguous when
    several do), else by the one simple transformation of the right answer that reproduces
    it (a factor, an offset, swapped axes, ...), else the message shows where it differs.
    ``axes`` names the output's axes for those messages (e.g. ``("batch", "pos")``). The
    Mismatch also carries the evidence ``run_cases`` weighs across cases.
    """
    got = as_tensor(got, what)
    details, size = [f"case: {case}"], want.numel()
    kind = _kind_problem(got, want, case, what)
    if kind:  # a known mistake (a count for a fraction) may explain it; else the dtype does
        numeric = got.double() if not got.is_complex() else got.real.double()
        found, ruled_out = diagnose(numeric, want, variants or (), atol, rtol)
        raise _named(found, ruled_out, details, kind, size) or Mismatch(
            kind, details, ruled_out=ruled_out, size=size)
    if got.dtype == torch.bool and want.dtype != torch.bool:
        got = got.to(want.dtype)
    if close(got, want, atol, rtol):
        return
    found, ruled_out = diagnose(got, want, variants or (), atol, rtol)
    located, where = _located(got, want, case, what, atol, rtol, axes)
    details += where
    named = _named(found, ruled_out, details, located, size)
    if named:
        raise named
    structural = explain(got, want, atol, rtol, axes)
    if structural:
        raise Mismatch(structural, details, [structural], ruled_out, located, size)
    raise Unexplained(located, details, ruled_out=ruled_out, size=size)


def _located(got: Tensor, want: Tensor, case: str, what: str, atol: float, rtol: float,
             axes: Sequence[str]) -> tuple[str, list[str]]:
    """(a message saying how ``got`` differs: its shape, nan or inf, or its values; the
    lines locating the difference)."""
    if got.shape != want.shape:
        return f"{case}: {what} has shape {list(got.shape)}, expected {list(want.shape)}", []
    g = got.detach().double().cpu()
    where = locate(got, want, atol, rtol, axes)
    if not torch.isfinite(g).all() and torch.isfinite(want.double()).all():
        return (f"{case}: {what} holds nan or inf where the right answer is finite (an "
                "overflow on large inputs, a log of 0, or a division by 0?)", where)
    diff = torch.nan_to_num((g - want.detach().double().cpu()).abs(), nan=float("inf"))
    return (f"{case}: {what} differs from the right answer (largest difference "
            f"{diff.max().item():.3g})", where)


def run_cases(cases: Iterable[C], one_case: Callable[[C], str]) -> list[str]:
    """Run ``one_case`` on every case; return the labels of the cases, or raise the verdict
    on all the failures together (:func:`verdict`)."""
    passed: list[str] = []
    failures: list[Mismatch] = []
    for case in cases:
        try:
            passed.append(one_case(case))
        except Mismatch as failure:
            failures.append(failure)
        except Exception:  # the answer crashed on a later case: judge what was seen
            if not failures:
                raise
            break
    if failures:
        raise verdict(failures)
    return passed


def verdict(failures: list[Mismatch]) -> Mismatch:
    """What to tell the learner about several failing cases.

    A mistake is named only if it explains some case and no case rules it out (a case
    that tells it from the right answer, where the answer differs from it); of those, the
    ones explaining the most failing cases, several reported as ambiguous. Else the first
    failure that the check itself worded (a wrong kind of answer, a property it tests);
    else the smallest failing case, with where it differs, and as a clue a known mistake
    the answer equals on some other case.
    """
    ruled_out = set().union(*(f.ruled_out for f in failures))
    votes = Counter(m for f in failures for m in f.matched)
    kept = {m: n for m, n in votes.items() if m not in ruled_out}
    # Of the mistakes no case rules out, those that explain the most failing cases.
    suspects = [m for m, n in kept.items() if n == max(kept.values(), default=0)]
    if suspects:
        first = next(f for f in failures if suspects[0] in f.matched)
        if len(suspects) == 1:
            return Mismatch(suspects[0], first.details)
        return Ambiguous(suspects, first.details)
    said = [f for f in failures if not isinstance(f, Unexplained) and not f.matched]
    shown = said[0] if said else min(failures, key=lambda f: f.size)
    if votes:  # a name that some case rules out is a clue, not the diagnosis
        clue = votes.most_common(1)[0][0]
        seen = next(f for f in failures if clue in f.matched)
        return Mismatch(shown.located, shown.details + [
            f"on another case ({seen.details[0].removeprefix('case: ')}) your answer equals "
            f"a known mistake, which does not explain the case above: {clue}"])
    return shown


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
        return CheckResult(exercise, False, f"your code raised {e}{_where(e.__cause__)}")
    except Exception as e:  # the check could not read the answer: say so, never raise
        return CheckResult(exercise, False, f"the check could not read your answer "
                           f"({type(e).__name__}: {e}); return what the docstring describes")
    return CheckResult(exercise, True, f"all {len(cases)} cases match the reference"
                       if cases else "passed", [f"ok: {c}" for c in cases])


def _where(cause: BaseException | None) -> str:
    """Where the learner's exception was raised, as ' (at file.py:line)', if known."""
    if cause is None:
        return ""
    frames = traceback.extract_tb(cause.__traceback__)
    if not frames:
        return ""
    return f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})"


def float32_atol(truth: Tensor, reference: Tensor, floor: float = 1e-5) -> float:
    """An absolute tolerance for a float32 answer compared with the float64 ``truth``: ten
    times the float32 ``reference``'s own error (another correct float32 order of operations
    errs by a similar amount), and at least ``floor``."""
    error = (reference.detach().double() - truth.detach().double()).abs()
    return max(floor, 10 * float(torch.nan_to_num(error, nan=0.0).max()))


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0
          ) -> Tensor:
    """Seeded normal noise, so every learner sees the same cases."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
