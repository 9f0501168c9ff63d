"""Steering vectors: add a direction to the residual stream and watch behaviour change.

>>> vec = SteeringVector.from_contrast(model, "Love", "Hate", "blocks.6.hook_resid_pre")
>>> with vec.apply(model, coefficient=5):
...     model.generate("I think dogs are", 20)
"""

from gptscope.steering.measure import (
    SteeringSweep,
    generation_effect,
    logit_diff_effect,
    loss_side_effect,
    sweep,
)
from gptscope.steering.vector import SteeringVector

__all__ = [
    "SteeringSweep",
    "SteeringVector",
    "generation_effect",
    "logit_diff_effect",
    "loss_side_effect",
    "sweep",
]
