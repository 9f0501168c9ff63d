"""Steering a char model trained on the stories corpus with a sentiment vector from contrast
pairs (CAA, `SteeringVector.from_pairs`).

In this corpus each sentence's sentiment is drawn independently, so nothing before a verb
predicts whether it will be positive; the one place where the model tracks sentiment is the
adjective after a verb ("the dog loves the " -> a positive or neutral adjective, never a
negative one). The vector is therefore read there: each pair from `sentiment_pairs` is cut
just after "<verb> the ", and the vector is the mean positive-minus-negative activation at
that last position. Steering with a negative coefficient makes "loves the " continue with
negative adjectives.

The issue's acceptance (a >= 30 point shift in the fraction of positive continuations at a
coefficient that raises loss on neutral text by <= 10%) needs the full stories model, which
takes ~5 CPU-minutes to train, so it is an opt-in test here::

    gptscope train --preset stories --threads 1 --out RUN        # 4 layers, 2000 steps
    GPTSCOPE_STORIES_RUN=RUN pytest tests/steering/test_steering_stories.py -k acceptance

measured with this file's helpers (blocks.2.hook_resid_pre, 339 verb pairs, the 8 openings
below x 32 samples, 20 new chars, 20 IOI sentences as neutral text): coefficient 0: 44.1%
positive; -3: 12.1% (+3.2% neutral loss); -3.25: 8.6% (+4.9%); -3.5: 6.6% (+7.1%). So -3.5
shifts the positive fraction by 37.5 points at +7.1% loss.

The default tests train a 2-layer, 64-wide model for 1500 steps (about a minute), which
has learned the verb -> adjective dependency less firmly. The share of positive
continuations among 128 sampled ones moved by a few points there, less than its sampling
noise (about 3 points), so a bound on it passed or failed by luck (it failed on AVX512
machines). These tests measure the same effects exactly, from the model's probabilities:
the probability that the adjective after "<positive verb> the " is positive (what sampling
estimates), and the positive-vs-negative log-odds, both ways. Their spread over seeds and
CPUs is in tests/README.md.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from bounds import THREADS, check, seed

from gptscope.cli import main
from gptscope.data.stories import (
    NEGATIVE_ADJECTIVES,
    NEUTRAL_ADJECTIVES,
    POSITIVE_ADJECTIVES,
    classify_sentiment,
    generate_stories,
    sentiment_pairs,
)
from gptscope.io.checkpoint import load
from gptscope.steering import SteeringVector, loss_side_effect, sweep

pytestmark = pytest.mark.learned

# Story openings that end where the model picks an adjective after a positive verb (and,
# for steering the other way, after a negative one).
POSITIVE_OPENINGS = ["the dog loves the ", "the cats like the ", "mary hugs the ",
                     "the birds praise the ", "tom likes the ", "the horse loves the ",
                     "the frogs hug the ", "lucy praises the "]
NEGATIVE_OPENINGS = ["the dog hates the ", "the cats fear the ", "mary kicks the ",
                     "the birds blame the ", "tom fears the ", "the horse hates the ",
                     "the frogs kick the ", "lucy blames the "]


def verb_pairs(n: int, pairs_seed: int = 0) -> list[tuple[str, str]]:
    """`sentiment_pairs` with a sentiment verb, cut after "<verb> the " (the adjective slot)."""
    out = []
    for pos, neg in sentiment_pairs(n, pairs_seed):
        pw, nw = pos.split(" "), neg.split(" ")
        i = next(i for i, (a, b) in enumerate(zip(pw, nw)) if a != b)
        if pw[i] in ("is", "are") or pw[i + 1] != "the":
            continue  # copula pairs ("the dog is happy ...") have no verb to read after
        out.append((" ".join(pw[: i + 2]) + " ", " ".join(nw[: i + 2]) + " "))
    return out


def neutral_texts(n_ctx: int, n: int = 20) -> list[str]:
    """IOI sentences from the corpus: no sentiment words at all."""
    ioi = [story.text[s.start:s.end] for story in generate_stories(100, seed=123)
           for s in story.spans if s.labels.get("kind") == "ioi"]
    return [s[:n_ctx] for s in ioi[:n]]


def positive(text: str) -> float:
    """1.0 when the continuation's first sentence is positive (more positive words)."""
    return float(classify_sentiment(text.split(".")[0]) > 0.5)


def _word_logprob(model, prompt: str, word: str) -> float:
    """log P(word + " " | prompt), by the chain rule over its characters."""
    tokens = model.to_tokens(prompt + word + " ")
    start = model.to_tokens(prompt).shape[1]
    with torch.no_grad():
        lp = model(tokens).log_softmax(-1)[0]
    return float(sum(lp[i - 1, tokens[0, i]] for i in range(start, tokens.shape[1])))


def adjective_masses(model, vec: SteeringVector, coefficient: float,
                     openings: list[str] = POSITIVE_OPENINGS) -> list[torch.Tensor]:
    """Per opening: log P(positive), log P(negative), log P(neutral adjective) at the slot."""
    out = []
    with vec.apply(model, coefficient):
        for p in openings:
            out.append(torch.stack([
                torch.tensor([_word_logprob(model, p, w) for w in words]).logsumexp(0)
                for words in (POSITIVE_ADJECTIVES, NEGATIVE_ADJECTIVES, NEUTRAL_ADJECTIVES)]))
    return out


def adjective_log_odds(model, vec: SteeringVector, coefficient: float,
                       openings: list[str] = POSITIVE_OPENINGS) -> float:
    """Mean over openings of log P(some positive adjective) - log P(some negative one)."""
    masses = adjective_masses(model, vec, coefficient, openings)
    return sum(float(m[0] - m[1]) for m in masses) / len(masses)


