import math

import pytest

from gptscope.train import TrainConfig, lr_at


def cfg(**kw):
    base = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    return TrainConfig(**{**base, **kw})


def test_warmup_is_linear_and_never_zero():
    c = cfg()
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(4, c) == pytest.approx(0.5)
    assert lr_at(9, c) == pytest.approx(1.0)


def test_cosine_decays_to_min_lr():
    c = cfg()
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(60, c) == pytest.approx(0.1 + 0.5 * 0.9)  # half way: cos = 0
    assert lr_at(110, c) == pytest.approx(0.1)
    assert lr_at(500, c) == pytest.approx(0.1)  # past max_steps: stays at min_lr
    values = [lr_at(s, c) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_cosine_shape_matches_formula():
    c = cfg()
    for step in (17, 33, 71, 99):
        progress = (step - 10) / 100
        want = 0.1 + 0.5 * (1 + math.cos(math.pi * progress)) * 0.9
        assert lr_at(step, c) == pytest.approx(want)


def test_constant_and_linear_and_default_min_lr():
    assert lr_at(50, cfg(schedule="constant")) == 1.0
    assert lr_at(60, cfg(schedule="linear")) == pytest.approx(0.55)
    assert TrainConfig(lr=3e-4).final_lr == pytest.approx(3e-5)


def test_no_warmup_starts_at_lr():
    assert lr_at(0, cfg(warmup_steps=0)) == pytest.approx(1.0)


def test_bad_step_and_config():
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, cfg())
    with pytest.raises(ValueError, match="schedule"):
        cfg(schedule="cosinus")
    with pytest.raises(ValueError, match="min_lr"):
        cfg(min_lr=2.0)


def test_decay_over_the_last_steps_only():
    from gptscope.train.schedule import scheduled_lr

    lrs = [scheduled_lr(s, lr=1.0, final_lr=0.0, warmup_steps=2, total_steps=10,
                        schedule="linear", decay_steps=4) for s in range(10)]
    # warm-up, flat, then (total - step) / decay_steps over the last four steps
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert scheduled_lr(5, lr=1.0, final_lr=0.0, warmup_steps=0, total_steps=10,
                        schedule="constant", decay_steps=4) == 1.0
