"""The shared config-field validator: types as JSON data, limits, unknown fields."""

from __future__ import annotations

import dataclasses

import pytest

from gptscope.utils.fields import checked, known_fields, validate_fields


def test_validator_is_reusable_by_other_config_classes():
    @dataclasses.dataclass
    class SAEConfig:
        d_sae: int = checked(64, ge=1)
        l1: float = checked(1e-3, gt=0)
        kind: str = checked("relu", choices=("relu", "topk"))
        pairs: tuple[int, int] = (1, 2)
        note: str | None = None

        def __post_init__(self):
            validate_fields(self)

    SAEConfig(pairs=[3, 4], note="x")  # a JSON list stands in for a tuple
    for kw, where in [({"d_sae": 0}, "d_sae"), ({"l1": "1"}, "l1"), ({"kind": "x"}, "kind"),
                      ({"pairs": (1, 2.5)}, "pairs"), ({"note": 3}, "note")]:
        with pytest.raises(ValueError, match=rf"SAEConfig\.{where}\b"):
            SAEConfig(**kw)
    with pytest.raises(ValueError, match=r"unknown SAEConfig fields \['x'\]"):
        known_fields(SAEConfig, {"x": 1})
