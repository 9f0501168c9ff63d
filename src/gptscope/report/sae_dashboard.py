"""Feature dashboards: what each SAE feature responds to and what it does to the output."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gptscope import interp
from gptscope.report.sections import token_strings
from gptscope.viz import ColoredTokens, Histogram, Report


def feature_stats(model: Any, sae: Any, hook_name: str, tokens: Tensor) -> dict[str, Tensor]:
    """Feature activations on ``tokens`` ``[batch, pos]``: ``acts`` ``[n, d_sae]`` and the
    firing ``frequency`` ``[d_sae]``."""
    x = model.activations(tokens, hook_name)[hook_name].reshape(-1, sae.cfg.d_in)
    with torch.no_grad():
        acts = sae.encode(x.to(sae.W_dec.dtype))
    return {"acts": acts, "frequency": (acts > 0).float().mean(0)}


def logit_effects(model: Any, sae: Any, feature: int, k: int = 8) -> tuple[list, list]:
    """Tokens a feature's decoder direction promotes and suppresses through the unembedding
    (direct path only): two lists of (token string, logit change per unit activation)."""
    with torch.no_grad():
        effect = sae.W_dec[feature].to(model.W_U.dtype) @ model.W_U  # [d_vocab]
    top, bottom = effect.topk(k), (-effect).topk(k)
    ids = torch.arange(len(effect))
    as_pairs = lambda values, idx: [  # noqa: E731
        (token_strings(model, ids[i : i + 1])[0], float(v)) for v, i in zip(values, idx)]
    return as_pairs(top.values, top.indices), as_pairs(-bottom.values, bottom.indices)


def feature_dashboard(model: Any, sae: Any, hook_name: str, tokens: Tensor,
                      features: list[int] | None = None, n_features: int = 8,
                      report: Report | None = None) -> Report:
    """A report section per feature: activation histogram, top activating examples with
    tokens coloured by activation, promoted and suppressed tokens, and density.

    features default to the ``n_features`` most frequent live features.
    """
    report = report or Report(f"SAE features at {hook_name}")
    stats = feature_stats(model, sae, hook_name, tokens)
    freq = stats["frequency"]
    report.add_text(f"{sae.cfg.d_sae} features; {(freq == 0).float().mean():.1%} dead on "
                    f"{tokens.numel():,} tokens; mean L0 "
                    f"{(stats['acts'] > 0).float().sum(-1).mean():.1f}.")
    report.add(Histogram(torch.log10(freq[freq > 0]), bins=40, x_label="log10 frequency",
                         title="feature density"))
    if features is None:
        features = freq.argsort(descending=True)[:n_features].tolist()
    feature_hook = f"{hook_name}.hook_sae_acts_post"
    with model.attached(hook_name, sae):
        for f in features:
            report.add_heading(f"feature {f}  (fires on {freq[f]:.2%} of tokens)", level=3)
            fired = stats["acts"][:, f]
            fired = fired[fired > 0]
            if len(fired):
                report.add(Histogram(fired, bins=30, title="activation when firing"))
            examples = interp.top_activating_examples(model, tokens, feature_hook, unit=f,
                                                      k=6, context=12, after=3)
            rows = [(token_strings(model, e.tokens), e.activations) for e in examples]
            if rows:
                report.add(ColoredTokens.from_examples(rows, title="top activating examples"))
            promoted, suppressed = logit_effects(model, sae, f)
            report.add_table(
                [[f"{p[0]!r} {p[1]:+.2f}", f"{s[0]!r} {s[1]:+.2f}"]
                 for p, s in zip(promoted, suppressed)],
                ["promotes", "suppresses"])
    return report
