"""Checks for lesson 13b, first half: the SFT loss, the reward model's loss, normalised rewards.

The right answers are computed here in float64 (``gptscope.align.losses`` is the library's
version of the same contracts; the tests hold the two together). An answer computed in
float32 or in float64 passes: the cases keep float32 rounding far below the tolerances, and
every named mistake far above them. ``rlhf.py`` holds the second half.
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
    gradients,
    tensor_answer,
)
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    compare,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult


def bool_mask(*rows: str) -> Tensor:
    """A [batch, pos] bool mask from strings of 0 and 1, one per row ("0011" = two prompt
    tokens, then two response tokens)."""
    return torch.tensor([[c == "1" for c in row] for row in rows])


def masked_mean64(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over the masked entries, in float64; 0 when none is masked in."""
    weights = mask.double()
    return (values.double() * weights).sum() / weights.sum().clamp(min=1)


def row_means64(values: Tensor, mask: Tensor, clamp: bool) -> Tensor:
    """The wrong mean: per row, then over rows (nan for an empty row unless clamped)."""
    weights = mask.double()
    counts = weights.sum(-1)
    return ((values.double() * weights).sum(-1) / (counts.clamp(min=1) if clamp else counts)
            ).mean()


# -- masked_sft_loss --------------------------------------------------------------------------

@dataclass
class SftCase:
    label: str
    logits: Tensor
    targets: Tensor
    mask: Tensor


def sft_cases() -> list[SftCase]:
    def make(label: str, mask: Tensor, vocab: int, seed: int, row_scales: list[float] | None
             = None, dtype: torch.dtype = torch.float32) -> SftCase:
        batch, pos = mask.shape
        logits = randn(batch, pos, vocab, seed=seed, dtype=torch.float64, scale=2.0)
        if row_scales is not None:
            logits = logits * torch.tensor(row_scales, dtype=torch.float64)[:, None, None]
        g = torch.Generator().manual_seed(seed + 1)
        targets = torch.randint(0, vocab, (batch, pos), generator=g)
        return SftCase(label, logits.to(dtype), targets, mask)

    return [
        make("batch 3 of 7 tokens: a prompt, then responses of 5, 3 and 3 tokens (the last "
             "one padded)", bool_mask("0011111", "0000111", "0111000"), 11, 0),
        make("a mask with a gap in the middle (two assistant turns) and a row with no "
             "response", bool_mask("00110011", "00000000", "01111110"), 9, 10),
        make("batch of 1", bool_mask("0001111"), 13, 20),
        make("rows of very different scale: the second row's logits are 30 times larger",
             bool_mask("001111", "011100"), 8, 30, row_scales=[1.0, 30.0]),
        make("float64 logits", bool_mask("0111", "0011"), 7, 40, dtype=torch.float64),
        make("no response token anywhere: the loss is 0", bool_mask("0000", "0000"), 5, 50),
    ]


