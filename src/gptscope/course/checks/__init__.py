"""Hidden checks, one per exercise: ``CHECKS[exercise_id](learner_function) -> CheckResult``.

Each compares the learner's function with the library's own on random and edge cases, and
when the answer is wrong, tries known wrong variants to name the mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gptscope.course.checks import (
    alignment,
    attention,
    attribution,
    basics,
    calibration,
    circuits,
    contrastive,
    data_parallel,
    encoder_decoder,
    evaluation,
    features,
    gpt,
    interp,
    optimization,
    params,
    positions,
    projects,
    real_models,
    red_teaming,
    rlhf,
    scaling,
    training,
    vision,
)
from gptscope.course.result import CheckResult

CHECKS: dict[str, Callable[[Any], CheckResult]] = {
    name[len("check_"):]: fn
    for module in (basics, positions, calibration, evaluation, red_teaming, attention, gpt,
                   training, optimization, contrastive, data_parallel, params, real_models,
                   interp, attribution, circuits, features, scaling, alignment, rlhf, projects,
                   vision, encoder_decoder)
    for name, fn in vars(module).items()
    if name.startswith("check_") and callable(fn)
}

__all__ = ["CHECKS"]
