"""Look inside a model: residual-stream analysis, logit lens, attribution, head detectors,
patching, weight-based circuits, top activating examples and probes.

Every function takes the model or an ActivationCache (from ``model.run_with_cache``)
first; hook names and weight shapes are TransformerLens's.
"""

from gptscope.interp.attribution import DLA, dla
from gptscope.interp.circuits import (
    FactoredMatrix,
    composition_scores,
    copying_scores,
    ov_circuit,
    qk_circuit,
)
from gptscope.interp.heads import detection_pattern, head_scores, pattern_scores, repeated_tokens
from gptscope.interp.lens import LogitLens, logit_lens
from gptscope.interp.neurons import Example, top_activating_examples
from gptscope.interp.patching import (
    activation_patching,
    attribution_patching,
    logit_diff,
    logit_diff_metric,
    path_patch_group,
    path_patching,
)
from gptscope.interp.probes import ProbeResult, probe_layers, train_probe
from gptscope.interp.resid import (
    accumulated_bias,
    accumulated_resid,
    apply_ln_to_stack,
    decompose_resid,
    full_resid_decomposition,
    head_results,
    ln_scale,
    logit_attrs,
    stack_head_results,
    stack_neuron_results,
)

# superposition: see superposition.py (imported on its own: gptscope.interp.superposition)

__all__ = [
    "DLA", "Example", "FactoredMatrix", "LogitLens", "ProbeResult", "accumulated_bias",
    "accumulated_resid", "activation_patching", "apply_ln_to_stack", "attribution_patching",
    "composition_scores", "copying_scores", "decompose_resid", "detection_pattern", "dla",
    "full_resid_decomposition", "head_results", "head_scores", "ln_scale", "logit_attrs",
    "logit_diff", "logit_diff_metric", "logit_lens", "ov_circuit", "path_patch_group",
    "path_patching", "pattern_scores", "probe_layers", "qk_circuit", "repeated_tokens",
    "stack_head_results", "stack_neuron_results", "top_activating_examples", "train_probe",
]