def sft_truth(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    logp = logits.double().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return masked_mean64(-logp, mask)


SFT_ALL = ("you averaged over all positions: divide the masked sum by the number of masked "
           "(response) tokens, not by batch * pos")
SFT_SUM = ("you summed the masked token losses; divide by the number of masked tokens to get "
           "their mean")
SFT_ROWS = ("you took each row's mean, then the mean of the rows: average over all masked "
            "tokens of the batch together, so a longer response weighs more")
SFT_INVERTED = ("the mask is inverted: you averaged over the prompt (mask False); average "
                "where the mask is True")
SFT_SHIFT = ("the targets are already shifted (logits[:, t] predicts targets[:, t]); you "
             "shifted them once more")
SFT_PROBS = "you used probabilities: the loss is -log p(target), not -p(target)"
SFT_SIGN = "the sign is flipped: the loss is minus the log-probability of the target"
SFT_RAW = ("you used the raw logit of the target without log_softmax: the loss is "
           "-log softmax(logits)[target]")
SFT_AXIS = ("log_softmax over the wrong axis: normalise over the vocabulary (the last "
            "axis), not over positions")
SFT_EMPTY = ("with no response tokens the loss must be 0, not nan: divide by the number of "
             "masked tokens clamped to at least 1")
SFT_LOG_SOFTMAX = ("log(softmax(logits)) underflows to -inf on very confident rows: use "
                   "log_softmax, which subtracts the logsumexp instead")
SFT_PER_TOKEN = ("you returned one loss per token; return their mean over the masked tokens, "
                 "a 0-dim tensor")


def sft_variants(logits: Tensor, targets: Tensor, mask: Tensor) -> Variants:
    x = logits.double()
    logp = x.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    weights = mask.double()
    naive = logits.float().softmax(-1).log().gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    underflows = bool(torch.isinf(naive[mask]).any())
    return [
        (SFT_ALL, lambda: -logp.mean()),
        (SFT_ALL, lambda: -(logp * weights).mean()),
        (SFT_SUM, lambda: -(logp * weights).sum()),
        (SFT_ROWS, lambda: row_means64(-logp, mask, clamp=True)),
        # With nothing masked in, any 0 / 0 gives nan: that case names only SFT_EMPTY.
        (SFT_ROWS, lambda: row_means64(-logp, mask, clamp=False) if mask.any() else None),
        (SFT_INVERTED, lambda: masked_mean64(-logp, ~mask)),
        (SFT_SHIFT, lambda: sft_truth(x[:, :-1], targets[:, 1:], mask[:, 1:])),
        (SFT_SHIFT, lambda: sft_truth(x[:, :-1], targets[:, 1:], mask[:, :-1])),
        (SFT_PROBS, lambda: masked_mean64(-logp.exp(), mask)),
        (SFT_SIGN, lambda: masked_mean64(logp, mask)),
        (SFT_RAW, lambda: masked_mean64(-x.gather(-1, targets.unsqueeze(-1)).squeeze(-1),
                                        mask)),
        (SFT_AXIS, lambda: masked_mean64(
            -x.log_softmax(1).gather(-1, targets.unsqueeze(-1)).squeeze(-1), mask)),
        (SFT_EMPTY, lambda: torch.tensor(math.nan, dtype=torch.float64)
         if not mask.any() else None),
        (SFT_LOG_SOFTMAX, lambda: torch.tensor(math.inf) if underflows else None),
        (SFT_LOG_SOFTMAX, lambda: torch.tensor(math.nan) if underflows else None),
        (SFT_PER_TOKEN, lambda: -logp),
        (SFT_PER_TOKEN, lambda: -logp * weights),
    ]


def check_masked_sft_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: SftCase) -> str:
        logits = c.logits.clone().requires_grad_(True)
        got = tensor_answer(call(fn, logits, c.targets.clone(), c.mask.clone()),
                            "masked_sft_loss's result")
        compare(got, sft_truth(c.logits, c.targets, c.mask), c.label,
                sft_variants(c.logits, c.targets, c.mask), "masked_sft_loss")
        if c.mask.any():  # an all-False mask may return a constant 0
            gradients(got, {"logits": logits})
        return c.label

    return run_check("masked_sft_loss", lambda: run_cases(sft_cases(), one_case))


# -- bradley_terry_loss -----------------------------------------------------------------------

def bt_cases() -> list[tuple[str, Tensor, Tensor]]:
    margins = torch.tensor([-30.0, -12.0, -1.0, 0.5, 9.0, 30.0])
    offsets = randn(6, seed=102)
    small_and_large = torch.cat([randn(3, seed=103, scale=1e-3), randn(3, seed=104,
                                                                       scale=10.0)])
    return [
        ("8 pairs of rewards around 0", randn(8, seed=100), randn(8, seed=101)),
        ("batch of 1", torch.tensor([0.3]), torch.tensor([1.1])),
        ("margins from -30 to 30", offsets + margins / 2, offsets - margins / 2),
        ("rewards of very different scale (about 1e-3 and about 10)", small_and_large,
         torch.cat([randn(3, seed=105, scale=1e-3), randn(3, seed=106, scale=10.0)])),
        ("both rewards shifted by +50 (only the difference counts)",
         randn(5, seed=107) + 50, randn(5, seed=108) + 50),
        ("float64 rewards", randn(6, seed=109, dtype=torch.float64),
         randn(6, seed=110, dtype=torch.float64)),
    ]


