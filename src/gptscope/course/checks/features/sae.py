"""Checks for lesson 12: toy_model_forward, sae_loss, sae_training_step.

The right answers are the library's in float64: ``ToySuperpositionModel`` and its loss,
``gptscope.sae.sae_loss``, and a ``ReLUSAE`` trained one step as ``SAETrainer`` does
(remove the gradient along each decoder row, step, renormalise the rows). Losses must keep
their gradients, which are compared too; an SAE step is checked directly for what must hold
whatever the values (the same tensors, updated, rows at unit norm) before its parameters are
compared with the truth's.
"""

# The variant lambdas are called by compare() in the same case that makes them, so the
# late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._answers import gradients, tensor_answer, tuple_answer
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    close,
    compare,
    run_cases,
    run_check,
)
from gptscope.course.checks.features._shared import number_answer
from gptscope.course.result import CheckResult
from gptscope.interp.superposition import ToyModelConfig, ToySuperpositionModel
from gptscope.sae import ReLUSAE, ReLUSAEConfig, sae_loss

# -- lesson 12: sae_loss ----------------------------------------------------------------------

@dataclass
class SaeLossCase:
    label: str
    x: Tensor
    x_hat: Tensor
    acts: Tensor
    coefficient: float
    norms: Tensor | None = None  # None: decoder_norms left out of the call


def sae_loss_cases() -> list[SaeLossCase]:
    def case(label: str, batch: int, d_in: int, d_sae: int, coefficient: float, seed: int,
             negative: bool = False, norms: bool = False,
             dtype: torch.dtype = torch.float32) -> SaeLossCase:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, d_in, generator=g, dtype=torch.float64)
        x_hat = x + 0.3 * torch.randn(batch, d_in, generator=g, dtype=torch.float64)
        acts = torch.randn(batch, d_sae, generator=g, dtype=torch.float64)
        acts = acts - 0.3 if negative else torch.relu(acts)
        scales = 0.3 + 2 * torch.rand(d_sae, generator=g, dtype=torch.float64)
        return SaeLossCase(label, x.to(dtype), x_hat.to(dtype), acts.to(dtype), coefficient,
                           scales.to(dtype) if norms else None)

    return [
        case("batch=8, d_in=6, d_sae=24, l1_coefficient=0.01", 8, 6, 24, 1e-2, 500),
        case("negative activations, batch=32, d_in=16, d_sae=64, l1_coefficient=0.5", 32, 16,
             64, 0.5, 501, negative=True),
        case("batch of 1", 1, 5, 10, 0.1, 502),
        case("decoder_norms given, negative activations, l1_coefficient=0.2", 8, 6, 12, 0.2,
             503, negative=True, norms=True),
        case("decoder_norms given, float64", 6, 4, 9, 0.3, 504, norms=True,
             dtype=torch.float64),
        case("l1_coefficient=0", 4, 3, 6, 0.0, 505),
    ]


