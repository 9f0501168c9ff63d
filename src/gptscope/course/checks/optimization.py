"""Checks for lesson 6b: Adam by hand, the noisy quadratic model under SGD and idealised Adam,
the best lr per batch size.

adam_step is replayed for several steps in float64 against ``torch.optim.Adam`` and
``torch.optim.AdamW`` with betas, eps and weight decay away from their defaults, so that
each mistake moves the trajectory. noisy_quadratic_loss is compared with a float64 replay of
the second-moment recursion (the Monte-Carlo agreement of that recursion is a test, not a
check: the check must be exact and quick). optimal_lr_by_batch gets the check's own loss
functions, one of them flat around its minimum, so ties and an ignored ``loss`` show.
adam_noisy_quadratic_loss is compared with its own float64 recursion on cases where the
squared mean gradient and the noise are of similar size, so a v without either shows (that
its best lr follows ``torch.optim.Adam``'s is a test).
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._answers import dict_answer
from gptscope.course.checks._common import Mismatch, call, compare, randn, run_cases, run_check
from gptscope.course.result import CheckResult

# -- adam_step --------------------------------------------------------------------------------

NO_BIAS_CORRECTION = ("no bias correction: divide m by 1 - beta1 ** t and v by 1 - beta2 ** t "
                      "(both start at 0, so the early moments are too small)")
WRONG_STEP = ("the bias correction uses the wrong step: t counts the steps taken including "
              "this one, so the first call uses t = 1 (add 1 before correcting)")
EPS_INSIDE = "eps is inside the square root: the denominator is sqrt(v_hat) + eps"
L2_DECAY = ("the weight decay is added to the gradient (L2, as Adam's weight_decay does): "
            "AdamW decays the weights themselves, p = p * (1 - lr * weight_decay), apart "
            "from the moments")
DECAY_NO_LR = "the weight decay is not scaled by lr: p = p * (1 - lr * weight_decay)"
DECAY_AFTER = ("the weight decay comes after the Adam update: decay p first, then subtract "
               "the update, as PyTorch does")
NOT_CARRIED = ("the moments are not carried across calls: start from the step, m and v of "
               "the state you are given, and return the updated ones")
BETAS_SWAPPED = ("the betas are swapped: beta1 = betas[0] averages the gradient, beta2 = "
                 "betas[1] its square")
V_OF_G = "v averages g, not g * g: the second moment is a running mean of the squared gradient"
NOT_IN_PLACE = ("the parameters you were given did not change: update them in place "
                "(p.mul_, p.sub_ or p -= ...), do not rebind the names or the list")

ADAM_CASES = [  # (label, lr, betas, eps, weight_decay, steps, grad scale, seed)
    ("Adam: lr=0.1, betas=(0.8, 0.95), eps=1e-3", 0.1, (0.8, 0.95), 1e-3, 0.0, 6, 1.0, 0),
    ("AdamW: lr=0.05, betas=(0.7, 0.9), eps=1e-2, weight_decay=0.3", 0.05, (0.7, 0.9), 1e-2,
     0.3, 6, 1.0, 1),
    ("AdamW: lr=0.2, betas=(0.85, 0.97), eps=1e-4, weight_decay=0.5, small gradients", 0.2,
     (0.85, 0.97), 1e-4, 0.5, 5, 0.05, 2),
]
SHAPES = [(3, 4), (5,)]


def _adam_inputs(steps: int, scale: float, seed: int) -> tuple[list[Tensor], list[list[Tensor]]]:
    """(the start params, one list of grads per step), float64 and seeded."""
    params = [randn(*s, seed=100 * seed + i, dtype=torch.float64) for i, s in enumerate(SHAPES)]
    grads = [[randn(*s, seed=100 * seed + 10 * (t + 1) + i, dtype=torch.float64, scale=scale)
              for i, s in enumerate(SHAPES)] for t in range(steps)]
    return params, grads


def _flat(params: list[Tensor]) -> Tensor:
    return torch.cat([p.detach().flatten() for p in params])


def torch_adam_trajectory(params0: list[Tensor], grads: list[list[Tensor]], lr: float,
                          betas: tuple[float, float], eps: float, weight_decay: float
                          ) -> Tensor:
    """[steps, n_entries]: the params after each step of torch.optim.AdamW (Adam when the
    decay is 0), the truth."""
    params = [p.clone().requires_grad_(True) for p in params0]
    kind = torch.optim.AdamW if weight_decay else torch.optim.Adam
    opt = kind(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    rows = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        rows.append(_flat(params))
    return torch.stack(rows)


def adam_replay(params0: list[Tensor], grads: list[list[Tensor]], lr: float,
                betas: tuple[float, float], eps: float, weight_decay: float,
                bias: int | None = 0, eps_inside: bool = False, decay: str = "decoupled",
                carry: str = "all", swap: bool = False, v_of_g: bool = False) -> Tensor:
    """[steps, n_entries]: the trajectory of one mistake. ``bias``: the offset of the step
    used in the correction (None: no correction); ``decay``: decoupled, l2, no_lr or after;
    ``carry``: all, step (moments reset each call) or none (a fresh state each call)."""
    b1, b2 = (betas[1], betas[0]) if swap else betas
    params = [p.clone() for p in params0]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    t, rows = 0, []
    for step_grads in grads:
        t = t + 1 if carry != "none" else 1
        if carry != "all":
            m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
        for i, (p, g) in enumerate(zip(params, step_grads)):
            if decay == "l2":
                g = g + weight_decay * p
            elif decay in ("decoupled", "no_lr"):
                p.mul_(1 - (lr if decay == "decoupled" else 1.0) * weight_decay)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * (g if v_of_g else g * g)
            k = t + (bias or 0)
            m_hat = m[i] if bias is None else m[i] / (1 - b1 ** k)
            v_hat = v[i] if bias is None else v[i] / (1 - b2 ** k)
            denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
            p.sub_(lr * m_hat / denom)
            if decay == "after":
                p.mul_(1 - lr * weight_decay)
        rows.append(_flat(params))
    return torch.stack(rows)


def _adam_mistakes(args: tuple) -> list[tuple[str, Callable[[], Tensor]]]:
    changes = [(NO_BIAS_CORRECTION, {"bias": None}), (WRONG_STEP, {"bias": -1}),
               (WRONG_STEP, {"bias": 1}), (EPS_INSIDE, {"eps_inside": True}),
               (L2_DECAY, {"decay": "l2"}), (DECAY_NO_LR, {"decay": "no_lr"}),
               (DECAY_AFTER, {"decay": "after"}), (NOT_CARRIED, {"carry": "step"}),
               (NOT_CARRIED, {"carry": "none"}), (BETAS_SWAPPED, {"swap": True}),
               (V_OF_G, {"v_of_g": True})]
    return [(message, lambda kw=kw: adam_replay(*args, **kw)) for message, kw in changes]


def _run_learner_adam(fn: Callable[..., Any], params0: list[Tensor],
                      grads: list[list[Tensor]], lr: float, betas: tuple[float, float],
                      eps: float, weight_decay: float, case: str) -> tuple[Tensor, list]:
    """(the learner's trajectory [steps, n_entries], the 'step' of each returned state)."""
    params = [p.clone() for p in params0]
    state: Any = {}
    rows, steps = [], []
    for t, step_grads in enumerate(grads, start=1):
        out = call(fn, list(params), [g.clone() for g in step_grads], state, lr, betas, eps,
                   weight_decay)
        state = dict_answer(out, ("step", "m", "v"), "adam_step")
        if t == 1 and torch.equal(_flat(params), _flat(params0)):
            raise Mismatch(NOT_IN_PLACE, [f"case: {case}"])
        step = state["step"]
        steps.append(step.item() if isinstance(step, Tensor) and step.numel() == 1 else step)
        rows.append(_flat(params))
    return torch.stack(rows), steps


def _check_steps(steps: list, case: str) -> None:
    """The state's 'step' after each call must count the calls (checked after the params,
    whose mistakes say more)."""
    for t, step in enumerate(steps, start=1):
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step != t:
            raise Mismatch(f"after {t} call(s) the state's 'step' is {step!r}: it counts the "
                           "steps taken, this one included (an int)", [f"case: {case}"])


def check_adam_step(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, lr, betas, eps, weight_decay, steps, scale, seed = spec
        params0, grads = _adam_inputs(steps, scale, seed)
        args = (params0, grads, lr, betas, eps, weight_decay)
        want = torch_adam_trajectory(*args)
        got, counted = _run_learner_adam(fn, *args, case)
        compare(got, want, f"{case}, {steps} steps", _adam_mistakes(args),
                what="the parameters after each step", atol=1e-9, rtol=1e-7,
                axes=("step", "entry"))
        _check_steps(counted, case)
        return f"{case}: {steps} steps match torch.optim"
    return run_check("adam_step", lambda: run_cases(ADAM_CASES, one_case))


# -- noisy_quadratic_loss ---------------------------------------------------------------------

NOISE_NOT_DIVIDED = ("the noise variance is not divided by the batch size: a batch averages "
                     "batch_size independent gradients, so its variance is c / batch_size")
NOT_SQUARED = ("(1 - lr * h) multiplies the second moment unsquared: x shrinks by "
               "(1 - lr * h), so x ** 2 shrinks by (1 - lr * h) ** 2")
NO_LR2 = ("the noise term lacks lr ** 2: the step multiplies the noise by lr, so each step "
          "adds lr ** 2 * c / batch_size to the second moment")
OFF_BY_ONE = ("off by one in the number of steps: after `steps` steps the recursion has run "
              "exactly `steps` times (steps = 0 gives the loss at x0)")
NO_HALF = "the loss lacks its 1/2: L = 1/2 * sum_i h_i * s_i"
NOT_SUMMED = "return the sum over coordinates, one 0-dim tensor, not a value per coordinate"
AVERAGED = "the loss averages over the coordinates: it is their sum, 1/2 * sum_i h_i * s_i"
BAD_START = "the second moment starts at x0 ** 2 (E[x ** 2] at the fixed start x0)"
NO_NOISE = ("the noise is left out: each step adds lr ** 2 * c / batch_size to the second "
            "moment, which is what the batch size changes")

NQM_CASES = [  # (h, c, x0, lr, batch_size, steps)
    ([1.0, 0.5, 0.2, 0.05], [2.0, 1.0, 0.5, 0.3], [1.0, -2.0, 0.5, 3.0], 0.3, 8, 20),
    ([1.0, 0.5, 0.2, 0.05], [2.0, 1.0, 0.5, 0.3], [1.0, -2.0, 0.5, 3.0], 0.1, 4, 0),
    ([2.0, 0.7, 0.1], [0.5, 3.0, 1.0], [-1.5, 0.5, 2.0], 0.9, 3, 1),
    ([1.0, 0.3, 0.03], [1.0, 1.0, 1.0], [2.0, -1.0, 1.0], 2.5, 16, 5),
    ("random", "random", "random", 0.05, 32, 50),
]


def nqm_replay(h: Tensor, c: Tensor, x0: Tensor, lr: float, batch_size: int, steps: int,
               divide: bool = True, square: bool = True, lr_power: int = 2, half: float = 0.5,
               reduce: str = "sum", start: str = "square", noise: bool = True) -> Tensor:
    """The expected loss by the second-moment recursion in float64, or one mistake's."""
    h, c, x0 = h.double(), c.double(), x0.double()
    s = {"square": x0 * x0, "x0": x0, "zero": torch.zeros_like(x0)}[start]
    shrink = (1 - lr * h) ** (2 if square else 1)
    added = lr ** lr_power * c / (batch_size if divide else 1) if noise else 0 * c
    for _ in range(max(steps, 0)):
        s = shrink * s + added
    per = half * h * s
    return {"sum": per.sum(), "mean": per.mean(), "none": per}[reduce]


def _nqm_inputs(spec: tuple) -> tuple[Tensor, Tensor, Tensor, float, int, int]:
    h, c, x0, lr, batch_size, steps = spec
    if h == "random":
        h = randn(6, seed=7, dtype=torch.float64).abs() + 0.05
        c = randn(6, seed=8, dtype=torch.float64).abs() * 4
        x0 = randn(6, seed=9, dtype=torch.float64) * 2
    return (torch.tensor(h, dtype=torch.float64) if isinstance(h, list) else h,
            torch.tensor(c, dtype=torch.float64) if isinstance(c, list) else c,
            torch.tensor(x0, dtype=torch.float64) if isinstance(x0, list) else x0,
            lr, batch_size, steps)


def check_noisy_quadratic_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        args = _nqm_inputs(spec)
        h, c, x0, lr, batch_size, steps = args
        case = f"d={len(h)}, lr={lr}, batch_size={batch_size}, steps={steps}"
        want = nqm_replay(*args)
        changes = [(NOISE_NOT_DIVIDED, {"divide": False}), (NOT_SQUARED, {"square": False}),
                   (NO_LR2, {"lr_power": 1}), (NO_LR2, {"lr_power": 0}),
                   (OFF_BY_ONE, {"steps": steps + 1}), (OFF_BY_ONE, {"steps": steps - 1}),
                   (NO_HALF, {"half": 1.0}), (NOT_SUMMED, {"reduce": "none"}),
                   (AVERAGED, {"reduce": "mean"}), (BAD_START, {"start": "x0"}),
                   (BAD_START, {"start": "zero"}), (NO_NOISE, {"noise": False})]
        mistakes = [(m, lambda kw=kw: nqm_replay(*args[:5], **{"steps": steps, **kw}))
                    for m, kw in changes]
        got = call(fn, h.clone(), c.clone(), x0.clone(), lr, batch_size, steps)
        compare(got, want, case, mistakes, what="the expected loss", atol=1e-10, rtol=1e-8)
        return f"{case}: {want.item():.6g}"
    return run_check("noisy_quadratic_loss", lambda: run_cases(NQM_CASES, one_case))


# -- optimal_lr_by_batch ----------------------------------------------------------------------

ARGMAX = "this is the lr with the *highest* loss: take the argmin"
FIRST_LR = "always the grid's first lr: pick, per batch size, the lr with the lowest loss"
LAST_LR = "always the grid's last lr: pick, per batch size, the lr with the lowest loss"
IGNORES_BATCH = ("every batch size got the lr of one batch size: call loss with each "
                 "batch_size in turn (the best lr depends on it)")
TIES_LARGER = ("ties went to the larger lr: where several lrs share the lowest loss, take "
               "the smallest (torch.argmin returns the first)")
INDEX = "this is the grid index of the best lr: return the lr itself, lrs[index]"
FLOAT32 = ("the lrs came back as float32: return values of lrs in its own dtype (index "
           "lrs; torch.tensor of a list of Python floats makes float32)")
OWN_LOSS = ("this is not the loss you were given: call the `loss` argument, not your own "
            "noisy_quadratic_loss")


def plateau_loss(h: Tensor, c: Tensor, x0: Tensor, lr: Any, batch_size: int, steps: int
                 ) -> Tensor:
    """A loss flat (zero) for lrs within a factor e ** 0.5 of 0.01 * batch_size, so that
    several lrs of a grid tie for the lowest."""
    gap = (torch.as_tensor(lr, dtype=torch.float64).log() - torch.log(
        torch.tensor(0.01 * batch_size, dtype=torch.float64))).abs()
    return (gap - 0.5).clamp(min=0.0)


def _lr_table(loss: Callable[..., Tensor], h: Tensor, c: Tensor, x0: Tensor, steps: int,
              batch_sizes: list[int], lrs: Tensor) -> Tensor:
    """[n_batch, n_lrs]: the loss of every (batch size, lr) pair."""
    return torch.stack([torch.stack([loss(h, c, x0, float(lr), b, steps) for lr in lrs])
                        for b in batch_sizes])


def _first_min(table: Tensor) -> Tensor:
    return table.argmin(-1)


def _last_min(table: Tensor) -> Tensor:
    flipped = table.flip(-1).argmin(-1)
    return table.shape[-1] - 1 - flipped


def _optimal_mistakes(loss: Callable[..., Tensor], spec: tuple, table: Tensor
                      ) -> list[tuple[str, Callable[[], Tensor]]]:
    h, c, x0, steps, batch_sizes, lrs = spec
    n = len(batch_sizes)
    found = [(ARGMAX, lambda: lrs[table.argmax(-1)]),
             (FIRST_LR, lambda: lrs[:1].repeat(n)), (LAST_LR, lambda: lrs[-1:].repeat(n)),
             (TIES_LARGER, lambda: lrs[_last_min(table)]),
             (INDEX, lambda: _first_min(table).double()),
             (FLOAT32, lambda: lrs[_first_min(table)].float().double())]
    for fixed in {1, batch_sizes[0], batch_sizes[-1]}:
        found.append((IGNORES_BATCH, lambda b=fixed: lrs[_first_min(
            _lr_table(loss, h, c, x0, steps, [b], lrs))].repeat(n)))
    if loss is plateau_loss:
        found.append((OWN_LOSS, lambda: lrs[_first_min(
            _lr_table(nqm_replay, h, c, x0, steps, batch_sizes, lrs))]))
    return found


def _optimal_cases() -> list[tuple[str, Callable[..., Tensor], tuple]]:
    d = 20
    h = 1 / torch.arange(1, d + 1, dtype=torch.float64)
    x0 = torch.ones(d, dtype=torch.float64)
    grid = torch.logspace(-3, 0.3, 34, dtype=torch.float64)
    return [
        ("noisy quadratic, d=20, c = 50 h, 50 steps", nqm_replay,
         (h, 50 * h, x0, 50, [2, 16, 128, 1024], grid)),
        ("a loss flat near lr = 0.01 * batch_size (ties)", plateau_loss,
         (h, h, x0, 10, [1, 4, 20], torch.logspace(-3, 0, 31, dtype=torch.float64))),
        ("noisy quadratic, d=20, c = 5 h, 20 steps, batch sizes out of order", nqm_replay,
         (h, 5 * h, -x0, 20, [64, 1, 8], grid)),
    ]


def check_optimal_lr_by_batch(fn: Callable[..., Any]) -> CheckResult:
    def one_case(item: tuple) -> str:
        case, loss, spec = item
        h, c, x0, steps, batch_sizes, lrs = spec
        table = _lr_table(loss, *spec)
        want = lrs[_first_min(table)]
        got = call(fn, h.clone(), c.clone(), x0.clone(), steps, list(batch_sizes),
                   lrs.clone(), loss)
        compare(got, want, case, _optimal_mistakes(loss, spec, table), what="the best lrs",
                atol=1e-12, rtol=1e-10, axes=("batch size",))
        return f"{case}: {[round(x, 4) for x in want.tolist()]}"
    return run_check("optimal_lr_by_batch", lambda: run_cases(_optimal_cases(), one_case))


# -- adam_noisy_quadratic_loss ----------------------------------------------------------------

ADAM_IS_SGD = ("this is SGD's loss: divide each coordinate's step by the root of its second "
               "moment, eta_i = lr / sqrt(v_i)")
ADAM_NO_ROOT = "the step divides by v_i, not by its root: eta_i = lr / sqrt(v_i)"
ADAM_V_NO_BATCH = ("v_i's noise term ignores the batch size: a batch's gradient noise has "
                   "variance c_i / batch_size, in v_i as in the update")
ADAM_V_NO_SIGNAL = ("v_i lacks the squared mean gradient: E[g_i ** 2] = h_i ** 2 * s_i + "
                    "c_i / batch_size, the mean gradient squared plus the noise variance")
ADAM_V_H_UNSQUARED = ("v_i has h_i * s_i: the mean gradient is h_i * x_i, so its square adds "
                      "h_i ** 2 * s_i")
ADAM_V_FROZEN = ("v_i was computed once, from x0: it follows s_i, so recompute it every step "
                 "from the current s_i")
ADAM_SHRINK_LR = ("the shrink uses lr: x_i shrinks by (1 - eta_i * h_i), with the "
                  "coordinate's own step eta_i")
ADAM_NOISE_LR = ("the noise added per step uses lr ** 2: the step scales the noise by "
                 "eta_i, so it adds eta_i ** 2 * c_i / batch_size")

ADAM_NQM_CASES = [  # (h, c, x0, lr, batch_size, steps): h^2 s and c / B of similar size
    ([1.0, 0.5, 0.2, 0.05], [2.0, 1.0, 0.5, 0.3], [1.0, -2.0, 0.5, 3.0], 0.3, 8, 20),
    ([1.0, 0.5, 0.2, 0.05], [2.0, 1.0, 0.5, 0.3], [1.0, -2.0, 0.5, 3.0], 0.1, 4, 0),
    ([2.0, 0.7, 0.1], [0.5, 3.0, 1.0], [-1.5, 0.5, 2.0], 0.4, 3, 1),
    ([1.0, 0.3, 0.03], [0.2, 0.1, 0.05], [2.0, -1.0, 1.0], 0.05, 1, 7),
    ("random", "random", "random", 0.02, 32, 50),
]


def adam_nqm_replay(h: Tensor, c: Tensor, x0: Tensor, lr: float, batch_size: int,
                    steps: int, adam: bool = True, root: float = 0.5, v_batch: bool = True,
                    signal: str = "h2", frozen: bool = False, shrink_eta: bool = True,
                    noise_eta: bool = True, half: float = 0.5, reduce: str = "sum",
                    start: str = "square") -> Tensor:
    """Idealised Adam's expected loss on the noisy quadratic model in float64, or one
    mistake's: v from h ** 2 * s ("h2"), h * s ("h") or the noise alone ("none")."""
    h, c, x0 = h.double(), c.double(), x0.double()
    s = x0 * x0 if start == "square" else torch.zeros_like(x0)
    noise = c / batch_size

    def second_moment(s: Tensor) -> Tensor:
        mean_part = {"h2": h * h * s, "h": h * s, "none": 0 * s}[signal]
        return mean_part + (noise if v_batch else c)

    v0 = second_moment(s)
    for _ in range(max(steps, 0)):
        v = v0 if frozen else second_moment(s)
        eta = lr / v ** root if adam else torch.full_like(s, lr)
        s = (1 - (eta if shrink_eta else lr) * h) ** 2 * s + (
            eta if noise_eta else lr) ** 2 * noise
    per = half * h * s
    return {"sum": per.sum(), "mean": per.mean(), "none": per}[reduce]


def check_adam_noisy_quadratic_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        args = _nqm_inputs(spec)
        h, c, x0, lr, batch_size, steps = args
        case = f"d={len(h)}, lr={lr}, batch_size={batch_size}, steps={steps}"
        want = adam_nqm_replay(*args)
        changes = [(ADAM_IS_SGD, {"adam": False}), (ADAM_NO_ROOT, {"root": 1.0}),
                   (ADAM_V_NO_BATCH, {"v_batch": False}), (ADAM_V_NO_SIGNAL, {"signal": "none"}),
                   (ADAM_V_H_UNSQUARED, {"signal": "h"}), (ADAM_V_FROZEN, {"frozen": True}),
                   (ADAM_SHRINK_LR, {"shrink_eta": False}),
                   (ADAM_NOISE_LR, {"noise_eta": False}),
                   (OFF_BY_ONE, {"steps": steps + 1}), (OFF_BY_ONE, {"steps": steps - 1}),
                   (NO_HALF, {"half": 1.0}), (NOT_SUMMED, {"reduce": "none"}),
                   (AVERAGED, {"reduce": "mean"}), (BAD_START, {"start": "zero"})]
        mistakes = [(m, lambda kw=kw: adam_nqm_replay(*args[:5], **{"steps": steps, **kw}))
                    for m, kw in changes]
        got = call(fn, h.clone(), c.clone(), x0.clone(), lr, batch_size, steps)
        compare(got, want, case, mistakes, what="the expected loss", atol=1e-10, rtol=1e-7)
        return f"{case}: {want.item():.6g}"
    return run_check("adam_noisy_quadratic_loss", lambda: run_cases(ADAM_NQM_CASES, one_case))
