"""Checks for lesson 13b, second half: KL estimators, PPO's clipped loss, DPO and IPO.

As in ``alignment.py``, the right answers are float64 and an answer in float32 or float64
passes. Gradients are part of these contracts: PPO's loss must not reach old_logprobs and
DPO's must not reach the reference, and PPO's gradient (zero on the clipped tokens) is
compared with the right one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._answers import (
    dict_answer,
    gradients,
    reaches,
    tensor_answer,
    tuple_answer,
)
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    close,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.checks.alignment import bool_mask, masked_mean64, row_means64
from gptscope.course.result import CheckResult

# -- kl_estimators ----------------------------------------------------------------------------


def kl_cases() -> list[tuple[str, Tensor, Tensor]]:
    def make(label: str, logprobs: Tensor, log_ratio: Tensor) -> tuple[str, Tensor, Tensor]:
        ref = (logprobs.double() + log_ratio).to(logprobs.dtype)
        return label, logprobs, ref

    def logprobs(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return -(randn(*shape, seed=seed, dtype=dtype).abs() * 2 + 0.2)

    rows = torch.tensor([[1e-2], [2.0]], dtype=torch.float64)
    return [
        make("[3, 6], log-ratios about +-0.5", logprobs(3, 6, seed=300),
             randn(3, 6, seed=301, dtype=torch.float64, scale=0.5)),
        make("log-ratios from -4 to 4", logprobs(2, 6, seed=302),
             torch.linspace(-4, 4, 12, dtype=torch.float64).reshape(2, 6)),
        make("tiny log-ratios, about 1e-3", logprobs(2, 5, seed=303),
             randn(2, 5, seed=304, dtype=torch.float64, scale=1e-3)),
        make("rows of very different scale (log-ratios about 1e-2 and about 2)",
             logprobs(2, 6, seed=305), randn(2, 6, seed=306, dtype=torch.float64) * rows),
        make("batch of 1, one token", logprobs(1, 1, seed=307),
             torch.tensor([[0.7]], dtype=torch.float64)),
        make("float64", logprobs(2, 5, seed=308, dtype=torch.float64),
             randn(2, 5, seed=309, dtype=torch.float64, scale=0.8)),
    ]


def kl_truth(logprobs: Tensor, ref_logprobs: Tensor) -> dict[str, Tensor]:
    log_ratio = ref_logprobs.double() - logprobs.double()
    return {"k1": -log_ratio, "k2": log_ratio.square() / 2,
            "k3": torch.expm1(log_ratio) - log_ratio}


K1_SIGN = "k1 has the wrong sign: k1 = -log_ratio = logprobs - ref_logprobs"
K1_ABS = ("k1 is signed: it is logprobs - ref_logprobs, negative on some tokens (that is what "
          "keeps it unbiased); you took its absolute value")
K3_NO_MINUS1 = "k3 needs exp(log_ratio) - 1 - log_ratio, you dropped the -1"
K3_PLUS = "k3 subtracts log_ratio: (exp(log_ratio) - 1) - log_ratio; you added it"
K3_NO_LOG = "k3 needs the -log_ratio term: (exp(log_ratio) - 1) - log_ratio"
K3_INVERTED = ("k3 used the inverted ratio p/q = exp(logprobs - ref_logprobs); it needs "
               "q/p = exp(log_ratio) with log_ratio = ref_logprobs - logprobs")
KL_DIRECTION = ("you took log_ratio = logprobs - ref_logprobs, which estimates KL(reference || "
                "policy); for KL(policy || reference) from the policy's samples, log_ratio = "
                "ref_logprobs - logprobs")
K2_NO_HALF = "k2 is log_ratio**2 / 2; you dropped the 1/2"
KL_REDUCED = ("you reduced the estimates; return one value per token, shaped like logprobs "
              "[batch, pos]")


def kl_variants(key: str, logprobs: Tensor, ref_logprobs: Tensor) -> Variants:
    lr = ref_logprobs.double() - logprobs.double()
    right = kl_truth(logprobs, ref_logprobs)[key]
    reduced = [(KL_REDUCED, lambda: right.mean()), (KL_REDUCED, lambda: right.sum(-1))]
    by_key: dict[str, Variants] = {
        "k1": [(K1_SIGN, lambda: lr), (K1_ABS, lambda: lr.abs())],
        "k2": [(K2_NO_HALF, lambda: lr.square())],
        "k3": [(K3_NO_MINUS1, lambda: lr.exp() - lr), (K3_PLUS, lambda: torch.expm1(lr) + lr),
               (K3_NO_LOG, lambda: torch.expm1(lr)), (K3_INVERTED, lambda: torch.expm1(-lr) + lr)],
    }
    return list(by_key[key]) + reduced


def _kl_problem(found: Any, key: str, label: str, logprobs: Tensor, ref: Tensor
                ) -> Mismatch | None:
    value = tensor_answer(found[key], f"kl_estimators(...)[{key!r}]")
    try:
        compare(value, kl_truth(logprobs, ref)[key], label, kl_variants(key, logprobs, ref),
                key, atol=1e-6)
    except Mismatch as problem:
        return problem
    return None


def check_kl_estimators(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, Tensor, Tensor]) -> str:
        label, logprobs, ref = case
        found = dict_answer(call(fn, logprobs.clone(), ref.clone()), ("k1", "k3"),
                            "kl_estimators")
        k1, k3 = (_kl_problem(found, key, label, logprobs, ref) for key in ("k1", "k3"))
        # Both wrong in the way one reversed log-ratio makes them: name that one cause.
        if k1 and k3 and k1.message == K1_SIGN and k3.message == K3_INVERTED:
            raise Mismatch(KL_DIRECTION, k1.details, [KL_DIRECTION])
        k2 = _kl_problem(found, "k2", label, logprobs, ref) if "k2" in found else None
        for problem in (k1, k3, k2):
            if problem:
                raise problem
        return label

    return run_check("kl_estimators", lambda: run_cases(kl_cases(), one_case))


# -- ppo_clip_loss ----------------------------------------------------------------------------

@dataclass
class PpoCase:
    label: str
    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor
    clip: float | None  # None: leave the learner's default (0.2)

    @property
    def clip_value(self) -> float:
        return 0.2 if self.clip is None else self.clip


def _ppo_log_ratios(mask: Tensor, clip: float, seed: int) -> Tensor:
    """Random log-ratios, with planted tokens that tell the clip-fraction mistakes apart,
    all kept clear of every edge a right or wrong answer could use."""
    log_ratio = randn(*mask.shape, seed=seed, dtype=torch.float64, scale=0.3)
    high = (math.log(1 + clip) + clip) / 2  # ratio above 1 + clip, |log-ratio| below clip
    low = math.log(1 - clip) - 0.1
    planted = [high, high, low, low, 0.5 * math.log(1 + clip), math.log(1 + clip) + 0.25,
               math.log(1 - clip) - 0.3]
    where = mask[0].nonzero().flatten()[:len(planted)]
    log_ratio[0, where] = torch.tensor(planted[:len(where)], dtype=torch.float64)
    edges = torch.tensor([e for c in (0.1, 0.2, 0.3) for e in
                          (math.log(1 + c), math.log(1 - c), c, -c)], dtype=torch.float64)
    for _ in range(10):
        near = (log_ratio[..., None] - edges).abs().amin(-1) < 2e-3
        log_ratio = torch.where(near, log_ratio + 5e-3, log_ratio)
    return log_ratio


def ppo_case(label: str, mask: Tensor, seed: int, clip: float | None = None,
             per_completion: bool = False, row_scales: list[float] | None = None,
             dtype: torch.dtype = torch.float32) -> PpoCase:
    batch, pos = mask.shape
    clip_value = 0.2 if clip is None else clip
    old = -(randn(batch, pos, seed=seed, dtype=torch.float64).abs() * 2 + 0.5)
    log_ratio = _ppo_log_ratios(mask, clip_value, seed + 1)
    if per_completion:
        advantages = randn(batch, seed=seed + 2, dtype=torch.float64)
    else:
        advantages = randn(batch, pos, seed=seed + 2, dtype=torch.float64)
        where = mask[0].nonzero().flatten()[:7]
        signs = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.5, 1.0, -1.0], dtype=torch.float64)
        advantages[0, where] = signs[:len(where)]
    if row_scales is not None:
        scales = torch.tensor(row_scales, dtype=torch.float64)
        advantages = advantages * (scales if per_completion else scales[:, None])
    return PpoCase(label, (old + log_ratio).to(dtype), old.to(dtype), advantages.to(dtype),
                   mask, clip)


def ppo_cases() -> list[PpoCase]:
    return [
        ppo_case("per-token advantages [batch, pos], the default clip",
                 bool_mask("00111111", "00011110", "01111111"), 400),
        ppo_case("one advantage per response [batch], batch == pos",
                 bool_mask("0111", "0011", "1111", "0110"), 410, clip=0.2,
                 per_completion=True),
        ppo_case("per-response advantages, a mask with a gap and a row masked out",
                 bool_mask("011100111", "000000000", "011111111"), 420, per_completion=True),
        ppo_case("clip=0.1", bool_mask("0011111111", "0111111100"), 430, clip=0.1),
        ppo_case("clip=0.3", bool_mask("0011111111", "0111111100"), 440, clip=0.3),
        ppo_case("batch of 1", bool_mask("001111"), 450, per_completion=True),
        ppo_case("rows of very different scale (advantages x100 and x0.01)",
                 bool_mask("00111111", "01111100"), 460, row_scales=[100.0, 0.01]),
        ppo_case("float64 inputs", bool_mask("011111", "001110"), 470, clip=0.2,
                 dtype=torch.float64),
    ]


def _full_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    a = advantages.double()
    return a[:, None].expand_as(like) if a.dim() == 1 else a


def ppo_surrogate(ratio: Tensor, advantages: Tensor, clip: float) -> Tensor:
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)


def ppo_truth(c: PpoCase, logprobs: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(loss, clip_fraction) in float64; ``logprobs`` overrides the case's (for gradients)."""
    lp = c.logprobs.double() if logprobs is None else logprobs
    ratio = (lp - c.old_logprobs.double()).exp()
    advantages = _full_advantages(c.advantages, lp)
    outside = ((ratio - 1).abs() > c.clip_value).double()
    return (masked_mean64(-ppo_surrogate(ratio, advantages, c.clip_value), c.mask),
            masked_mean64(outside.detach(), c.mask))


