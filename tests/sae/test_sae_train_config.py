"""SAETrainConfig: validated fields with errors that name them, and a JSON round trip."""

from __future__ import annotations

import pytest

from gptscope.sae import SAETrainConfig


def test_json_round_trip(tmp_path) -> None:
    cfg = SAETrainConfig(steps=300, betas=(0.8, 0.99), coefficients={"l1_coefficient": 3.0},
                         target_l0=6.0, init_b_dec="mean", seed=4)
    assert SAETrainConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "sae_train.json"
    path.write_text(cfg.to_json())
    assert SAETrainConfig.from_json(path) == cfg
    assert SAETrainConfig.from_dict(cfg.to_dict()).betas == (0.8, 0.99)


@pytest.mark.parametrize(("fields", "message"), [
    ({"steps": 0}, r"SAETrainConfig.steps must be >= 1"),
    ({"lr": -1.0}, r"SAETrainConfig.lr must be > 0"),
    ({"batch_size": 2.5}, r"SAETrainConfig.batch_size must be an integer"),
    ({"init_b_dec": "median"}, r"unknown init_b_dec 'median'"),
    ({"target_l0": 0.0}, r"SAETrainConfig.target_l0 must be > 0"),
    ({"steps": 5, "epochs": 1}, r"give steps or epochs, not both"),
])
def test_bad_fields_are_named(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SAETrainConfig(**fields)


def test_unknown_field_in_json_is_named(tmp_path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text('{"stepz": 3}')
    with pytest.raises(ValueError, match=r"cfg.json: unknown SAETrainConfig fields \['stepz'\]"):
        SAETrainConfig.from_json(path)
