"""How a wrong tensor differs from the right one, when no known mistake explains it.

:func:`explain` looks for one simple transformation that turns the right answer into the
learner's on this case (a constant factor, a sign flip, an offset or a scale shared along an
axis, two axes swapped, a shift by one along an axis, a mask inverted or moved by a
diagonal) and names it only when it reproduces the learner's output. :func:`locate` says
which slice differs and shows the first differing entry, so an unexplained failure still
points at the smallest place to look.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=rtol,
                                                      equal_nan=True))


def _axis(axes: Sequence[str], i: int) -> str:
    return f"axis {i} ({axes[i]})" if i < len(axes) else f"axis {i}"


def name_factor(k: float) -> str:
    """``k`` written as the scale a learner most likely meant (sqrt(n), n, 1/sqrt(n), 1/n)."""
    for n in range(2, 4097):
        for value, text in ((math.sqrt(n), f"sqrt({n})"), (1 / math.sqrt(n), f"1/sqrt({n})"),
                            (float(n), f"{n}"), (1 / n, f"1/{n}")):
            if abs(k - value) <= 1e-4 * abs(value):
                return text if text == f"{k:.4g}" else f"{k:.4g} = {text}"
    return f"{k:.4g}"


def _factor(got: Tensor, want: Tensor, atol: float, rtol: float) -> str | None:
    norm = (want * want).sum()
    if norm == 0:
        return None
    k = float((got * want).sum() / norm)
    if abs(k - 1) < 1e-6 or not math.isfinite(k):
        return None
    if not _close(got, k * want, atol, rtol):
        return None
    if abs(k + 1) < 1e-6:
        return "the sign is flipped: your output is minus the right answer"
    return (f"your output is the right answer times {name_factor(k)}: a constant factor is "
            "off (a scale such as 1/sqrt(d_head) or a temperature, or a sum where a mean "
            "belongs, or the reverse)")


def _shared_along(diff: Tensor, atol: float) -> list[int]:
    """Axes along which ``diff`` is constant (and not constant everywhere)."""
    return [axis for axis in range(diff.dim()) if diff.shape[axis] > 1 and bool(
        (diff - diff.mean(axis, keepdim=True)).abs().max() <= atol)]


def _offset(got: Tensor, want: Tensor, atol: float, axes: Sequence[str]) -> str | None:
    diff = got - want
    if float(diff.abs().max()) <= atol:
        return None
    if float((diff - diff.mean()).abs().max()) <= atol:
        return (f"your output is the right answer plus a constant ({float(diff.mean()):.4g}): "
                "a term that should cancel (a max, a mean, a bias) was added or left in")
    shared = _shared_along(diff, atol)
    if shared:
        where = " and ".join(_axis(axes, a) for a in shared)
        return (f"your output differs from the right answer by an offset that is the same "
                f"along {where} and varies elsewhere: something computed per slice (a max, a "
                "mean, a log-sum-exp, a bias) was added, or not subtracted")
    return None


def _scale(got: Tensor, want: Tensor, atol: float, rtol: float, axes: Sequence[str]
           ) -> str | None:
    if bool((want.abs() <= atol).any()) or want.dim() < 2:
        return None
    ratio = got / want
    for axis in _shared_along(ratio, 1e-6 * float(ratio.abs().max())):
        scaled = want * ratio.mean(axis, keepdim=True)
        if _close(got, scaled, atol, rtol):
            return (f"your output is the right answer scaled by a factor that is the same "
                    f"along {_axis(axes, axis)} and varies elsewhere: a normalisation (a sum, "
                    "a norm, a std) is taken along the wrong axis or left out")
    return None


def _swapped(got: Tensor, want: Tensor, atol: float, rtol: float, axes: Sequence[str]
             ) -> str | None:
    if got.dim() > 5 or got.numel() != want.numel():
        return None
    for order in itertools.permutations(range(got.dim())):
        if list(order) == list(range(got.dim())):
            continue
        moved = got.permute(*order)
        if moved.shape == want.shape and _close(moved, want, atol, rtol):
            pairs = [(i, o) for i, o in enumerate(order) if o != i]
            names = ", ".join(f"{_axis(axes, i)} holds what belongs in {_axis(axes, o)}"
                              for o, i in pairs)
            return f"your output's axes are swapped: {names} (a transpose or permute is off)"
    return None


def _shifted(got: Tensor, want: Tensor, atol: float, rtol: float, axes: Sequence[str]
             ) -> str | None:
    for axis in range(want.dim()):
        n = want.shape[axis]
        if n < 3 or _close(want.narrow(axis, 1, n - 1), want.narrow(axis, 0, n - 1), atol,
                           rtol):
            continue
        for step, text in ((1, "later"), (-1, "earlier")):
            a, b = (got.narrow(axis, 1, n - 1), want.narrow(axis, 0, n - 1)) if step == 1 \
                else (got.narrow(axis, 0, n - 1), want.narrow(axis, 1, n - 1))
            if _close(a, b, atol, rtol):
                return (f"your output is shifted by one along {_axis(axes, axis)}: entry i "
                        f"holds what belongs at i {'-' if step == 1 else '+'} 1 (an "
                        f"off-by-one index; yours is one step {text})")
    return None


def _mask(got: Tensor, want: Tensor) -> str | None:
    if bool((got == ~want).all()):
        return ("your mask is inverted: it is True exactly where the right mask is False "
                "(True must mark the positions that may be attended to)")
    if want.dim() == 2:
        rows, cols = want.shape
        base = torch.ones(rows, cols, dtype=torch.bool)
        for d in range(-rows, cols + 1):
            if bool((got == base.tril(d)).all()):
                right = next((e for e in range(-rows, cols + 1)
                              if bool((want == base.tril(e)).all())), None)
                if right is not None:
                    return (f"your mask's edge is on diagonal {d}, the right one is on "
                            f"diagonal {right} (query i may see keys up to i + {right})")
    return None


def explain(got: Tensor, want: Tensor, atol: float, rtol: float,
            axes: Sequence[str] = ()) -> str | None:
    """A sentence naming the one simple transformation that turns ``want`` into ``got`` on
    this case, or None. Both are compared in float64 (bool masks as masks)."""
    if got.dtype == torch.bool and want.dtype == torch.bool:
        if got.shape == want.shape:
            return _mask(got, want)
        return _swapped(got.double(), want.double(), 0, 0, axes)
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    if not (torch.isfinite(g).all() and torch.isfinite(w).all()):
        return None
    # A factor or an offset fitted to one number explains any number: a transformation is
    # evidence only where there are more entries than it has free parameters.
    if int((w != 0).sum()) < 2:
        return None
    if g.shape != w.shape:
        return _swapped(g, w, atol, rtol, axes)
    for finder in (lambda: _factor(g, w, atol, rtol), lambda: _offset(g, w, atol, axes),
                   lambda: _scale(g, w, atol, rtol, axes),
                   lambda: _swapped(g, w, atol, rtol, axes),
                   lambda: _shifted(g, w, atol, rtol, axes)):
        found = finder()
        if found:
            return found
    return None


def locate(got: Tensor, want: Tensor, atol: float, rtol: float,
           axes: Sequence[str] = ()) -> list[str]:
    """Lines saying where ``got`` differs from ``want`` (same shape): the axes on which only
    some slices differ, the first differing entry, and both tensors when they are small."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    bad = ~torch.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
    if not bad.any():
        return []
    lines = []
    for axis in range(bad.dim()):
        hit = bad.transpose(0, axis).reshape(bad.shape[axis], -1).any(-1)
        if 0 < int(hit.sum()) < bad.shape[axis]:
            which = hit.nonzero().flatten().tolist()
            shown = ", ".join(map(str, which[:8])) + (", ..." if len(which) > 8 else "")
            lines.append(f"only index {shown} of {_axis(axes, axis)} differ "
                         f"({len(which)} of {bad.shape[axis]})")
    first = tuple(bad.nonzero()[0].tolist())
    lines.append(f"first difference at index {list(first)}: expected {w[first].item():.6g}, "
                 f"got {g[first].item():.6g}")
    if g.numel() <= 12:
        lines.append(f"expected {w.flatten().tolist()}")
        lines.append(f"got      {g.flatten().tolist()}")
    return lines