def ppo_truth_grad(c: PpoCase) -> Tensor:
    lp = c.logprobs.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(ppo_truth(c, lp)[0], [lp])
    return grad


PPO_NO_CLIP = ("no clipping: the loss is -min(r A, clip(r, 1 - clip, 1 + clip) A), not "
               "-r A")
PPO_MAX = ("you took the max of the two terms; PPO takes the min, the pessimistic bound: "
           "loss = -min(r A, clip(r) A)")
PPO_ONLY_CLIPPED = ("you used only the clipped term; take the min of the unclipped and the "
                    "clipped one: -min(r A, clip(r) A)")
PPO_INVERTED = "the ratio is exp(old - new), inverted: r = exp(logprobs - old_logprobs)"
PPO_CLIP_IGNORED = "the clip argument was ignored (0.2 written in?): use the clip you are given"
PPO_ALL = "you averaged over all positions, not only the masked ones"
PPO_ROWS = ("you took each row's mean, then the mean of the rows: average over all masked "
            "tokens of the batch together")
PPO_SUM = "you summed over the masked tokens; take their mean"
PPO_SIGN = ("the sign is flipped: return minus the clipped surrogate, a loss to minimise")
PPO_LOG_CLIP = ("you clipped the log-ratio to [-clip, clip]; clip the ratio itself to "
                "[1 - clip, 1 + clip]")
