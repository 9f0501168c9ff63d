"""More wrong answers to lessons 8 and 9's first exercises (logit_lens, induction_score,
activation_patching). Each is (wrong function, phrase its check must say); mutants.py adds
them to MUTANTS."""

from __future__ import annotations

import torch

from gptscope.course.solutions import lesson09_induction as s09
from gptscope.model import functional as gf


def _streams(model, tokens):
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(tokens)
    rs = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
    return torch.stack(rs + [cache[f"blocks.{n - 1}.hook_resid_post"]])


def lens_final_scale(model, tokens):
    with torch.no_grad():
        rs = _streams(model, tokens)
        centred = rs - rs.mean(-1, keepdim=True)
        scale = centred[-1].pow(2).mean(-1, keepdim=True).add(model.ln_final.eps).sqrt()
        return (centred / scale * model.ln_final.w + model.ln_final.b) @ model.W_U


def lens_no_affine(model, tokens):
    with torch.no_grad():
        return gf.layer_norm(_streams(model, tokens), None, None, model.ln_final.eps) @ \
            model.W_U


def lens_batch_first(model, tokens):
    with torch.no_grad():
        return (model.ln_final(_streams(model, tokens)) @ model.W_U).transpose(0, 1)


def induction_from_query_before(pattern, seq_len):
    return pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_per_example(pattern, seq_len):
    return pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 1:].mean(-1)


def patching_resid_post(model, clean, corrupted, metric):
    out = torch.zeros(model.cfg.n_layers, clean.shape[1])
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
        for layer in range(model.cfg.n_layers):
            name = f"blocks.{layer}.hook_resid_post"
            for pos in range(clean.shape[1]):
                def hook(x, hook, name=name, pos=pos):
                    x = x.clone()
                    x[:, pos] = cache[name][:, pos]
                    return x

                out[layer, pos] = float(metric(model.run_with_hooks(
                    corrupted, fwd_hooks=[(name, hook)])))
    return out


def patching_minus_baseline(model, clean, corrupted, metric):
    with torch.no_grad():
        baseline = float(metric(model(corrupted)))
    return s09.activation_patching(model, clean, corrupted, metric) - baseline


MUTANTS = {
    "logit_lens": [(lens_final_scale, "the final stream's LayerNorm scale"),
                   (lens_no_affine, "without ln_final's weight and bias"),
                   (lens_batch_first, "axes")],
    "induction_score": [(induction_from_query_before, "read from query seq_len - 1"),
                        (induction_per_example, "average over the batch too")],
    "activation_patching": [(patching_resid_post, "patched blocks.{L}.hook_resid_post"),
                            (patching_minus_baseline, "the change from the corrupted run")],
}
