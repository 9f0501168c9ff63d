"""Checks for lesson 11: steering_vector, apply_steering, steering_effect.

The right answers come from ``gptscope.steering`` (``SteeringVector.from_contrast`` and
``SteeringVector.apply``) on a small random model; a wrong one is named by the known mistake
that reproduces it. Steering must leave the model as it found it: no hook left attached, no
weight or input edited, which is checked directly after each call.
"""

# The variant lambdas are called by compare() in the same case that makes them, so the
# late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._answers import dict_answer, tensor_answer
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    compare,
    run_cases,
    run_check,
)
from gptscope.course.checks.features._shared import compare_number, number_answer
from gptscope.course.checks.interp import interp_model
from gptscope.course.result import CheckResult
from gptscope.steering import SteeringVector

# -- lesson 11: shared ------------------------------------------------------------------------

def _resid(model: Any, tokens: Tensor, name: str) -> Tensor:
    """The activation at hook ``name`` for one prompt [1, pos]: [pos, d_model]."""
    with torch.no_grad():
        return model.run_with_cache(tokens, names_filter=name)[1][name][0]


def _with_edit(model: Any, tokens: Tensor, name: str, edit: Callable[[Tensor], Tensor]
               ) -> Tensor:
    """Logits with the activation at ``name`` replaced by ``edit(activation)``."""
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook: edit(x))])


def _hooks_left(model: Any) -> bool:
    return any(point.fwd_fns or point.bwd_fns for point in model.hook_dict.values())


def _steering_model(seed: int) -> Any:
    return interp_model(seed=seed, n_layers=3)


# -- lesson 11: steering_vector ---------------------------------------------------------------

STEER_SIGN = "sign flipped: positive minus negative"
STEER_RESID_POST = ("read the wrong hook: use blocks.{layer}.hook_resid_pre (resid_post is the "
                    "next layer's input: your layer is off by one)")
STEER_LAYER_BELOW = ("read layer - 1: blocks.{layer}.hook_resid_pre is the input of block "
                     "`layer`, counting from 0")
STEER_LAST_ONLY = "used the last position only; keep one row per position (ActAdd)"
STEER_MEAN_POSITIONS = ("averaged over positions; ActAdd keeps one row per position, "
                        "[max(pos_p, pos_n), d_model]")
STEER_MEAN_D = "averaged over d_model, the wrong axis: keep every residual dimension"
STEER_PAD_FRONT = "the shorter prompt must be padded with zero rows at the *end*"
STEER_PAD_TOKENS = ("you padded the shorter prompt's tokens and ran them: pad its activations "
                    "with zero rows instead (a padding token's residual stream is not zero)")
STEER_TRUNCATED = ("you cut both to the shorter prompt's length: pad the shorter one with zero "
                   "rows to max(pos_p, pos_n)")
STEER_BATCH_DIM = "return [max(pos_p, pos_n), d_model] without the batch dimension"
STEER_NORMALISED = "return the raw difference; do not normalise it"
STEER_NO_NEGATIVE = "you returned the positive prompt's activations: subtract the negative's"


def _pad_rows(x: Tensor, n: int, front: bool = False) -> Tensor:
    zeros = x.new_zeros(n - x.shape[0], x.shape[1])
    return torch.cat([zeros, x] if front else [x, zeros])


def _pad_tokens(tokens: Tensor, n: int) -> Tensor:
    return torch.cat([tokens, tokens.new_zeros(1, n - tokens.shape[1])], dim=1)