PPO_BROADCAST = ("the per-response advantages [batch] were spread along pos: each row's "
                 "advantage goes to all its tokens, advantages[:, None]")
PPO_PER_TOKEN = "you returned one loss per token; return their masked mean, a 0-dim tensor"
PPO_OLD_GRAD = ("the gradient reached old_logprobs: detach them (the policy that sampled the "
                "tokens is fixed during the update)")
PPO_GRAD = ("the loss has the right value but the wrong gradient with respect to logprobs (a "
            ".detach() on the ratio or on the clipped term?)")


def ppo_loss_variants(c: PpoCase) -> Variants:
    lp, old, clip = c.logprobs.double(), c.old_logprobs.double(), c.clip_value
    advantages, mask = _full_advantages(c.advantages, lp), c.mask
    ratio, weights = (lp - old).exp(), mask.double()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    surrogate = ppo_surrogate(ratio, advantages, clip)
    batch, pos = lp.shape
    spread = c.advantages.double()[None, :].expand_as(lp) if (
        c.advantages.dim() == 1 and batch == pos) else None
    return [
        (PPO_NO_CLIP, lambda: masked_mean64(-ratio * advantages, mask)),
        (PPO_MAX, lambda: masked_mean64(-torch.maximum(ratio * advantages,
                                                       clipped * advantages), mask)),
        (PPO_ONLY_CLIPPED, lambda: masked_mean64(-clipped * advantages, mask)),
        (PPO_INVERTED, lambda: masked_mean64(-ppo_surrogate((old - lp).exp(), advantages,
                                                            clip), mask)),
        (PPO_CLIP_IGNORED, lambda: masked_mean64(-ppo_surrogate(ratio, advantages, 0.2), mask)
         if clip != 0.2 else None),
        (PPO_ALL, lambda: (-surrogate).mean()),
        (PPO_ALL, lambda: (-surrogate * weights).mean()),
        (PPO_ROWS, lambda: row_means64(-surrogate, mask, clamp=True)),
        (PPO_ROWS, lambda: row_means64(-surrogate, mask, clamp=False)),
        (PPO_SUM, lambda: (-surrogate * weights).sum()),
        (PPO_SIGN, lambda: masked_mean64(surrogate, mask)),
        (PPO_LOG_CLIP, lambda: masked_mean64(-torch.minimum(
            ratio * advantages, (lp - old).clamp(-clip, clip).exp() * advantages), mask)),
        (PPO_BROADCAST, lambda: masked_mean64(-ppo_surrogate(ratio, spread, clip), mask)
         if spread is not None else None),
        (PPO_PER_TOKEN, lambda: -surrogate),
        (PPO_PER_TOKEN, lambda: -surrogate * weights),
    ]