def positive_share(model, vec: SteeringVector, coefficient: float) -> float:
    """Mean over openings of the probability that the adjective is a positive one (of the
    corpus's adjectives): what the fraction of positive sampled continuations estimates."""
    masses = adjective_masses(model, vec, coefficient)
    return sum(float(m.softmax(0)[0]) for m in masses) / len(masses)


@pytest.fixture(scope="module")
def stories_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide char model trained on the stories corpus for 1500 steps of 64
    windows of 32 characters (about a minute). With 16 windows of 64 a step, some seeds and
    CPUs barely learned that a positive verb is never followed by a negative adjective."""
    out = tmp_path_factory.mktemp("stories") / "run"
    rc = main(["train", "--preset", "stories", "--n-layers", "2", "--d-model", "64",
               "--n-heads", "4", "--n-ctx", "32", "--batch-size", "64", "--max-steps", "1500",
               "--warmup-steps", "20", "--lr", "3e-3", "--eval-every", "1500", "--eval-steps",
               "2", "--log-every", "500",
               "--seed", str(seed(1337)), "--threads", str(THREADS), "--no-progress",
               "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def model(stories_run: Path):
    return load(stories_run).eval()


HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def vec(model) -> SteeringVector:
    return SteeringVector.from_pairs(model, verb_pairs(256, seed(0)), HOOK)


def test_sentiment_vector_moves_adjective_preference_both_ways(model, vec) -> None:
    """After a positive verb the vector (times -3) pushes towards negative adjectives; after
    a negative verb (times +3) towards positive ones. (Pushing further the way a verb
    already points is no test: the corpus never follows "loves the" with a negative
    adjective, so there is little left to gain, and large coefficients garble the text.)"""
    after_positive = adjective_log_odds(model, vec, 0.0)
    after_negative = adjective_log_odds(model, vec, 0.0, NEGATIVE_OPENINGS)
    # A trained model prefers positive adjectives after a positive verb, and vice versa.
    # measured over 30 runs: 0.832 to 3.15
    check("steering.log_odds_after_positive_verb", after_positive, ">", 0.0)
    # measured over 30 runs: -3.54 to -0.944
    check("steering.log_odds_after_negative_verb", after_negative, "<", 0.0)
    # measured over 30 runs: 0.343 to 6.8
    check("steering.log_odds_drop_at_-3_after_positive_verb",
          after_positive - adjective_log_odds(model, vec, -3.0), ">", 0.2)
    # measured over 30 runs: 0.243 to 2.78
    check("steering.log_odds_rise_at_+3_after_negative_verb",
          adjective_log_odds(model, vec, 3.0, NEGATIVE_OPENINGS) - after_negative, ">", 0.1)


def test_sentiment_vector_lowers_positive_share_within_loss_budget(model, vec) -> None:
    """At the strongest coefficient whose loss on neutral text rises <= 10% (the issue's
    budget), the share of positive adjectives falls. How strong that coefficient is
    depends on the vector's norm in the trained model, so it is found, not fixed."""
    texts = neutral_texts(model.cfg.n_ctx)
    rises = {c: loss_side_effect(model, vec, texts, c)["relative_increase"]
             for c in (-0.25, -0.5, -0.75, -1.0, -1.5, -2.0, -2.5, -3.0, -4.0)}
    assert rises[-4.0] > 0.0  # the vector does change the model
    within = [c for c, r in rises.items() if r <= 0.10]
    # measured over 30 runs: 4 to 9
    check("steering.coefficients_within_loss_budget", len(within), ">=", 1)
    strongest = min(within)
    drop = positive_share(model, vec, 0.0) - positive_share(model, vec, strongest)
    # measured over 30 runs: 0.0851 to 0.3
    check("steering.positive_share_drop_within_budget", drop, ">", 0.03)


def test_sweep_on_the_trained_model_reports_both_measures(model, vec) -> None:
    result = sweep(model, vec, [0.0, -2.5], POSITIVE_OPENINGS[:2], positive,
                   neutral_texts(model.cfg.n_ctx), samples_per_prompt=2, max_new_tokens=8)
    assert all(0.0 <= e <= 1.0 for e in result.effect)
    assert result.loss_increase[0] == pytest.approx(0.0, abs=1e-6)
    assert result.loss_increase[1] == pytest.approx(loss_side_effect(
        model, vec, neutral_texts(model.cfg.n_ctx), -2.5)["relative_increase"], rel=1e-6)


def test_steer_cli_prints_both_continuations(
    stories_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["steer", str(stories_run), "--pos", "the dog loves the ",
               "--neg", "the dog hates the ", "--hook", HOOK, "--prompt", "the dog ",
               "--samples", "1", "--max-new-tokens", "5"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in out.splitlines()
             if ln.startswith(("unsteered:", "steered:"))}
    assert set(lines) == {"unsteered", "steered"}
    for text in lines.values():
        assert text.startswith("'the dog ") and len(ast.literal_eval(text)) == len("the dog ") + 5


@pytest.mark.skipif(not os.environ.get("GPTSCOPE_STORIES_RUN"),
                    reason="set GPTSCOPE_STORIES_RUN to a `gptscope train --preset stories` run")
def test_acceptance_on_full_stories_model() -> None:
    big = load(os.environ["GPTSCOPE_STORIES_RUN"]).eval()
    vec = SteeringVector.from_pairs(big, verb_pairs(512), "blocks.2.hook_resid_pre")
    result = sweep(big, vec, [0.0, -3.5], POSITIVE_OPENINGS, positive,
                   neutral_texts(big.cfg.n_ctx), samples_per_prompt=32, max_new_tokens=20)
    assert result.effect[0] - result.effect[1] >= 0.30, result
    assert result.loss_increase[1] <= 0.10, result