def steering_vector_variants(model: Any, pos: Tensor, neg: Tensor, layer: int) -> Variants:
    def contrast(name: str, front: bool = False) -> Tensor:
        a, b = _resid(model, pos, name), _resid(model, neg, name)
        n = max(len(a), len(b))
        return _pad_rows(a, n, front) - _pad_rows(b, n, front)

    name = f"blocks.{layer}.hook_resid_pre"
    a, b = _resid(model, pos, name), _resid(model, neg, name)
    n, m = max(len(a), len(b)), min(len(a), len(b))
    right = _pad_rows(a, n) - _pad_rows(b, n)
    return [
        (STEER_SIGN, lambda: -right),
        (STEER_RESID_POST, lambda: contrast(f"blocks.{layer}.hook_resid_post")),
        (STEER_LAYER_BELOW, lambda: contrast(f"blocks.{layer - 1}.hook_resid_pre")
         if layer > 0 else None),
        (STEER_LAST_ONLY, lambda: a[-1] - b[-1]),
        (STEER_MEAN_POSITIONS, lambda: a.mean(0) - b.mean(0)),
        (STEER_MEAN_D, lambda: _pad_rows(a, n).mean(-1) - _pad_rows(b, n).mean(-1)),
        (STEER_PAD_FRONT, lambda: contrast(name, front=True)),
        (STEER_PAD_TOKENS, lambda: _resid(model, _pad_tokens(pos, n), name)
         - _resid(model, _pad_tokens(neg, n), name)),
        (STEER_TRUNCATED, lambda: a[:m] - b[:m]),
        (STEER_BATCH_DIM, lambda: right[None]),
        (STEER_NORMALISED, lambda: right / right.norm()),
        (STEER_NORMALISED, lambda: right / right.norm(dim=-1, keepdim=True).clamp_min(1e-12)),
        (STEER_NO_NEGATIVE, lambda: _pad_rows(a, n)),
    ]


STEERING_CONTRASTS = [([1, 2, 3, 4], [1, 7, 3, 5], 1), ([2, 9, 9], [4, 4, 1, 8, 8], 2),
                      ([6, 1, 2, 3, 4], [6, 5], 0), ([3, 8, 8, 1, 2, 5], [3, 8, 4], 2)]


def check_steering_vector(fn: Callable[..., Any]) -> CheckResult:
    model = _steering_model(seed=3)

    def one_case(contrast: tuple[list[int], list[int], int]) -> str:
        pos_ids, neg_ids, layer = contrast
        pos, neg = torch.tensor([pos_ids]), torch.tensor([neg_ids])
        want = SteeringVector.from_contrast(model, pos, neg,
                                            f"blocks.{layer}.hook_resid_pre").vector
        got = tensor_answer(call(fn, model, pos.clone(), neg.clone(), layer),
                            "steering_vector's result")
        case = f"layer {layer}, prompts of {len(pos_ids)} and {len(neg_ids)} tokens"
        compare(got, want, case, steering_vector_variants(model, pos, neg, layer),
                "the steering vector", atol=1e-5, axes=("pos", "d_model"))
        return case

    return run_check("steering_vector", lambda: run_cases(STEERING_CONTRASTS, one_case))


# -- lesson 11: apply_steering ----------------------------------------------------------------

@dataclass
class SteerCase:
    label: str
    tokens: Tensor
    vector: Tensor
    layer: int
    coefficient: float
    start: int

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.hook_resid_pre"


def steer_cases() -> list[SteerCase]:
    def case(label: str, batch: int, pos: int, rows: int | None, layer: int,
             coefficient: float, start: int, seed: int) -> SteerCase:
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, 20, (batch, pos), generator=g)
        shape = (32,) if rows is None else (rows, 32)
        return SteerCase(label, tokens, torch.randn(shape, generator=g), layer, coefficient,
                         start)

    return [
        case("[d_model] vector, layer 1, coefficient 3, from position 0", 2, 6, None, 1, 3.0,
             0, 60),
        case("[d_model] vector from position 2, layer 2, coefficient -2", 2, 7, None, 2,
             -2.0, 2, 61),
        case("ActAdd vector [3, d_model] from position 1, layer 0, coefficient 4", 2, 8, 3, 0,
             4.0, 1, 62),
        case("ActAdd vector [5, d_model] from position 4 of 6 (3 rows fall off the end)", 1,
             6, 5, 1, 1.5, 4, 63),
        case("batch of 3, layer 0, coefficient 0.5", 3, 5, None, 0, 0.5, 0, 64),
        case("start=6 on 5 positions: nothing to steer", 2, 5, None, 1, 2.0, 6, 65),
    ]


def steered_logits(model: Any, tokens: Tensor, vector: Tensor, hook: str,
                   coefficient: float, start: int) -> Tensor:
    """The library's steering (``gptscope.steering``) of one forward pass."""
    with torch.no_grad(), SteeringVector(vector, hook).apply(model, coefficient, start):
        return model(tokens)