CF_LOG = ("you compared the log-ratio with clip; the clip fraction counts ratios "
          "r = exp(logprobs - old_logprobs) outside [1 - clip, 1 + clip]")
CF_ACTIVE = ("you counted only the tokens where the clipped term won the min; the clip "
             "fraction counts every masked token whose ratio is outside [1 - clip, 1 + clip], "
             "whatever the advantage's sign")
CF_ALL = "the clip fraction is a share of the masked tokens; you counted over all positions"
CF_ONE_SIDE = ("you counted only ratios above 1 + clip; the clip fraction counts ratios "
               "outside [1 - clip, 1 + clip], those below 1 - clip too")
CF_COUNT = ("you returned the number of clipped tokens; the clip fraction is their share of "
            "the masked tokens")
CF_INSIDE = ("you counted the ratios inside [1 - clip, 1 + clip]; the clip fraction counts "
             "those outside")
CF_CLIP_IGNORED = ("the clip fraction ignored the clip argument (0.2 written in?): count "
                   "ratios outside [1 - clip, 1 + clip] for the clip you are given")
CF_ROWS = ("the clip fraction is one share over all masked tokens of the batch; you averaged "
           "it per row")


def clip_fraction_variants(c: PpoCase) -> Variants:
    lp, old, clip = c.logprobs.double(), c.old_logprobs.double(), c.clip_value
    advantages, mask = _full_advantages(c.advantages, lp), c.mask
    ratio = (lp - old).exp()
    outside = (ratio - 1).abs() > clip
    active = ((ratio > 1 + clip) & (advantages > 0)) | ((ratio < 1 - clip) & (advantages < 0))
    return [
        (CF_LOG, lambda: masked_mean64(((lp - old).abs() > clip).double(), mask)),
        (CF_ACTIVE, lambda: masked_mean64(active.double(), mask)),
        (CF_ALL, lambda: outside.double().mean()),
        (CF_ONE_SIDE, lambda: masked_mean64((ratio > 1 + clip).double(), mask)),
        (CF_COUNT, lambda: (outside & mask).double().sum()),
        (CF_INSIDE, lambda: masked_mean64((~outside).double(), mask)),
        (CF_CLIP_IGNORED, lambda: masked_mean64(((ratio - 1).abs() > 0.2).double(), mask)
         if clip != 0.2 else None),
        (CF_ROWS, lambda: row_means64(outside.double(), mask, clamp=True)),
        (CF_ROWS, lambda: row_means64(outside.double(), mask, clamp=False)),
    ]