def bt_truth(chosen: Tensor, rejected: Tensor) -> Tensor:
    return -F.logsigmoid(chosen.double() - rejected.double()).mean()


BT_SIGMOID = ("you used sigmoid(margin) itself; the loss is minus its log: "
              "-log sigmoid(r_chosen - r_rejected)")
BT_SWAPPED = ("chosen and rejected are swapped: the margin is r_chosen - r_rejected, and the "
              "loss falls as the chosen reward rises")
BT_SUM = "you summed over the pairs; take the mean"
BT_SIGN = ("the sign is flipped: the loss is minus the log-likelihood, "
           "-log sigmoid(r_chosen - r_rejected)")
BT_SEPARATE = ("you scored each reward on its own (as if each were a label); Bradley-Terry "
               "uses only the difference r_chosen - r_rejected")
BT_HINGE = ("that is a hinge (margin ranking) loss; Bradley-Terry's is the log-likelihood "
            "-log sigmoid(r_chosen - r_rejected)")
BT_PER_PAIR = "you returned one loss per pair; return their mean, a 0-dim tensor"


def bt_variants(chosen: Tensor, rejected: Tensor) -> Variants:
    c, r = chosen.double(), rejected.double()
    m = c - r
    return [
        (BT_SIGMOID, lambda: -torch.sigmoid(m).mean()),
        (BT_SIGMOID, lambda: (1 - torch.sigmoid(m)).mean()),
        (BT_SWAPPED, lambda: -F.logsigmoid(-m).mean()),
        (BT_SUM, lambda: -F.logsigmoid(m).sum()),
        (BT_SIGN, lambda: F.logsigmoid(m).mean()),
        (BT_SEPARATE, lambda: -(F.logsigmoid(c) + F.logsigmoid(-r)).mean()),
        (BT_HINGE, lambda: torch.relu(1 - m).mean()),
        (BT_PER_PAIR, lambda: -F.logsigmoid(m)),
    ]


def check_bradley_terry_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: tuple[str, Tensor, Tensor]) -> str:
        label, chosen, rejected = case
        c = chosen.clone().requires_grad_(True)
        r = rejected.clone().requires_grad_(True)
        got = tensor_answer(call(fn, c, r), "bradley_terry_loss's result")
        compare(got, bt_truth(chosen, rejected), label, bt_variants(chosen, rejected),
                "bradley_terry_loss")
        gradients(got, {"chosen": c, "rejected": r})
        return label

    return run_check("bradley_terry_loss", lambda: run_cases(bt_cases(), one_case))


# -- normalize_rewards ------------------------------------------------------------------------

@dataclass
class NormCase:
    label: str
    rewards: Tensor
    mean: float | Tensor | None = None
    std: float | Tensor | None = None
    eps: float | None = None  # None: leave the default

    def args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if self.mean is not None:
            kwargs["mean"] = self.mean
        if self.std is not None:
            kwargs["std"] = self.std
        if self.eps is not None:
            kwargs["eps"] = self.eps
        return (self.rewards.clone(),), kwargs


def norm_cases() -> list[NormCase]:
    spread = randn(8, seed=200, scale=3.0) + 1.0
    return [
        NormCase("8 rewards, mean and std from the batch", spread),
        NormCase("mean=0.3 and std=2.0 given", spread, mean=0.3, std=2.0),
        NormCase("only mean=-1.5 given (std from the batch)", randn(6, seed=201) + 2, -1.5),
        NormCase("only std=0.7 given (mean from the batch)", randn(6, seed=202) + 2, std=0.7),
        NormCase("mean=0.0 given: zero is a constant, not a missing value",
                 randn(6, seed=203) + 3, mean=0.0, std=1.5),
        NormCase("mean and std given as 0-dim tensors", randn(5, seed=204),
                 torch.tensor(0.25), torch.tensor(0.8)),
        NormCase("eps=0.5, mean and std from the batch", randn(7, seed=205), eps=0.5),
        NormCase("eps=0.25 with std=0.5 and mean=1.0 given", randn(7, seed=206), 1.0, 0.5,
                 0.25),
        NormCase("batch of 1 (its std is 0: the result is 0, not nan)", torch.tensor([2.5])),
        NormCase("all rewards equal", torch.full((4,), 2.5)),
        NormCase("rewards spanning 1e-3 to 1e3", torch.cat([randn(4, seed=207, scale=1e-3),
                                                            randn(4, seed=208, scale=1e3)])),
        NormCase("float64 rewards", randn(6, seed=209, dtype=torch.float64, scale=2.0)),
    ]