def sae_loss_truth(x: Tensor, x_hat: Tensor, acts: Tensor, coefficient: float,
                   norms: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """The library's ``gptscope.sae.sae_loss``, in float64."""
    return sae_loss(x.double(), x_hat.double(), acts.double(), coefficient,
                    decoder_norms=None if norms is None else norms.double())


MSE_D_IN = ("mse averaged over d_in too; sum the squared error over d_in, then average "
            "over the batch")
MSE_BATCH_SUM = "mse summed over the batch; average over the batch"
MSE_NOT_SQUARED = "mse is not squared"
MSE_NORM = ("mse took each row's norm ||x_hat - x||; use its square, the summed squared error "
            "over d_in")
L1_SQUARED = "l1 uses squares; the L1 norm is the sum of absolute values"
L1_NO_ABS = "l1 without abs(): negative activations must count as positive"
L1_RELU = ("l1 dropped the negative activations (relu or clamp); |acts| counts them as "
           "positive")
L1_BATCH_SUM = "l1 summed over the batch; average over the batch"
L1_FEATURE_MEAN = "l1 averaged over features too; sum over features, average over the batch"
L1_SCALED = ("l1 came back multiplied by l1_coefficient: return the raw l1 and apply the "
             "coefficient in the loss only")
L1_NORMS_IGNORED = ("decoder_norms was ignored: weight each feature's |act| by its decoder norm "
                    "before summing")
L1_NORMS_SQUARED = "weight each |act| by its decoder norm, not by the squared norm"
L1_NORMS_DIVIDED = "multiply each |act| by its decoder norm; you divided"
LOSS_NO_COEFF = "loss forgot the coefficient: loss = mse + l1_coefficient * l1"
LOSS_COEFF_ON_MSE = ("the coefficient multiplies the wrong term: loss = mse + l1_coefficient * "
                     "l1")
LOSS_MINUS = "the sparsity penalty is added: loss = mse + l1_coefficient * l1, not minus"
SAE_LOSS_GRAD = ("the loss has the right value but the wrong gradient (a .detach() somewhere, "
                 "or torch.tensor(...) around a result?)")


def sae_loss_variants(c: SaeLossCase) -> dict[str, Variants]:
    x, x_hat, acts = c.x.double(), c.x_hat.double(), c.acts.double()
    norms = None if c.norms is None else c.norms.double()
    weight = 1.0 if norms is None else norms
    err = (x_hat - x).pow(2)
    magnitudes = acts.abs() * weight
    loss, mse, l1 = sae_loss_truth(c.x, c.x_hat, c.acts, c.coefficient, c.norms)
    mse_variants: Variants = [
        (MSE_D_IN, lambda: err.mean()), (MSE_BATCH_SUM, lambda: err.sum()),
        (MSE_NOT_SQUARED, lambda: (x_hat - x).abs().sum(-1).mean()),
        (MSE_NORM, lambda: (x_hat - x).norm(dim=-1).mean()),
    ]
    l1_variants: Variants = [
        (L1_SQUARED, lambda: (acts.pow(2) * weight).sum(-1).mean()),
        (L1_NO_ABS, lambda: (acts * weight).sum(-1).mean()),
        (L1_RELU, lambda: (acts.clamp(min=0) * weight).sum(-1).mean()),
        (L1_BATCH_SUM, lambda: magnitudes.sum()),
        (L1_FEATURE_MEAN, lambda: magnitudes.mean()),
        (L1_SCALED, lambda: c.coefficient * l1),
    ]
    if norms is not None:
        l1_variants += [
            (L1_NORMS_IGNORED, lambda: acts.abs().sum(-1).mean()),
            (L1_NORMS_SQUARED, lambda: (acts.abs() * norms.pow(2)).sum(-1).mean()),
            (L1_NORMS_DIVIDED, lambda: (acts.abs() / norms).sum(-1).mean()),
        ]
    loss_variants: Variants = [
        (LOSS_NO_COEFF, lambda: mse + l1),
        (LOSS_COEFF_ON_MSE, lambda: c.coefficient * mse + l1),
        (LOSS_MINUS, lambda: mse - c.coefficient * l1),
    ]
    return {"loss": loss_variants, "mse": mse_variants, "l1": l1_variants}


def _sae_loss_gradient(c: SaeLossCase, loss: Tensor, x_hat: Tensor, acts: Tensor) -> None:
    want_hat = c.x_hat.double().requires_grad_(True)
    want_acts = c.acts.double().requires_grad_(True)
    truth = sae_loss_truth(c.x, want_hat, want_acts, c.coefficient, c.norms)[0]
    want = torch.autograd.grad(truth, [want_hat, want_acts])
    grads = gradients(loss, {"x_hat": x_hat, "acts": acts})
    # |a| has no derivative at a = 0, where any subgradient in [-1, 1] is right.
    defined = [torch.ones_like(c.x_hat, dtype=torch.bool), c.acts != 0]
    for (name, got), right, where in zip(grads.items(), want, defined):
        got = torch.zeros_like(right) if got is None else got
        if not close(got[where], right[where], atol=1e-6, rtol=1e-4):
            raise Mismatch(SAE_LOSS_GRAD, [f"case: {c.label}", f"d loss / d {name} differs"])


SAE_LOSS_PARTS = ("loss", "mse", "l1")


def check_sae_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: SaeLossCase) -> str:
        x_hat = c.x_hat.clone().requires_grad_(True)
        acts = c.acts.clone().requires_grad_(True)
        kwargs = {} if c.norms is None else {"decoder_norms": c.norms.clone()}
        found = tuple_answer(call(fn, c.x.clone(), x_hat, acts, c.coefficient, **kwargs),
                             SAE_LOSS_PARTS, "sae_loss")
        parts = {name: tensor_answer(value, f"{name} (the {place} value)") for name, value,
                 place in zip(SAE_LOSS_PARTS, found, ("first", "second", "third"))}
        truth = dict(zip(SAE_LOSS_PARTS, sae_loss_truth(c.x, c.x_hat, c.acts, c.coefficient,
                                                        c.norms)))
        variants = sae_loss_variants(c)
        for key in ("mse", "l1", "loss"):
            compare(parts[key], truth[key], f"{c.label}, {key}", variants[key], key,
                    atol=1e-5)
        _sae_loss_gradient(c, parts["loss"], x_hat, acts)
        return c.label

    return run_check("sae_loss", lambda: run_cases(sae_loss_cases(), one_case))


