"""The field validator every gptscope config dataclass shares.

Declare limits with ``checked`` and call ``validate_fields(self)`` in ``__post_init__``::

    @dataclass
    class MyConfig:
        lr: float = checked(1e-3, gt=0)
        kind: str = checked("relu", choices=("relu", "topk"))

        def __post_init__(self) -> None:
            validate_fields(self)

Types come from the annotations and are checked as JSON data: ``"no"`` is not a bool,
``1e8`` is not an int, NaN is not a number; the error names ``Class.field``, the value and
the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from gptscope.utils.files import json_text_or_file

_NONE = type(None)
_LIMITS = "gptscope_limits"  # the dataclass field metadata key that ``checked`` fills
_BOUND_TESTS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


# -- the shared field validator ----------------------------------------------------------------


def checked(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            choices: tuple | None = None, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, hint: str = "") -> Any:
    """A dataclass field with limits that ``validate_fields`` enforces beyond its type.

    choices: the allowed values; ge/gt/le/lt: bounds (for a tuple, on each element);
    hint: the fix to print when a bound is broken (default: name the default value).
    """
    limits = {"choices": choices, ">=": ge, ">": gt, "<=": le, "<": lt, "hint": hint}
    return field(default=default, default_factory=default_factory, metadata={_LIMITS: limits})


def validate_fields(obj: Any) -> None:
    """Check every field of the dataclass ``obj`` against its annotation and ``checked`` limits.

    Types are checked as JSON data: bools must be real bools, ints must not be bools or
    floats (not even 64.0), floats must be finite numbers (ints allowed), strings must not
    stand in for numbers, None only where the annotation says ``| None``, a fixed-size
    tuple may arrive as a JSON list. Raises ValueError naming ``Class.field``, the value
    and the fix.
    """
    cls = type(obj)
    hints = _type_hints(cls)
    for f in dataclasses.fields(obj):
        where, value = f"{cls.__name__}.{f.name}", getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise ValueError(_type_message(where, value, hints[f.name], f))
        if value is not None and _LIMITS in f.metadata:
            _check_limits(where, value, f)


def known_fields(cls: type, data: Any) -> dict:
    """``data`` itself, once checked to be a dict whose keys all name fields of ``cls``."""
    name = cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{name} needs a JSON object (dict) of its fields, got "
                         f"{type(data).__name__} {_short(data)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise ValueError(f"unknown {name} fields {unknown}; known fields are {sorted(known)}")
    return data


class JSONConfig:
    """``to_dict``/``from_dict``/``to_json``/``from_json`` for a config dataclass whose
    ``__post_init__`` validates it (tuples travel as JSON lists)."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """An instance from a dict of fields (ValueError naming any unknown one)."""
        return cls(**known_fields(cls, data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Any:
        """Parse JSON text or a file written from ``to_json``; errors name the file."""
        data, source = json_text_or_file(text_or_path, f"re-save it with {cls.__name__}.to_json")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # Annotations are strings (postponed evaluation); resolve them once per class.
    return typing.get_type_hints(cls)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value``, read as JSON data, has the annotated type ``hint``."""
    origin, args = get_origin(hint) or hint, get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is _NONE:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # ints are finite (and math.isfinite overflows on huge ones)
        return isinstance(value, float) and math.isfinite(value) or \
            isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return (isinstance(value, (tuple, list)) and len(value) == len(args)
                and all(map(_matches, value, args)))
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_matches(k, args[0]) for k in value))
    # Other classes (a nested config dataclass); annotations beyond these are unsupported.
    return isinstance(origin, type) and isinstance(value, origin)


def _describe(hint: Any) -> str:
    """``hint`` in words, as the JSON a user would write."""
    words = {bool: "true or false (a JSON boolean)", int: "an integer",
             float: "a finite number", str: "a string", dict: "a JSON object (dict)"}
    origin, args = get_origin(hint) or hint, get_args(hint)
    if origin in (Union, types.UnionType):
        kinds = [_describe(a) for a in args if a is not _NONE]
        return " or ".join(kinds) + (" or null (None)" if _NONE in args else "")
    if origin is tuple:
        return f"a list of {len(args)} values, each {_describe(args[0])}"
    return words.get(origin, f"a {getattr(origin, '__name__', origin)}")


def _type_message(where: str, value: Any, hint: Any, f: dataclasses.Field) -> str:
    """What ``where`` must be, what it got, and how to fix the usual hand-editing slips."""
    base = next((a for a in get_args(hint) if a is not _NONE), hint) \
        if get_origin(hint) in (Union, types.UnionType) else hint
    fixes = []
    if isinstance(value, str) and base in (bool, int, float):
        fixes.append("write it without quotes")
    elif base is bool and isinstance(value, (int, float)):
        fixes.append("use true or false, not a number")
    elif base in (int, float) and isinstance(value, bool):
        fixes.append("use a number, not true/false")
    elif base is int and isinstance(value, float):
        whole = value.is_integer() and abs(value) < 2**53  # exactly an int, briefly written
        fixes.append(f"write {int(value)} (no decimal point or exponent)" if whole
                     else "use a whole number, without a decimal point or exponent")
    elif base is float and isinstance(value, float):
        fixes.append("use a finite number")
    if f.default is not dataclasses.MISSING:
        fixes.append(f"the default is {f.default!r}")
    message = f"{where} must be {_describe(hint)}, got {_short(value)}"
    return message + "".join(f"; {fix}" for fix in fixes)


def _check_limits(where: str, value: Any, f: dataclasses.Field) -> None:
    """Raise unless ``value`` is one of the field's choices and within its bounds."""
    limits = f.metadata[_LIMITS]
    choices = limits["choices"]
    if choices is not None and value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {f.name} {value!r} for {where}; choose one of {shown}")
    bounds = {op: b for op in (">=", ">", "<=", "<") if (b := limits[op]) is not None}
    many = isinstance(value, (tuple, list))
    values = value if many else (value,)
    if all(_BOUND_TESTS[op](v, b) for v in values for op, b in bounds.items()):
        return
    fix = limits["hint"] or (f"the default is {f.default!r}"
                             if f.default is not dataclasses.MISSING else "")
    rule = ("have every value " if many else "be ") + _rule(bounds)
    raise ValueError(f"{where} must {rule}, got {value!r}" + (f"; {fix}" if fix else ""))


def _rule(bounds: dict[str, float]) -> str:
    """Bounds in words: "> 0", or an interval such as "in [0, 1)"."""
    low = [(op, b) for op, b in bounds.items() if op in (">=", ">")]
    high = [(op, b) for op, b in bounds.items() if op in ("<=", "<")]
    if len(low) == 1 and len(high) == 1:
        (lop, lo), (hop, hi) = low[0], high[0]
        return f"in {'[' if lop == '>=' else '('}{lo}, {hi}{']' if hop == '<=' else ')'}"
    return " and ".join(f"{op} {b}" for op, b in bounds.items())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
