"""Solvers: how a model answers a sample. Each is called with the model, the samples and
the run's settings and returns one output dict per sample:

- `generate`: the text the model writes after the prompt (greedy, or sampled with a seed
  per sample, so neither the batch size nor the order of samples changes what is drawn);
- `multiple_choice`: the log-likelihood of each choice after the prompt
  (`gptscope.evals.loglik`), the pick by summed log-likelihood (``acc``, as lm-eval names
  it) and per character (``acc_norm``), and the softmax of the log-likelihoods over the
  choices, whose calibration the summary reports;
- `classify`: `multiple_choice` over a fixed set of labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gptscope.evals.loglik import continuation_logprobs, loglik_choice
from gptscope.evals.samples import Sample

Solver = Callable[..., list[dict[str, Any]]]


def _tokenizer(model: Any, sample: Sample, index: int) -> Any:
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"sample {sample.named(index)}: this model has no tokenizer, so it "
                         "cannot read a text sample; load a run folder with tokenizer.json, "
                         "or give the sample token ids")
    return model.tokenizer


def _encode(model: Any, text: str | tuple[int, ...], sample: Sample, index: int) -> list[int]:
    """Token ids of a sample's text (or the ids it already holds)."""
    if isinstance(text, tuple):
        return list(text)
    tokenizer = _tokenizer(model, sample, index)
    try:
        return tokenizer.encode(text)
    except ValueError as err:
        raise ValueError(f"sample {sample.named(index)}: {err}") from None


def generate(max_new_tokens: int = 64, temperature: float = 0.0, stop: str | None = None
             ) -> Solver:
    """Write up to ``max_new_tokens`` after each sample's input, cut at ``stop`` (text
    samples). A sample of token ids gets token ids back, ``max_new_tokens`` of them or as
    many as its target has."""

    def solve(model: Any, samples: Sequence[Sample], batch_size: int, seed: int
              ) -> list[dict[str, Any]]:
        outputs = []
        for index, sample in enumerate(samples):
            prompt = _encode(model, sample.input, sample, index)
            as_ids = isinstance(sample.input, tuple)
            budget = len(sample.target) if as_ids and sample.target else max_new_tokens
            if as_ids and len(prompt) + budget - 1 > model.cfg.n_ctx:
                raise ValueError(f"sample {sample.named(index)}: input ({len(prompt)}) and "
                                 f"answer ({budget}) tokens exceed the model's n_ctx="
                                 f"{model.cfg.n_ctx}; a longer split than the model was built "
                                 "for cannot be read by it")
            stops = (_encode(model, stop, sample, index) if stop and not as_ids else None)
            # One sample at a time, its own seed: batching cannot change what is drawn.
            ids = model.generate([prompt], max_new_tokens=budget, temperature=temperature,
                                 seed=seed + index, stop_tokens=stops)[0, len(prompt):].tolist()
            if as_ids:
                outputs.append({"output": ids})
                continue
            text = model.tokenizer.decode(ids)
            if stop and stop in text:
                text = text[:text.index(stop) + len(stop)]
            outputs.append({"output": text})
        return outputs

    return solve


def multiple_choice(choices: Sequence[str] | None = None) -> Solver:
    """Weigh each choice (the sample's, or ``choices`` for every sample) by its
    log-likelihood after the input; output the ``acc`` pick (``output``, ``choice``), the
    ``acc_norm`` pick and every choice's log-likelihood."""

    def solve(model: Any, samples: Sequence[Sample], batch_size: int, seed: int
              ) -> list[dict[str, Any]]:
        pairs, spans = [], []
        for index, sample in enumerate(samples):
            options = tuple(choices) if choices is not None else sample.choices
            if not options:
                raise ValueError(f"sample {sample.named(index)}: no 'choices' to weigh; give "
                                 "the sample choices or the solver a fixed list")
            context = _encode(model, sample.input, sample, index)
            spans.append((len(pairs), options))
            pairs += [(context, _encode(model, option, sample, index)) for option in options]
        logprobs = continuation_logprobs(model, pairs, batch_size)
        outputs = []
        for start, options in spans:
            logliks = [sum(lps) for lps in logprobs[start:start + len(options)]]
            pick = loglik_choice(logliks)
            norm = loglik_choice(logliks, [len(o) for o in options])
            # The model's belief over the choices, what the summary's calibration reads.
            probs = torch.tensor(logliks, dtype=torch.float64).softmax(-1).tolist()
            outputs.append({"output": options[pick], "choice": pick, "choice_norm": norm,
                            "output_norm": options[norm], "choices": list(options),
                            "logliks": logliks, "probs": probs})
        return outputs

    return solve


def classify(labels: Sequence[str]) -> Solver:
    """The label (e.g. "happy." or "sad.") the model finds most likely after the input."""
    if len(labels) < 2:
        raise ValueError(f"classify needs at least two labels, got {list(labels)!r}")
    return multiple_choice(labels)