# -- lesson 12: toy_model_forward -------------------------------------------------------------

@dataclass
class ToyCase:
    label: str
    x: Tensor  # [batch, n_instances, n_features]
    W: Tensor  # [n_instances, n_hidden, n_features]
    b: Tensor  # [n_instances, n_features]
    importance: Tensor  # [n_instances, n_features]


def toy_cases() -> list[ToyCase]:
    def case(label: str, batch: int, n_inst: int, n_hidden: int, n_feat: int, seed: int,
             probability: float = 0.3, bias: float = 0.0, dtype: torch.dtype = torch.float32
             ) -> ToyCase:
        g = torch.Generator().manual_seed(seed)
        shape = (batch, n_inst, n_feat)
        x = torch.rand(shape, generator=g) * (torch.rand(shape, generator=g) < probability)
        W = 0.6 * torch.randn(n_inst, n_hidden, n_feat, generator=g)
        b = 0.2 * torch.randn(n_inst, n_feat, generator=g) + bias
        decay = 0.9 ** torch.arange(n_feat, dtype=torch.float32)
        importance = decay * (0.5 + torch.rand(n_inst, 1, generator=g))
        return ToyCase(label, *(t.to(dtype) for t in (x, W, b, importance)))

    return [
        case("batch 4 == 4 instances, 6 features in 3 dimensions", 4, 4, 3, 6, 91),
        case("3 instances, 5 features in 2 dimensions, batch 16", 16, 3, 2, 5, 90),
        case("negative biases: the ReLU cuts some outputs", 12, 2, 2, 5, 92, bias=-0.3),
        case("one instance, dense features, float64", 8, 1, 3, 4, 93, probability=1.0,
             dtype=torch.float64),
    ]


