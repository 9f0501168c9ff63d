"""Measuring a steering vector: the effect it is meant to have, and what else it changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gptscope.steering.vector import Positions, SteeringVector


def logit_diff_effect(
    model: Any,
    vector: SteeringVector,
    prompts: Sequence[Any],
    positive_token: int,
    negative_token: int,
    coefficient: float = 1.0,
    positions: Positions = "all",
) -> dict[str, float]:
    """Mean logit(positive) - logit(negative) at each prompt's last position, without and
    with steering, and the change."""

    def mean_diff() -> float:
        diffs = []
        with torch.no_grad():
            for p in prompts:
                logits = model(p)[0, -1]
                diffs.append((logits[positive_token] - logits[negative_token]).item())
        return sum(diffs) / len(diffs)

    before = mean_diff()
    with vector.apply(model, coefficient, positions):
        after = mean_diff()
    return {"before": before, "after": after, "change": after - before}


def generation_effect(
    model: Any,
    vector: SteeringVector | None,
    prompts: Sequence[str],
    classifier: Callable[[str], float],
    coefficient: float = 1.0,
    positions: Positions = "all",
    samples_per_prompt: int = 4,
    max_new_tokens: int = 40,
    temperature: float = 1.0,
    seed: int = 0,
) -> float:
    """Mean of ``classifier(continuation)`` over sampled continuations (e.g. the fraction
    judged positive). ``vector=None`` measures the unsteered model with the same seeds."""
    scores = []
    for i, prompt in enumerate(prompts):
        for j in range(samples_per_prompt):
            s = seed + 1000 * i + j
            if vector is None:
                text = model.generate(prompt, max_new_tokens, temperature=temperature, seed=s)
            else:
                with vector.apply(model, coefficient, positions):
                    text = model.generate(prompt, max_new_tokens, temperature=temperature,
                                          seed=s)
            scores.append(classifier(text[len(prompt):]))
    return sum(scores) / len(scores)


def loss_side_effect(
    model: Any,
    vector: SteeringVector,
    texts: Sequence[Any],
    coefficient: float = 1.0,
    positions: Positions = "all",
) -> dict[str, float]:
    """Next-token loss on unrelated ``texts`` without and with steering, and the relative
    increase (0.05 = 5% higher)."""

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(model(t, return_type="loss").item() for t in texts) / len(texts)

    before = mean_loss()
    with vector.apply(model, coefficient, positions):
        after = mean_loss()
    return {"before": before, "after": after, "relative_increase": after / before - 1.0}


@dataclass
class SteeringSweep:
    """Effect and side effect of one vector at several coefficients."""

    coefficients: list[float]
    effect: list[float] = field(default_factory=list)
    loss_increase: list[float] = field(default_factory=list)

    def best(self, max_loss_increase: float = 0.1) -> tuple[float, float] | None:
        """(coefficient, effect change) with the largest effect within the loss budget."""
        base = self.effect[self.coefficients.index(0.0)] if 0.0 in self.coefficients else 0.0
        ok = [(c, e - base) for c, e, l in zip(self.coefficients, self.effect,
                                                self.loss_increase) if l <= max_loss_increase]
        return max(ok, key=lambda t: t[1]) if ok else None


def sweep(
    model: Any,
    vector: SteeringVector,
    coefficients: Sequence[float],
    prompts: Sequence[str],
    classifier: Callable[[str], float],
    neutral_texts: Sequence[Any],
    positions: Positions = "all",
    **generation_kwargs: Any,
) -> SteeringSweep:
    """Generation effect and loss side effect at each coefficient (0 = unsteered)."""
    result = SteeringSweep(list(coefficients))
    for c in coefficients:
        result.effect.append(generation_effect(model, vector, prompts, classifier, c, positions,
                                               **generation_kwargs))
        result.loss_increase.append(
            loss_side_effect(model, vector, neutral_texts, c, positions)["relative_increase"]
        )
    return result