def _ppo_gradients(c: PpoCase, loss: Tensor, logprobs: Tensor, old: Tensor) -> None:
    grads = gradients(loss, {"logprobs": logprobs, "old_logprobs": old})
    if reaches(grads["old_logprobs"]):
        raise Mismatch(PPO_OLD_GRAD, [f"case: {c.label}"])
    got = grads["logprobs"]
    got = torch.zeros_like(logprobs) if got is None else got
    if not close(got, ppo_truth_grad(c), atol=1e-6, rtol=1e-4):
        raise Mismatch(PPO_GRAD, [f"case: {c.label}"])


def check_ppo_clip_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: PpoCase) -> str:
        logprobs = c.logprobs.clone().requires_grad_(True)
        old = c.old_logprobs.clone().requires_grad_(True)
        kwargs = {} if c.clip is None else {"clip": c.clip}
        result = tuple_answer(call(fn, logprobs, old, c.advantages.clone(), c.mask.clone(),
                                   **kwargs), ("loss", "clip_fraction"), "ppo_clip_loss")
        loss = tensor_answer(result[0], "the loss (first value)")
        fraction = tensor_answer(result[1], "clip_fraction (second value)")
        want_loss, want_fraction = ppo_truth(c)
        compare(loss, want_loss, c.label, ppo_loss_variants(c), "the loss")
        _ppo_gradients(c, loss, logprobs, old)
        compare(fraction, want_fraction, c.label, clip_fraction_variants(c), "clip_fraction",
                atol=1e-6)
        return c.label

    return run_check("ppo_clip_loss", lambda: run_cases(ppo_cases(), one_case))


# -- dpo_loss ---------------------------------------------------------------------------------

DPO_INPUTS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


@dataclass
class DpoCase:
    label: str
    logps: tuple[Tensor, Tensor, Tensor, Tensor]  # in the order of DPO_INPUTS
    beta: float | None = None  # None: leave the learner's default (0.1)
    kind: str | None = None  # None: leave the learner's default ("sigmoid")

    @property
    def beta_value(self) -> float:
        return 0.1 if self.beta is None else self.beta

    @property
    def kind_value(self) -> str:
        return "sigmoid" if self.kind is None else self.kind

    def kwargs(self) -> dict[str, Any]:
        given = {"beta": self.beta, "kind": self.kind}
        return {k: v for k, v in given.items() if v is not None}


def dpo_case(label: str, lengths: Tensor, seed: int, beta: float | None = None,
             kind: str | None = None, dtype: torch.dtype = torch.float32) -> DpoCase:
    """Sequence log-probs near ``lengths`` (sums over a response: more tokens, lower)."""
    n = lengths.shape[0]
    ref_chosen = lengths + randn(n, seed=seed, dtype=torch.float64)
    ref_rejected = 1.1 * lengths + randn(n, seed=seed + 1, dtype=torch.float64)
    chosen = ref_chosen + randn(n, seed=seed + 2, dtype=torch.float64, scale=3.0)
    rejected = ref_rejected + randn(n, seed=seed + 3, dtype=torch.float64, scale=3.0)
    logps = tuple(t.to(dtype) for t in (chosen, rejected, ref_chosen, ref_rejected))
    return DpoCase(label, logps, beta, kind)  # type: ignore[arg-type]


