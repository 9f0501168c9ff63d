"""Lesson 11: steering a model by adding an activation vector (ActAdd).

Three steps: build a vector from a contrast (what the model does on "Love" minus on
"Hate"), add it to the residual stream while the model runs, and measure both what it was
meant to change and what else it changed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def steering_vector(model, positive: Tensor, negative: Tensor, layer: int) -> Tensor:
    """ActAdd: the residual stream of ``positive`` minus that of ``negative``.

    positive, negative: token ids [1, pos_p] and [1, pos_n] (one prompt each). Read
    ``blocks.{layer}.hook_resid_pre`` for each: [pos, d_model]. Pad the shorter one with
    zero rows at the end so both have max(pos_p, pos_n) rows, and return positive minus
    negative: [max(pos_p, pos_n), d_model] (no batch dimension, not normalised). Adding row
    i at position i of a new prompt steers the model toward "positive".
    """
    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cp = model.run_with_cache(positive)
        _, cn = model.run_with_cache(negative)
    a, b = cp[name][0], cn[name][0]
    n = max(a.shape[0], b.shape[0])
    a = torch.cat([a, a.new_zeros(n - a.shape[0], a.shape[1])])
    b = torch.cat([b, b.new_zeros(n - b.shape[0], b.shape[1])])
    return a - b


def apply_steering(model, tokens: Tensor, vector: Tensor, layer: int,
                   coefficient: float = 1.0, start: int = 0) -> Tensor:
    """Run the model on ``tokens`` with ``coefficient * vector`` added to its residual stream.

    tokens [batch, pos]. The vector goes into ``blocks.{layer}.hook_resid_pre``, in every
    row of the batch alike:

    - vector [d_model]: added at every position from ``start`` on;
    - vector [n, d_model] (ActAdd, from ``steering_vector``): row i added at position
      start + i; rows that would land past the last position are dropped.

    Positions before ``start`` are left alone. Return the logits [batch, pos, d_vocab].
    Attach the hook for this forward pass only (``with model.hooks(fwd_hooks=[(name,
    fn)]):``), so the model runs unsteered again afterwards.
    """
    name = f"blocks.{layer}.hook_resid_pre"
    steer = coefficient * vector

    def add(resid: Tensor, hook) -> Tensor:
        out = resid.clone()
        if steer.dim() == 1:
            out[:, start:] += steer
            return out
        rows = steer[:max(resid.shape[1] - start, 0)]
        out[:, start:start + rows.shape[0]] += rows
        return out

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, add)]):
        return model(tokens)


def steering_effect(model, vector: Tensor, layer: int, coefficient: float, prompts: Tensor,
                    targets: Tensor, neutral: Tensor, neutral_mask: Tensor) -> dict[str, float]:
    """What a steering vector does, and what else it changes.

    Steer with ``apply_steering(model, tokens, vector, layer, coefficient)`` (every position
    from 0) and compare with the unsteered model on the same tokens.

    - effect: prompts [batch, pos] (no padding) should, when steered, continue with one of
      ``targets`` [k] (token ids, e.g. words about weddings). At each prompt's last position
      take log P(next token is one of the targets) = log of the summed softmax
      probabilities of the k targets; effect = steered minus unsteered, averaged over the
      prompts. Positive: the steering works.
    - kl: neutral [batch2, pos2] are unrelated texts, padded at the end; neutral_mask
      [batch2, pos2] (bool) is True at their real tokens. At every real token, the KL
      divergence KL(unsteered || steered) = sum_v p(v) (log p(v) - log q(v)) of the
      next-token distributions (p unsteered, q steered); kl = its mean over all real
      tokens of the batch together (padding excluded). Near 0: little else changed.

    Return {"effect": ..., "kl": ...}, Python floats.
    """
    with torch.no_grad():
        clean = model(prompts)[:, -1].log_softmax(-1)
        steered = apply_steering(model, prompts, vector, layer, coefficient)[:, -1]
        steered = steered.log_softmax(-1)
        effect = (steered[:, targets].logsumexp(-1) - clean[:, targets].logsumexp(-1)).mean()
        p_log = model(neutral).log_softmax(-1)
        q_log = apply_steering(model, neutral, vector, layer, coefficient).log_softmax(-1)
        kl = (p_log.exp() * (p_log - q_log)).sum(-1)
    return {"effect": effect.item(), "kl": kl[neutral_mask].mean().item()}


def adjective_positive_share(model, openings: list[str], vector: Tensor, layer: int,
                      coefficient: float) -> float:
    """Given: the mean over ``openings`` of P(the next word is a positive adjective),
    among the corpus's positive, negative and neutral adjectives, steered by your
    ``apply_steering``.

    Each opening + adjective + " " is one row, padded at the end: a causal model's logits
    at a position do not depend on what comes after it, so the padding changes nothing.
    """
    from gptscope.data.stories import (
        NEGATIVE_ADJECTIVES,
        NEUTRAL_ADJECTIVES,
        POSITIVE_ADJECTIVES,
    )

    words = POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES + NEUTRAL_ADJECTIVES
    shares = []
    for opening in openings:
        rows = [model.tokenizer.encode(opening + w + " ") for w in words]
        width = max(len(r) for r in rows)
        tokens = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        logp = apply_steering(model, tokens, vector, layer, coefficient).log_softmax(-1)
        start = len(opening)
        word_logp = torch.stack([  # log P(word + " " | opening), by the chain rule
            sum(logp[i, t - 1, rows[i][t]] for t in range(start, len(rows[i])))
            for i in range(len(words))])
        shares.append(float(word_logp.softmax(0)[:len(POSITIVE_ADJECTIVES)].sum()))
    return sum(shares) / len(shares)


def explore_steering_stories(layer: int = 2, coefficients: tuple[float, ...] = (0.0, -2.0,
                             -3.0)) -> dict[float, dict[str, float]]:
    """Given: steer the shipped ``stories`` model with *your* ``steering_vector`` and
    ``apply_steering``.

    In the stories corpus each sentence's sentiment is drawn on its own, so a text has no
    mood to steer; what the model does track is that after a positive verb ("the dog loves
    the ") the adjective is positive or neutral, never negative. So the vector is read
    there: your ``steering_vector`` of "<subject> loves the " minus "<subject> hates the "
    (verbs of equal length, so the rows line up), its last row, averaged over subjects and
    verbs. Added with a negative coefficient, it should make "loves the " continue with a
    negative adjective. The side effect is measured as the change in loss on sentences with
    no sentiment words (the corpus's name sentences). Returns, per coefficient, the
    positive share of the adjective after a positive verb and that loss change in percent.
    """
    import gptscope as gs
    from gptscope.data.stories import generate_stories

    model = gs.load("stories")
    subjects, verb_pairs = ["the dog ", "mary ", "tom ", "the bird ", "lucy ", "the horse "], \
        [("loves", "hates"), ("likes", "fears")]
    rows = [steering_vector(model, model.to_tokens(s + p + " the "),
                            model.to_tokens(s + n + " the "), layer)[-1]
            for s in subjects for p, n in verb_pairs]
    vector = torch.stack(rows).mean(0)  # [d_model]
    openings = ["the cat loves the ", "ben likes the ", "the frog loves the ",
                "anna likes the "]  # subjects the vector was not built from
    neutral = [story.text[s.start:s.end] for story in generate_stories(60, seed=123)
               for s in story.spans if s.labels.get("kind") == "ioi"][:20]
    width = min(len(t) for t in neutral)
    neutral_tokens = torch.tensor([model.tokenizer.encode(t[:width]) for t in neutral])

    def neutral_loss(coefficient: float) -> float:
        logits = apply_steering(model, neutral_tokens, vector, layer, coefficient)
        return float(torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), neutral_tokens[:, 1:].flatten()))

    base_loss = neutral_loss(0.0)
    results = {}
    for c in coefficients:
        share = adjective_positive_share(model, openings, vector, layer, c)
        change = 100 * (neutral_loss(c) / base_loss - 1)
        results[c] = {"positive_share": share, "neutral_loss_change_percent": change}
        print(f"coefficient {c:+5.2f}: P(positive adjective after a positive verb) "
              f"{share:.2f}; loss on neutral text {change:+.1f}%")
    return results
