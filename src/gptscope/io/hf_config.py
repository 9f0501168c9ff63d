"""Reading a Hugging Face ``config.json``: each value checked as JSON data.

``int(hf["n_layer"])`` would read "12" and 12.7 alike, and ``bool("false")`` is True: a
hand-edited config must fail with the key's name instead of building a different model.
"""

from __future__ import annotations

from typing import Any

_KINDS = {bool: "true or false (a JSON boolean)", int: "an integer", float: "a number"}


def hf_value(hf: dict, key: str, default: Any, kind: type, optional: bool = False) -> Any:
    """``hf[key]`` (``default`` when absent), which must be of ``kind`` (bool, int or float;
    an int is a float too, a bool is neither); ``optional``: null (None) is allowed."""
    value = hf.get(key, default)
    if value is None and optional:
        return None
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ValueError(f"Hugging Face config key {key!r} must be {_KINDS[kind]}, got "
                         f"{value!r}; fix it in the model folder's config.json")
    return float(value) if kind is float else value