def dpo_cases() -> list[DpoCase]:
    lengths = -20.0 - 5 * randn(5, seed=500, dtype=torch.float64).abs()
    return [
        dpo_case("5 pairs, the default beta and kind", lengths, 510),
        dpo_case("beta=0.5", lengths, 520, beta=0.5),
        dpo_case("kind='ipo', beta=0.1", lengths, 530, beta=0.1, kind="ipo"),
        dpo_case("kind='ipo', beta=0.25", lengths, 540, beta=0.25, kind="ipo"),
        dpo_case("batch of 1", lengths[:1], 550, beta=0.2, kind="sigmoid"),
        dpo_case("responses of very different lengths (log-probs near -3 and near -400)",
                 torch.tensor([-3.0, -400.0, -8.0, -250.0], dtype=torch.float64), 560),
        dpo_case("float64 inputs", lengths, 570, beta=0.3, dtype=torch.float64),
    ]


def dpo_loss64(h: Tensor, beta: float, kind: str) -> Tensor:
    if kind == "ipo":
        return (h - 1 / (2 * beta)).square().mean()
    return -F.logsigmoid(beta * h).mean()


def dpo_truth(c: DpoCase) -> tuple[Tensor, Tensor, Tensor]:
    chosen, rejected, ref_chosen, ref_rejected = (t.double() for t in c.logps)
    h = (chosen - ref_chosen) - (rejected - ref_rejected)
    beta = c.beta_value
    return (dpo_loss64(h, beta, c.kind_value), beta * (chosen - ref_chosen),
            beta * (rejected - ref_rejected))


D_NEG_H = ("the margin has the wrong sign (chosen and rejected, or policy and reference, "
           "swapped): h = (chosen - ref_chosen) - (rejected - ref_rejected), and the loss "
           "must fall as h grows")
D_REF_SWAPPED = ("the reference terms are swapped: chosen's reference goes with chosen, "
                 "h = (chosen - ref_chosen) - (rejected - ref_rejected)")
D_NO_REF = ("the reference log-probs were left out: DPO's margin compares the policy with "
            "the frozen reference")
D_SUM = "you summed over the pairs; take the mean"
D_BETA_IGNORED = "the beta argument was ignored (0.1 written in?): use the beta you are given"
D_NO_BETA = "beta is missing: the loss is -log sigmoid(beta * h)"
D_SIGMOID_NOT_LOG = ("you used sigmoid(beta h) itself; the loss is minus its log: "
                     "-log sigmoid(beta * h)")
D_KIND_IGNORED = ("kind='ipo' was ignored: IPO's loss is (h - 1/(2 beta))**2, not "
                  "-log sigmoid(beta h)")
D_IPO_ONE_OVER_BETA = "IPO's target margin is 1/(2 beta), you used 1/beta"
D_IPO_SCALED = ("IPO's loss is (h - 1/(2 beta))**2 on the unscaled margin h; you squared "
                "beta * h - 1/2")
D_REF_GRAD = ("the gradient reached the reference log-probs: detach them (the reference "
              "model is frozen)")


