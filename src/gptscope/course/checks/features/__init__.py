"""Checks for lessons 10-12: probes, steering vectors, toy models of superposition, SAEs.

One module per lesson: ``probes`` (10), ``steering`` (11), ``sae`` (12). Exact answers (a
direction, logits, a loss, an SAE's parameters after a step) are compared with a float64
truth from the library and a wrong one is named by the known mistake that reproduces it;
trained answers (a probe's accuracy) against the lesson's reference on the same data.
"""

from gptscope.course.checks.features.probes import (
    check_linear_probe,
    check_mean_difference_direction,
    check_probe_selectivity,
)
from gptscope.course.checks.features.sae import (
    check_sae_loss,
    check_sae_training_step,
    check_toy_model_forward,
)
from gptscope.course.checks.features.steering import (
    check_apply_steering,
    check_steering_effect,
    check_steering_vector,
)

__all__ = ["check_apply_steering", "check_linear_probe", "check_mean_difference_direction",
           "check_probe_selectivity", "check_sae_loss", "check_sae_training_step",
           "check_steering_effect", "check_steering_vector", "check_toy_model_forward"]