def _stats64(c: NormCase) -> tuple[Tensor, Tensor, Tensor, float]:
    r = c.rewards.double()
    mean = r.mean() if c.mean is None else torch.as_tensor(c.mean).double()
    std = r.std(correction=0) if c.std is None else torch.as_tensor(c.std).double()
    return r, mean, std, 1e-8 if c.eps is None else c.eps


def norm_truth(c: NormCase) -> Tensor:
    r, mean, std, eps = _stats64(c)
    return (r - mean) / (std + eps)


N_UNBIASED = ("you used the sample std (dividing by n - 1); the contract is the population "
              "std: divide by n (std(correction=0))")
N_EPS_SQRT = ("eps went inside the square root; add it to the std: "
              "(rewards - mean) / (std + eps)")
N_EPS_IGNORED = ("eps is missing: divide by std + eps (equal rewards would give 0 / 0 = nan)")
N_MEAN_IGNORED = ("the given mean was ignored: use the constants you are passed, and measure "
                  "from rewards only what is None")
N_ZERO_MEAN = ("mean=0.0 was treated as missing: test `mean is None`, not `not mean` (0.0 is a "
               "valid constant)")
N_STD_IGNORED = ("the given std was ignored: use the constants you are passed, and measure "
                 "from rewards only what is None")
N_BOTH_IGNORED = ("the given mean and std were both ignored: use the constants you are "
                  "passed, and measure from rewards only what is None")
N_CENTER_ONLY = "you only subtracted the mean; divide by (std + eps) too"
N_NOT_CENTERED = "you only divided by the std; subtract the mean first"
N_VARIANCE = "you divided by the variance; divide by the std (its square root)"
N_IN_PLACE = ("you changed the caller's rewards in place (rewards -= ...); compute a new "
              "tensor and leave the input as it was")


def norm_variants(c: NormCase) -> Variants:
    r, mean, std, eps = _stats64(c)
    batch_mean, batch_std = r.mean(), r.std(correction=0)
    found: list[tuple[str, Callable[[], Tensor | None]]] = [
        (N_EPS_SQRT, lambda: (r - mean) / (std.square() + eps).sqrt()),
        (N_EPS_IGNORED, lambda: (r - mean) / std),
        (N_CENTER_ONLY, lambda: r - mean),
        (N_NOT_CENTERED, lambda: r / (std + eps)),
        (N_VARIANCE, lambda: (r - mean) / (std.square() + eps)),
    ]
    if c.std is None:
        found.append((N_UNBIASED, lambda: (r - mean) / (r.std(correction=1) + eps)))
    if c.mean is not None:
        message = N_ZERO_MEAN if float(c.mean) == 0.0 else N_MEAN_IGNORED
        found.append((message, lambda: (r - batch_mean) / (std + eps)))
    if c.std is not None:
        found.append((N_STD_IGNORED, lambda: (r - mean) / (batch_std + eps)))
    if c.mean is not None and c.std is not None:
        found.append((N_BOTH_IGNORED, lambda: (r - batch_mean) / (batch_std + eps)))
    return found


def check_normalize_rewards(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: NormCase) -> str:
        args, kwargs = c.args()
        got = call(fn, *args, **kwargs)
        if not torch.equal(args[0], c.rewards):
            raise Mismatch(N_IN_PLACE, [f"case: {c.label}"])
        got = tensor_answer(got, "normalize_rewards's result")
        compare(got, norm_truth(c), c.label, norm_variants(c), "normalize_rewards")
        return c.label

    return run_check("normalize_rewards", lambda: run_cases(norm_cases(), one_case))