def dpo_loss_variants(c: DpoCase) -> Variants:
    chosen, rejected, ref_chosen, ref_rejected = (t.double() for t in c.logps)
    beta, kind = c.beta_value, c.kind_value
    h = (chosen - ref_chosen) - (rejected - ref_rejected)
    found: list[tuple[str, Callable[[], Tensor | None]]] = [
        (D_NEG_H, lambda: dpo_loss64(-h, beta, kind)),
        (D_REF_SWAPPED, lambda: dpo_loss64((chosen - ref_rejected) - (rejected - ref_chosen),
                                           beta, kind)),
        (D_NO_REF, lambda: dpo_loss64(chosen - rejected, beta, kind)),
        (D_SUM, lambda: dpo_loss64(h, beta, kind) * h.shape[0]),
        (D_BETA_IGNORED, lambda: dpo_loss64(h, 0.1, kind) if beta != 0.1 else None),
    ]
    if kind == "sigmoid":
        found += [(D_NO_BETA, lambda: -F.logsigmoid(h).mean()),
                  (D_SIGMOID_NOT_LOG, lambda: -torch.sigmoid(beta * h).mean()),
                  (D_SIGMOID_NOT_LOG, lambda: (1 - torch.sigmoid(beta * h)).mean())]
    else:
        found += [(D_KIND_IGNORED, lambda: dpo_loss64(h, beta, "sigmoid")),
                  (D_IPO_ONE_OVER_BETA, lambda: (h - 1 / beta).square().mean()),
                  (D_IPO_SCALED, lambda: (beta * h - 0.5).square().mean())]
    return found


R_SWAPPED = "chosen_reward and rejected_reward are swapped"
R_NO_BETA = ("the rewards are beta * (policy - reference) per response; you left out beta")
R_SIGN = ("the rewards have the wrong sign: beta * (policy log-prob - reference log-prob)")
R_NO_REF = ("the rewards compare the policy with the reference: beta * (logps - ref_logps); "
            "you left out the reference")
R_BETA_IGNORED = "the rewards ignored the beta argument (0.1 written in?)"
R_REDUCED = "return one reward per pair, shaped [batch]; you reduced them"
R_NOT_DETACHED = ("the rewards still carry gradient: return them detached (.detach()), they "
                  "are for logging")


def reward_variants(policy: Tensor, ref: Tensor, beta: float) -> Variants:
    p, q = policy.double(), ref.double()
    return [
        (R_NO_BETA, lambda: p - q),
        (R_SIGN, lambda: beta * (q - p)),
        (R_NO_REF, lambda: beta * p),
        (R_BETA_IGNORED, lambda: 0.1 * (p - q) if beta != 0.1 else None),
        (R_REDUCED, lambda: (beta * (p - q)).mean()),
        (R_REDUCED, lambda: (beta * (p - q)).sum()),
    ]


def _check_rewards(c: DpoCase, chosen_reward: Tensor, rejected_reward: Tensor) -> None:
    _, want_chosen, want_rejected = dpo_truth(c)
    details = [f"case: {c.label}"]
    if close(chosen_reward, want_rejected) and close(rejected_reward, want_chosen) and \
            not close(want_chosen, want_rejected):
        raise Mismatch(R_SWAPPED, details)
    chosen, rejected, ref_chosen, ref_rejected = c.logps
    compare(chosen_reward, want_chosen, c.label,
            reward_variants(chosen, ref_chosen, c.beta_value), "chosen_reward")
    compare(rejected_reward, want_rejected, c.label,
            reward_variants(rejected, ref_rejected, c.beta_value), "rejected_reward")
    if chosen_reward.requires_grad or rejected_reward.requires_grad:
        raise Mismatch(R_NOT_DETACHED, details)


def check_dpo_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: DpoCase) -> str:
        inputs = {name: t.clone().requires_grad_(True) for name, t in zip(DPO_INPUTS, c.logps)}
        result = tuple_answer(call(fn, *inputs.values(), **c.kwargs()),
                              ("loss", "chosen_reward", "rejected_reward"), "dpo_loss")
        loss = tensor_answer(result[0], "the loss (first value)")
        chosen_reward = tensor_answer(result[1], "chosen_reward (second value)")
        rejected_reward = tensor_answer(result[2], "rejected_reward (third value)")
        compare(loss, dpo_truth(c)[0], c.label, dpo_loss_variants(c), "the loss")
        grads = gradients(loss, inputs)
        if reaches(grads["ref_chosen_logps"]) or reaches(grads["ref_rejected_logps"]):
            raise Mismatch(D_REF_GRAD, [f"case: {c.label}"])
        _check_rewards(c, chosen_reward, rejected_reward)
        return c.label

    return run_check("dpo_loss", lambda: run_cases(dpo_cases(), one_case))
