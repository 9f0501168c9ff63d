"""Small shared helpers: array conversion, input checks, number formatting, atomic writes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def as_array(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Turn a numpy array, torch tensor or nested list into a float64 numpy array.

    Torch is never imported here: anything with ``.detach`` is treated as a tensor, so the
    visuals work for people who only have numpy.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "float"):
            x = x.float()  # bfloat16/half tensors cannot go straight to numpy
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be numeric (numpy array, torch tensor or nested list of numbers); "
            f"got {type(x).__name__}: {exc}"
        ) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}; got shape {tuple(arr.shape)}")
    return arr


def as_labels(labels: Any, name: str, length: int | None = None) -> list[str]:
    """Turn a sequence of labels (strings, ints, ...) into a list of strings, checking length."""
    if labels is None:
        raise ValueError(f"{name} is required")
    if isinstance(labels, str):
        raise ValueError(f"{name} must be a list of strings, not one string; wrap it: [{name}]")
    out = [str(v) for v in labels]
    if length is not None and len(out) != length:
        raise ValueError(f"{name} has {len(out)} entries but the data has {length}; pass one each")
    return out


def default_labels(labels: Sequence[Any] | None, n: int, name: str) -> list[str]:
    """Labels given by the caller, or 0..n-1 when they gave none."""
    if labels is None:
        return [str(i) for i in range(n)]
    return as_labels(labels, name, n)


def fmt(v: float, digits: int = 3) -> str:
    """Short human-readable number for tooltips and axis ticks."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        # 1.50e-05 -> 1.5e-5: short enough for axis ticks and tooltips
        mant, exp = f"{v:.{max(digits - 1, 1)}e}".split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        return f"{mant}e{int(exp)}"
    if a >= 10 ** (digits - 1):
        return f"{v:.0f}"  # 1500, not 1.5e+03
    return f"{v:.{digits}g}"


def finite_range(arr: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite entries; (0, 1) when there are none so scales stay defined."""
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def json_numbers(arr: np.ndarray, digits: int = 5) -> Any:
    """Nested lists of rounded floats for embedding; NaN/inf become null (JSON has no NaN)."""
    rounded = np.round(arr.astype(np.float64), digits)
    obj = rounded.astype(object)
    obj[~np.isfinite(rounded)] = None
    return obj.tolist()