AS_NO_COEFF = "the coefficient was ignored: add coefficient * vector"
AS_SIGN = "you subtracted the vector: add coefficient * vector"
AS_RESID_POST = ("steered the wrong hook: add to blocks.{layer}.hook_resid_pre (resid_post is "
                 "the next layer's input: your layer is off by one)")
AS_LAYER_BELOW = "steered layer - 1: blocks.{layer}.hook_resid_pre, counting from 0"
AS_START_IGNORED = ("the vector went in from position 0: start at position `start` (row i of "
                    "an ActAdd vector at position start + i)")
AS_ONLY_AT_START = ("you added a [d_model] vector at position `start` only: add it at every "
                    "position from `start` on")
AS_LAST_ONLY = "you steered the last position only: add the vector from position `start` on"
AS_FIRST_ROW = "only the first prompt of the batch was steered: add the vector to every row"
AS_NORMALISED = "you normalised the vector: add coefficient * vector as given"
AS_UNSTEERED = ("the logits are the unsteered model's: the hook never changed the residual "
                "stream (attach it inside `with model.hooks(...)` and return the edited tensor)")
AS_PROBS = "return the logits, not probabilities or log-probabilities"
AS_HOOK_LEFT = ("a hook is still attached after apply_steering returned: attach it with "
                "`with model.hooks(fwd_hooks=[(name, fn)]):` so it is removed afterwards")
AS_WEIGHTS = ("apply_steering changed the model's weights: add the vector to the activation in "
              "a hook, and leave the parameters alone")
AS_INPUT_CHANGED = ("apply_steering changed the vector (or tokens) it was given: compute "
                    "coefficient * vector into a new tensor instead of editing it in place")


def apply_steering_variants(model: Any, c: SteerCase) -> Variants:
    def steer(vector: Tensor = c.vector, hook: str = c.hook, coefficient: float =
              c.coefficient, start: int = c.start) -> Tensor:
        return steered_logits(model, c.tokens, vector, hook, coefficient, start)

    def edited(edit: Callable[[Tensor], None]) -> Tensor:
        def run(x: Tensor) -> Tensor:
            out = x.clone()
            edit(out)
            return out
        return _with_edit(model, c.tokens, c.hook, run)

    v = c.coefficient * c.vector
    flat = c.vector.dim() == 1
    right = steer()
    return [
        (AS_NO_COEFF, lambda: steer(coefficient=1.0)),
        (AS_SIGN, lambda: steer(coefficient=-c.coefficient)),
        (AS_RESID_POST, lambda: steer(hook=f"blocks.{c.layer}.hook_resid_post")),
        (AS_LAYER_BELOW, lambda: steer(hook=f"blocks.{c.layer - 1}.hook_resid_pre")
         if c.layer > 0 else None),
        (AS_START_IGNORED, lambda: steer(start=0)),
        (AS_ONLY_AT_START, lambda: edited(lambda x: x[:, c.start].add_(v))
         if flat and c.start < c.tokens.shape[1] else None),
        (AS_LAST_ONLY, lambda: edited(lambda x: x[:, -1].add_(v)) if flat else None),
        (AS_FIRST_ROW, lambda: torch.cat([right[:1], model(c.tokens[1:])])
         if len(c.tokens) > 1 else None),
        (AS_NORMALISED, lambda: steer(vector=c.vector / c.vector.norm())),
        (AS_NORMALISED, lambda: steer(vector=c.vector / c.vector.norm(dim=-1, keepdim=True))),
        (AS_UNSTEERED, lambda: model(c.tokens)),
        (AS_PROBS, lambda: right.softmax(-1)),
        (AS_PROBS, lambda: right.log_softmax(-1)),
    ]


def check_apply_steering(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: SteerCase) -> str:
        model = _steering_model(seed=4)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        tokens, vector = c.tokens.clone(), c.vector.clone()
        found = call(fn, model, tokens, vector, c.layer, c.coefficient, c.start)
        details = [f"case: {c.label}"]
        if _hooks_left(model):
            raise Mismatch(AS_HOOK_LEFT, details)
        if any(not torch.equal(v, weights[k]) for k, v in model.state_dict().items()):
            raise Mismatch(AS_WEIGHTS, details)
        if not (torch.equal(tokens, c.tokens) and torch.equal(vector, c.vector)):
            raise Mismatch(AS_INPUT_CHANGED, details)
        got = tensor_answer(found, "apply_steering's result")
        want = steered_logits(model, c.tokens, c.vector, c.hook, c.coefficient, c.start)
        with torch.no_grad():
            compare(got, want, c.label, apply_steering_variants(model, c), "the logits",
                    atol=1e-4, axes=("batch", "pos", "d_vocab"))
        return c.label

    return run_check("apply_steering", lambda: run_cases(steer_cases(), one_case))