def toy_truth(c: ToyCase, W: Tensor | None = None, b: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
    """(x_hat, loss) of the library's ``ToySuperpositionModel``, in float64; W and b, when
    given, replace its parameters (to take gradients)."""
    n_inst, n_hidden, n_feat = c.W.shape
    model = ToySuperpositionModel(ToyModelConfig(n_features=n_feat, n_hidden=n_hidden,
                                                 n_instances=n_inst)).double()
    with torch.no_grad():
        model.importance.copy_(c.importance)
    weights = {"W": c.W.double() if W is None else W,
               "b_final": c.b.double() if b is None else b}
    x = c.x.double()
    out = torch.func.functional_call(model, weights, (x,))
    return out, model.loss(x, out)


TOY_NO_RELU = "x_hat has no ReLU: x_hat = ReLU(W^T W x + b)"
TOY_RELU_BEFORE_BIAS = "the bias goes inside the ReLU: ReLU(W^T W x + b), not ReLU(W^T W x) + b"
TOY_NO_BIAS = "the bias b is missing: x_hat = ReLU(W^T W x + b)"
TOY_SUMMED_INSTANCES = ("your einsum summed over the instances: each instance's hidden vector "
                        "comes from its own input only, 'ihf,bif->bih'")
TOY_BATCH_AS_INSTANCE = ("sample k was run through instance k's W: a broadcast matmul of x "
                         "[batch, instances, features] with W pairs the batch with the "
                         "instances; use einsum('ihf,bif->bih', W, x)")
TOY_LOSS_NO_IMPORTANCE = "the loss ignores importance: weight each feature's squared error by it"
TOY_LOSS_IMPORTANCE_SQUARED = ("importance multiplies the squared error, importance * (x - "
                               "x_hat)^2, not (importance * (x - x_hat))^2")
TOY_LOSS_NOT_SQUARED = "the loss must square the error: importance * (x - x_hat)^2"
TOY_LOSS_FEATURE_MEAN = ("the loss averaged over features: sum over features, average over "
                         "the batch, sum over instances")
TOY_LOSS_INSTANCE_MEAN = ("the loss averaged over instances: sum them, so each instance's "
                          "gradient is its own (and does not shrink as instances are added)")
TOY_LOSS_ALL_MEAN = ("the loss is a mean over everything: sum over features and instances, "
                     "average over the batch only")
TOY_LOSS_BATCH_SUM = "the loss summed over the batch: average over it"
TOY_LOSS_PER_INSTANCE = "return one loss, summed over instances: a 0-dim tensor, not [n_instances]"
TOY_GRAD = ("the loss has the right value but the wrong gradient for W or b (a .detach(), or "
            "torch.tensor(...) around a result?)")


def toy_variants(c: ToyCase) -> tuple[Variants, Variants]:
    x, W, b, imp = c.x.double(), c.W.double(), c.b.double(), c.importance.double()
    pre = torch.einsum("ihf,bih->bif", W, torch.einsum("ihf,bif->bih", W, x))
    summed = torch.einsum("ihf,bh->bif", W, torch.einsum("ihf,bif->bh", W, x))
    paired = None
    if x.shape[0] == x.shape[1]:
        paired = torch.einsum("khf,kih->kif", W, torch.einsum("khf,kif->kih", W, x)) + b
    x_hat = torch.relu(pre + b)
    err = (x - x_hat).pow(2)
    hat_variants: Variants = [
        (TOY_NO_RELU, lambda: pre + b), (TOY_RELU_BEFORE_BIAS, lambda: torch.relu(pre) + b),
        (TOY_NO_BIAS, lambda: torch.relu(pre)), (TOY_SUMMED_INSTANCES,
                                                 lambda: torch.relu(summed + b)),
        (TOY_BATCH_AS_INSTANCE, lambda: torch.relu(paired) if paired is not None else None),
    ]
    loss_variants: Variants = [
        (TOY_LOSS_NO_IMPORTANCE, lambda: err.sum(-1).mean(0).sum()),
        (TOY_LOSS_IMPORTANCE_SQUARED, lambda: (imp * (x - x_hat)).pow(2).sum(-1).mean(0).sum()),
        (TOY_LOSS_NOT_SQUARED, lambda: (imp * (x - x_hat).abs()).sum(-1).mean(0).sum()),
        (TOY_LOSS_FEATURE_MEAN, lambda: (imp * err).mean(-1).mean(0).sum()),
        (TOY_LOSS_INSTANCE_MEAN, lambda: (imp * err).sum(-1).mean(0).mean()),
        (TOY_LOSS_ALL_MEAN, lambda: (imp * err).mean()),
        (TOY_LOSS_BATCH_SUM, lambda: (imp * err).sum()),
        (TOY_LOSS_PER_INSTANCE, lambda: (imp * err).sum(-1).mean(0)),
    ]
    return hat_variants, loss_variants


def _toy_gradient(c: ToyCase, loss: Tensor, W: Tensor, b: Tensor) -> None:
    W64, b64 = c.W.double().requires_grad_(True), c.b.double().requires_grad_(True)
    want = torch.autograd.grad(toy_truth(c, W64, b64)[1], [W64, b64])
    grads = gradients(loss, {"W": W, "b": b})
    for (name, got), right in zip(grads.items(), want):
        got = torch.zeros_like(right) if got is None else got
        if not close(got, right, atol=1e-6, rtol=1e-4):
            raise Mismatch(TOY_GRAD, [f"case: {c.label}", f"d loss / d {name} differs"])


def check_toy_model_forward(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: ToyCase) -> str:
        W, b = c.W.clone().requires_grad_(True), c.b.clone().requires_grad_(True)
        found = tuple_answer(call(fn, c.x.clone(), W, b, c.importance.clone()),
                             ("x_hat", "loss"), "toy_model_forward")
        x_hat = tensor_answer(found[0], "x_hat (the first value)")
        loss = tensor_answer(found[1], "the loss (the second value)")
        with torch.no_grad():
            want_hat, want_loss = toy_truth(c)
        hat_variants, loss_variants = toy_variants(c)
        compare(x_hat, want_hat, c.label, hat_variants, "x_hat", atol=1e-5,
                axes=("batch", "instance", "feature"))
        compare(loss, want_loss, c.label, loss_variants, "the loss", atol=1e-5)
        _toy_gradient(c, loss, W, b)
        return c.label

    return run_check("toy_model_forward", lambda: run_cases(toy_cases(), one_case))


# -- lesson 12: sae_training_step -------------------------------------------------------------

SAE_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass
class SaeStepCase:
    label: str
    params: dict[str, Tensor]  # the starting point, W_dec's rows at unit norm
    batches: list[Tensor]  # one [batch, d_in] per step
    optimizer: str  # "sgd" or "adam"
    lr: float
    l1_coefficient: float

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        kind = torch.optim.SGD if self.optimizer == "sgd" else torch.optim.Adam
        return kind(params, lr=self.lr)

    def fresh_params(self) -> dict[str, Tensor]:
        return {k: v.clone().requires_grad_(True) for k, v in self.params.items()}


def sae_step_cases() -> list[SaeStepCase]:
    def case(label: str, steps: int, optimizer: str, lr: float, l1: float, seed: int,
             dtype: torch.dtype = torch.float32) -> SaeStepCase:
        g = torch.Generator().manual_seed(seed)
        d_in, d_sae, n_true = 6, 12, 8
        W_dec = F.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
        params = {"W_enc": 0.9 * W_dec.T + 0.1 * torch.randn(d_in, d_sae, generator=g),
                  "b_enc": 0.1 * torch.randn(d_sae, generator=g) - 0.05, "W_dec": W_dec,
                  "b_dec": 0.5 * torch.randn(d_in, generator=g)}
        true = torch.randn(n_true, d_in, generator=g)
        # Sparse combinations of true directions around a mean far from 0, so subtracting
        # b_dec before encoding matters.
        batches = [((torch.rand(32, n_true, generator=g) < 0.3) * torch.rand(
            32, n_true, generator=g)) @ true + 1.0 for _ in range(steps)]
        return SaeStepCase(label, {k: v.to(dtype) for k, v in params.items()},
                           [x.to(dtype) for x in batches], optimizer, lr, l1)

    return [
        case("SGD (lr 0.05), three steps, l1_coefficient 0.1", 3, "sgd", 0.05, 0.1, 80),
        case("Adam (lr 0.01), two steps, l1_coefficient 0.3, float64", 2, "adam", 0.01, 0.3,
             81, torch.float64),
        case("one SGD step (lr 0.1), l1_coefficient 0.5", 1, "sgd", 0.1, 0.5, 82),
    ]


def sae_step_truth(c: SaeStepCase) -> tuple[dict[str, Tensor], list[float]]:
    """The library's ``ReLUSAE`` trained as ``SAETrainer`` does (remove_parallel_grad_,
    step, normalize_decoder_), in float64: the parameters after, and each step's loss."""
    d_in, d_sae = c.params["W_enc"].shape
    sae = ReLUSAE(ReLUSAEConfig(d_in=d_in, d_sae=d_sae)).double()
    with torch.no_grad():
        for name in SAE_PARAMS:
            getattr(sae, name).copy_(c.params[name])
    opt = c.make_optimizer([getattr(sae, name) for name in SAE_PARAMS])
    losses = []
    with torch.enable_grad():
        for x in c.batches:
            opt.zero_grad()
            loss = sae.training_forward(x.double(), l1_coefficient=c.l1_coefficient).loss
            loss.backward()
            sae.remove_parallel_grad_()
            opt.step()
            sae.normalize_decoder_()
            losses.append(loss.item())
    return {name: getattr(sae, name).detach().clone() for name in SAE_PARAMS}, losses


def sae_steps(c: SaeStepCase, parallel: int | None = -1, subtract_b_dec: bool = True,
              l1_on_pre: bool = False, zero_grad: bool = True) -> dict[str, Tensor]:
    """The recipe in float64 with one thing changed, to name a mistake: ``parallel`` is the
    axis of W_dec whose direction is removed from the gradient (None: nothing removed)."""
    p = {k: v.double().clone().requires_grad_(True) for k, v in c.params.items()}
    opt = c.make_optimizer(p.values())
    for x in c.batches:
        x = x.double()
        if zero_grad:
            opt.zero_grad()
        pre = ((x - p["b_dec"]) if subtract_b_dec else x) @ p["W_enc"] + p["b_enc"]
        acts = torch.relu(pre)
        x_hat = acts @ p["W_dec"] + p["b_dec"]
        penalty = (pre if l1_on_pre else acts).abs().sum(-1).mean()
        ((x_hat - x).pow(2).sum(-1).mean() + c.l1_coefficient * penalty).backward()
        with torch.no_grad():
            if parallel is not None:
                unit = F.normalize(p["W_dec"], dim=parallel)
                p["W_dec"].grad -= (p["W_dec"].grad * unit).sum(parallel, keepdim=True) * unit
            opt.step()
            p["W_dec"] /= p["W_dec"].norm(dim=-1, keepdim=True)
    return {k: v.detach() for k, v in p.items()}


SAE_NO_PARALLEL = ("the part of W_dec.grad parallel to each row was not removed before "
                   "optimizer.step(): grad_i -= (grad_i . w_i) w_i")
SAE_PARALLEL_COLUMNS = ("you removed the gradient's part along W_dec's columns: each *row* "
                        "[d_in] is a feature direction, so remove grad_i's part along row i")
SAE_NO_B_DEC = ("the encoder must see x - b_dec: subtract the decoder bias before encoding, "
                "acts = ReLU((x - b_dec) @ W_enc + b_enc)")
SAE_L1_PRE = ("the L1 penalty was taken on the pre-activations: penalise the activations "
              "after the ReLU (pass acts to sae_loss)")
SAE_NO_ZERO_GRAD = ("gradients piled up across steps: zero them (optimizer.zero_grad()) "
                    "before each backward")
SAE_ROWS_NOT_UNIT = ("after your step the rows of W_dec are not at unit norm: rescale each row "
                     "*after* optimizer.step(), W_dec /= W_dec.norm(dim=-1, keepdim=True), "
                     "under torch.no_grad()")
SAE_COLUMNS_UNIT = ("you normalised W_dec's columns (dim=0): each *row* [d_in] is a feature "
                    "direction, normalise along dim=-1")
SAE_NEW_TENSOR = ("params[{name!r}] is a new tensor after your step: update it in place "
                  "(under torch.no_grad(), W_dec /= ...), since the optimizer keeps updating "
                  "the tensor it was given")
SAE_NO_UPDATE = ("your step did not change the encoder or the biases: call loss.backward() "
                 "and then optimizer.step()")


def _after_step(params: dict[str, Tensor], given: dict[str, Tensor],
                before: dict[str, Tensor], label: str) -> None:
    """The checks one step must pass whatever the values: same tensors, updated, unit rows."""
    details = [f"case: {label}"]
    for name in SAE_PARAMS:
        if params.get(name) is not given[name]:
            raise Mismatch(SAE_NEW_TENSOR.format(name=name), details)
    if all(torch.equal(given[k].detach(), before[k]) for k in ("W_enc", "b_enc", "b_dec")):
        raise Mismatch(SAE_NO_UPDATE, details)
    W_dec = given["W_dec"].detach().double()
    if not torch.allclose(W_dec.norm(dim=-1), torch.ones(W_dec.shape[0],
                                                         dtype=torch.float64), atol=1e-4):
        columns = torch.allclose(W_dec.norm(dim=0), torch.ones(W_dec.shape[1],
                                                               dtype=torch.float64), atol=1e-4)
        norms = W_dec.norm(dim=-1)
        raise Mismatch(SAE_COLUMNS_UNIT if columns else SAE_ROWS_NOT_UNIT, details + [
            f"row norms from {norms.min().item():.4f} to {norms.max().item():.4f}"])


def sae_step_variants(c: SaeStepCase, name: str) -> Variants:
    runs: dict[str, dict[str, Tensor]] = {}

    def run(key: str, **change: Any) -> Tensor:
        if key not in runs:
            runs[key] = sae_steps(c, **change)
        return runs[key][name]

    return [
        (SAE_NO_PARALLEL, lambda: run("parallel", parallel=None)),
        (SAE_PARALLEL_COLUMNS, lambda: run("columns", parallel=0)),
        (SAE_NO_B_DEC, lambda: run("b_dec", subtract_b_dec=False)),
        (SAE_L1_PRE, lambda: run("pre", l1_on_pre=True)),
        (SAE_NO_ZERO_GRAD, lambda: run("zero_grad", zero_grad=False)
         if len(c.batches) > 1 else None),
    ]


def check_sae_training_step(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: SaeStepCase) -> str:
        params = c.fresh_params()
        given = dict(params)
        optimizer = c.make_optimizer(list(params.values()))
        losses = []
        for x in c.batches:
            before = {k: v.detach().clone() for k, v in given.items()}
            found = call(fn, params, x.clone(), optimizer, c.l1_coefficient)
            losses.append(number_answer(found, "sae_training_step's result (the loss)"))
            _after_step(params, given, before, c.label)
        want, want_losses = sae_step_truth(c)
        for name in ("W_dec", "W_enc", "b_enc", "b_dec"):
            compare(given[name], want[name], c.label, sae_step_variants(c, name),
                    f"{name} after the steps", atol=1e-5)
        compare(torch.tensor(losses, dtype=torch.float64), torch.tensor(want_losses),
                c.label, {}, "the losses your step returned (one per step, before it)",
                atol=1e-5)
        return c.label

    return run_check("sae_training_step", lambda: run_cases(sae_step_cases(), one_case))