# -- lesson 11: steering_effect ---------------------------------------------------------------

@dataclass
class EffectCase:
    label: str
    vector: Tensor
    layer: int
    coefficient: float
    prompts: Tensor
    targets: Tensor
    neutral: Tensor
    mask: Tensor

    def args(self) -> tuple[Any, ...]:
        return (self.vector.clone(), self.layer, self.coefficient, self.prompts.clone(),
                self.targets.clone(), self.neutral.clone(), self.mask.clone())


def effect_cases(model: Any) -> list[EffectCase]:
    def case(label: str, vector: Tensor, layer: int, coefficient: float, n_prompts: int,
             targets: list[int], lengths: list[int], seed: int) -> EffectCase:
        g = torch.Generator().manual_seed(seed)
        prompts = torch.randint(0, 20, (n_prompts, 5 + seed % 2), generator=g)
        mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
        neutral = torch.randint(1, 20, mask.shape, generator=g).masked_fill(~mask, 0)
        return EffectCase(label, vector, layer, coefficient, prompts, torch.tensor(targets),
                          neutral, mask)

    actadd = SteeringVector.from_contrast(model, torch.tensor([[4, 9, 2]]),
                                          torch.tensor([[4, 1]]), "blocks.0.hook_resid_pre")
    return [
        case("[d_model] vector, layer 1, coefficient 2, three targets, neutral texts of 7, 4 "
             "and 2 tokens", torch.randn(32, generator=torch.Generator().manual_seed(70)), 1,
             2.0, 3, [3, 7, 11], [7, 4, 2], 71),
        case("ActAdd vector [3, d_model], layer 0, coefficient 4, one target", actadd.vector,
             0, 4.0, 2, [5], [6, 3], 72),
        case("coefficient -1.5, layer 2, one prompt, two targets",
             torch.randn(32, generator=torch.Generator().manual_seed(73)), 2, -1.5, 1, [2, 13],
             [5, 5, 1, 3], 74),
    ]


@dataclass
class EffectTruth:
    """Float64 log-probs of the unsteered and steered runs, and what they give."""
    clean: Tensor  # [batch, pos, d_vocab] log-probs on the prompts
    steered: Tensor
    clean_logits: Tensor
    steered_logits: Tensor
    p: Tensor  # [batch2, pos2, d_vocab] log-probs on the neutral texts, unsteered
    q: Tensor  # the same, steered
    p_logits: Tensor
    q_logits: Tensor

    @classmethod
    def of(cls, model: Any, c: EffectCase) -> EffectTruth:
        hook = f"blocks.{c.layer}.hook_resid_pre"
        with torch.no_grad():
            runs = [model(c.prompts), steered_logits(model, c.prompts, c.vector, hook,
                                                     c.coefficient, 0),
                    model(c.neutral), steered_logits(model, c.neutral, c.vector, hook,
                                                     c.coefficient, 0)]
        runs = [r.double() for r in runs]
        return cls(runs[0].log_softmax(-1), runs[1].log_softmax(-1), runs[0], runs[1],
                   runs[2].log_softmax(-1), runs[3].log_softmax(-1), runs[2], runs[3])


def _target_change(before: Tensor, after: Tensor, targets: Tensor) -> Tensor:
    """log of the targets' summed probability, after minus before: [batch, pos]."""
    return after[..., targets].logsumexp(-1) - before[..., targets].logsumexp(-1)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return values[mask].mean()


EFF_SIGN = "the effect is steered minus unsteered; yours is the reverse"
EFF_LOGITS = ("you measured logits: take log-probabilities (log_softmax over the vocabulary) "
              "before picking the targets")
EFF_MEAN_LOGPROBS = ("you averaged the targets' log-probs: take the log of their summed "
                     "probability (logsumexp of their log-probs)")
EFF_PROBS = "you measured the change in probability; the effect is the change in log-probability"
EFF_ALL_POSITIONS = ("you averaged over every position: the effect is read at each prompt's "
                     "last position, where the next token is predicted")
EFF_SUM = "you summed over the prompts; average over them"
KL_REVERSED = ("you computed KL(steered || unsteered): KL(p || q) = sum p (log p - log q) with "
               "p the unsteered and q the steered distribution")
KL_PADDING = ("the KL was averaged over padding positions too: average over neutral_mask's "
              "real tokens only")
KL_ROWS = ("you took each text's mean KL, then the mean of those: average over all real tokens "
           "of the batch together")
KL_SUM = "you summed the KL over the tokens; average it"
KL_VOCAB_MEAN = "you averaged over the vocabulary: the KL sums p (log p - log q) over it"
KL_PROBS = ("F.kl_div takes log-probabilities as its first argument: you passed probabilities "
            "(F.kl_div(q.log_softmax(-1), p.log_softmax(-1), log_target=True) is the safe form)")
KL_LOGITS = ("you used logits in place of log-probabilities in the KL: log_softmax the logits "
             "first")
EFF_HOOK_LEFT = ("a hook is still attached after steering_effect returned, so later runs stay "
                 "steered: attach hooks with `with model.hooks(...)` (or use apply_steering)")


def effect_variants(t: EffectTruth, c: EffectCase) -> Variants:
    change = _target_change(t.clean, t.steered, c.targets)  # [batch, pos]
    last = change[:, -1]
    logit_change = _target_change(t.clean_logits, t.steered_logits, c.targets)[:, -1]
    return [
        (EFF_SIGN, lambda: -last.mean()),
        (EFF_LOGITS, lambda: logit_change.mean()),
        (EFF_LOGITS, lambda: (t.steered_logits - t.clean_logits)[:, -1, c.targets].mean()),
        (EFF_MEAN_LOGPROBS, lambda: (t.steered - t.clean)[:, -1, c.targets].mean()),
        (EFF_PROBS, lambda: (t.steered.exp() - t.clean.exp())[:, -1, c.targets].sum(-1).mean()),
        (EFF_ALL_POSITIONS, lambda: change.mean()),
        (EFF_SUM, lambda: last.sum()),
    ]


def kl_variants(t: EffectTruth, c: EffectCase) -> Variants:
    p, q, mask = t.p, t.q, c.mask
    per_token = (p.exp() * (p - q)).sum(-1)
    return [
        (KL_REVERSED, lambda: _masked_mean((q.exp() * (q - p)).sum(-1), mask)),
        (KL_PADDING, lambda: per_token.mean()),
        (KL_ROWS, lambda: torch.stack([row[m].mean() for row, m in zip(per_token, mask)])
         .mean()),
        (KL_SUM, lambda: per_token[mask].sum()),
        (KL_VOCAB_MEAN, lambda: _masked_mean((p.exp() * (p - q)).mean(-1), mask)),
        (KL_PROBS, lambda: _masked_mean((p.exp() * (p - q.exp())).sum(-1), mask)),
        (KL_PROBS, lambda: _masked_mean((q.exp() * (q - p.exp())).sum(-1), mask)),
        (KL_LOGITS, lambda: _masked_mean((p.exp() * (t.p_logits - t.q_logits)).sum(-1), mask)),
    ]


def check_steering_effect(fn: Callable[..., Any]) -> CheckResult:
    model = _steering_model(seed=5)

    def one_case(c: EffectCase) -> str:
        found = call(fn, model, *c.args())
        if _hooks_left(model):
            model.reset_hooks()
            raise Mismatch(EFF_HOOK_LEFT, [f"case: {c.label}"])
        result = dict_answer(found, ("effect", "kl"), "steering_effect")
        effect = number_answer(result["effect"], "steering_effect(...)['effect']")
        kl = number_answer(result["kl"], "steering_effect(...)['kl']")
        t = EffectTruth.of(model, c)
        compare_number(effect, _target_change(t.clean, t.steered, c.targets)[:, -1].mean(),
                       c.label, effect_variants(t, c), "the effect", atol=1e-4)
        compare_number(kl, _masked_mean((t.p.exp() * (t.p - t.q)).sum(-1), c.mask), c.label,
                       kl_variants(t, c), "the kl", atol=1e-5)
        return c.label

    return run_check("steering_effect", lambda: run_cases(effect_cases(model), one_case))
