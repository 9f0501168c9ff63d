"""Wrong and right answers to lesson 6b's exercises (Adam, the noisy quadratic model, the
best lr per batch size).

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gptscope.course.checks import optimization as oc

# -- adam_step: one function with switches, each mutant flips one -----------------------------


def _adam(params, grads, state, lr, betas, eps, weight_decay, *, correct=True, t_offset=0,
          eps_inside=False, decay="decoupled", carry=True, swap=False, square=True,
          in_place=True):
    b1, b2 = (betas[1], betas[0]) if swap else betas
    if not carry:
        state = {}
    t = state.get("step", 0) + 1
    ms = state.get("m") or [torch.zeros_like(p) for p in params]
    vs = state.get("v") or [torch.zeros_like(p) for p in params]
    out_m, out_v = [], []
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        if decay == "l2":
            g = g + weight_decay * p
        elif decay == "no_lr":
            p.mul_(1 - weight_decay)
        elif decay == "decoupled":
            p.mul_(1 - lr * weight_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g * g if square else g)
        k = t + t_offset
        m_hat, v_hat = (m / (1 - b1 ** k), v / (1 - b2 ** k)) if correct else (m, v)
        denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
        if in_place:
            p.sub_(lr * m_hat / denom)
        else:
            params[i] = p - lr * m_hat / denom
        if decay == "after":
            p.mul_(1 - lr * weight_decay)
        out_m.append(m)
        out_v.append(v)
    return {"step": t, "m": out_m, "v": out_v}


def adam_no_bias_correction(*a):
    return _adam(*a, correct=False)


def adam_t_from_zero(*a):
    return _adam(*a, t_offset=-1)


def adam_eps_in_sqrt(*a):
    return _adam(*a, eps_inside=True)


def adam_l2_decay(*a):
    return _adam(*a, decay="l2")


def adam_decay_without_lr(*a):
    return _adam(*a, decay="no_lr")


def adam_decay_after(*a):
    return _adam(*a, decay="after")


def adam_forgets_moments(*a):
    return _adam(*a, carry=False)


def adam_betas_swapped(*a):
    return _adam(*a, swap=True)


def adam_v_of_g(*a):
    return _adam(*a, square=False)


def adam_rebinds(*a):
    return _adam(*a, in_place=False)


def adam_keeps_its_own_count(params, grads, state, lr, betas, eps, weight_decay):
    """Right updates, but the count lives under another key and 'step' stays 0."""
    inner = {"step": state["t"], "m": state["m"], "v": state["v"]} if state else {}
    out = _adam(params, grads, inner, lr, betas, eps, weight_decay)
    return {"step": 0, "t": out["step"], "m": out["m"], "v": out["v"]}


def adam_returns_nothing(params, grads, state, lr, betas, eps, weight_decay):
    _adam(params, grads, state, lr, betas, eps, weight_decay)


# Right answers, written differently.

def adam_by_torch_foreach(params, grads, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                          weight_decay=0.0):
    """In place on the state's own tensors, with lerp_ and addcdiv_ as PyTorch writes it."""
    b1, b2 = betas
    if not state:
        state = {"step": 0, "m": [torch.zeros_like(p) for p in params],
                 "v": [torch.zeros_like(p) for p in params]}
    state["step"] += 1
    t = state["step"]
    with torch.no_grad():
        for p, g, m, v in zip(params, grads, state["m"], state["v"]):
            p.mul_(1 - lr * weight_decay)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
    return state


def adam_by_numpy(params, grads, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                  weight_decay=0.0):
    t = state.get("step", 0) + 1
    ms = [np.zeros(p.shape) for p in params] if not state else state["m"]
    vs = [np.zeros(p.shape) for p in params] if not state else state["v"]
    new = {"step": t, "m": [], "v": []}
    for p, g, m, v in zip(params, grads, ms, vs):
        x, gn = p.numpy(), g.numpy()
        m = betas[0] * m + (1 - betas[0]) * gn
        v = betas[1] * v + (1 - betas[1]) * gn ** 2
        x = x - lr * weight_decay * x
        x = x - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
        p.copy_(torch.from_numpy(x))
        new["m"].append(m)
        new["v"].append(v)
    return new


# -- noisy_quadratic_loss ---------------------------------------------------------------------


def _nqm(h, c, x0, lr, batch_size, steps, *, divide=True, square=True, lr2=True,
         extra=0, half=0.5):
    s = x0 * x0
    for _ in range(steps + extra):
        s = (1 - lr * h) ** (2 if square else 1) * s + (lr ** 2 if lr2 else 1) * c / (
            batch_size if divide else 1)
    return half * (h * s).sum()


def nqm_noise_not_divided(*a):
    return _nqm(*a, divide=False)


def nqm_not_squared(*a):
    return _nqm(*a, square=False)


def nqm_no_lr2(*a):
    return _nqm(*a, lr2=False)


def nqm_one_step_more(*a):
    return _nqm(*a, extra=1)


def nqm_no_half(*a):
    return _nqm(*a, half=1.0)


def nqm_one_step_less(*a):
    return _nqm(*a, extra=-1)


def nqm_starts_at_x0(h, c, x0, lr, batch_size, steps):
    s = x0.clone()
    for _ in range(steps):
        s = (1 - lr * h) ** 2 * s + lr ** 2 * c / batch_size
    return 0.5 * (h * s).sum()


def nqm_mean_over_coordinates(h, c, x0, lr, batch_size, steps):
    return _nqm(h, c, x0, lr, batch_size, steps) / len(h)


def nqm_per_coordinate(h, c, x0, lr, batch_size, steps):
    s = x0 * x0
    for _ in range(steps):
        s = (1 - lr * h) ** 2 * s + lr ** 2 * c / batch_size
    return 0.5 * h * s


def nqm_mean_only(h, c, x0, lr, batch_size, steps):
    return 0.5 * (h * ((1 - lr * h) ** steps * x0) ** 2).sum()


# Right answers, written differently.

def nqm_closed_form(h, c, x0, lr, batch_size, steps):
    r = (1 - lr * h) ** 2
    series = torch.where((1 - r).abs() < 1e-12, torch.full_like(r, float(steps)),
                         (1 - r ** steps) / (1 - r))
    s = r ** steps * x0 ** 2 + lr ** 2 * c / batch_size * series
    return (h * s).sum() / 2


def nqm_mean_and_variance(h, c, x0, lr, batch_size, steps):
    """Keeps the mean and the variance apart, as the recursion's two halves."""
    mean, var = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        mean = (1 - lr * h) * mean
        var = (1 - lr * h) ** 2 * var + lr * lr * c / batch_size
    return torch.dot(h, mean ** 2 + var) * 0.5


# -- optimal_lr_by_batch ----------------------------------------------------------------------


def _table(h, c, x0, steps, batch_sizes, lrs, loss):
    return torch.stack([torch.stack([loss(h, c, x0, float(lr), b, steps) for lr in lrs])
                        for b in batch_sizes])


def opt_argmax(h, c, x0, steps, batch_sizes, lrs, loss):
    return lrs[_table(h, c, x0, steps, batch_sizes, lrs, loss).argmax(-1)]


def opt_first(h, c, x0, steps, batch_sizes, lrs, loss):
    return lrs[:1].repeat(len(batch_sizes))


def opt_last(h, c, x0, steps, batch_sizes, lrs, loss):
    return lrs[-1:].repeat(len(batch_sizes))


def opt_batch_one(h, c, x0, steps, batch_sizes, lrs, loss):
    best = lrs[_table(h, c, x0, steps, [1], lrs, loss).argmin(-1)]
    return best.repeat(len(batch_sizes))


def opt_ties_larger(h, c, x0, steps, batch_sizes, lrs, loss):
    table = _table(h, c, x0, steps, batch_sizes, lrs, loss)
    return lrs[len(lrs) - 1 - table.flip(-1).argmin(-1)]


def opt_index(h, c, x0, steps, batch_sizes, lrs, loss):
    return _table(h, c, x0, steps, batch_sizes, lrs, loss).argmin(-1)


def opt_own_loss(h, c, x0, steps, batch_sizes, lrs, loss):
    return lrs[_table(h, c, x0, steps, batch_sizes, lrs, oc.nqm_replay).argmin(-1)]


def opt_float32(h, c, x0, steps, batch_sizes, lrs, loss):
    table = _table(h, c, x0, steps, batch_sizes, lrs, loss)
    return torch.tensor([lrs[i].item() for i in table.argmin(-1).tolist()])


# Right answers, written differently.

def opt_python_min(h, c, x0, steps, batch_sizes, lrs, loss):
    best = []
    for b in batch_sizes:
        values = [float(loss(h, c, x0, lr, b, steps)) for lr in lrs.tolist()]
        best.append(values.index(min(values)))  # index() finds the first, the smallest lr
    return lrs[torch.tensor(best)]


def opt_strict_improvement(h, c, x0, steps, batch_sizes, lrs, loss):
    out = torch.empty(len(batch_sizes), dtype=lrs.dtype)
    for i, b in enumerate(batch_sizes):
        best_loss, best_lr = math.inf, lrs[0]
        for lr in lrs:
            value = loss(h, c, x0, lr, b, steps).item()
            if value < best_loss:  # only a strictly lower loss moves on to a larger lr
                best_loss, best_lr = value, lr
        out[i] = best_lr
    return out


# -- adam_noisy_quadratic_loss ----------------------------------------------------------------


def _adam_nqm(h, c, x0, lr, batch_size, steps, *, v="h2", root=True, batch_in_v=True,
              frozen=False, shrink_lr=False, noise_lr=False, extra=0, half=0.5):
    s = x0 * x0
    n = c / batch_size

    def moment(s):
        mean = {"h2": h * h * s, "h": h * s, "none": torch.zeros_like(s)}[v]
        return mean + (n if batch_in_v else c)

    first = moment(s)
    for _ in range(steps + extra):
        second = first if frozen else moment(s)
        eta = lr / (second.sqrt() if root else second)
        s = (1 - (lr if shrink_lr else eta) * h) ** 2 * s + (lr if noise_lr else eta) ** 2 * n
    return half * (h * s).sum()


def adam_nqm_is_sgd(*a):
    return _nqm(*a)


def adam_nqm_no_root(*a):
    return _adam_nqm(*a, root=False)


def adam_nqm_v_without_batch(*a):
    return _adam_nqm(*a, batch_in_v=False)


def adam_nqm_v_noise_only(*a):
    return _adam_nqm(*a, v="none")


def adam_nqm_v_h_unsquared(*a):
    return _adam_nqm(*a, v="h")


def adam_nqm_v_frozen(*a):
    return _adam_nqm(*a, frozen=True)


def adam_nqm_shrinks_by_lr(*a):
    return _adam_nqm(*a, shrink_lr=True)


def adam_nqm_noise_by_lr(*a):
    return _adam_nqm(*a, noise_lr=True)


def adam_nqm_one_step_more(*a):
    return _adam_nqm(*a, extra=1)


def adam_nqm_no_half(*a):
    return _adam_nqm(*a, half=1.0)


def adam_nqm_per_coordinate(h, c, x0, lr, batch_size, steps):
    return torch.stack([_adam_nqm(h[i:i + 1], c[i:i + 1], x0[i:i + 1], lr, batch_size, steps)
                        for i in range(len(h))])


def adam_nqm_starts_at_zero(h, c, x0, lr, batch_size, steps):
    return _adam_nqm(h, c, torch.zeros_like(x0), lr, batch_size, steps)


# Right answers, written differently.

def adam_nqm_python_floats(h, c, x0, lr, batch_size, steps):
    """One coordinate at a time, in Python floats."""
    total = 0.0
    for hi, ci, xi in zip(h.tolist(), c.tolist(), x0.tolist()):
        s = xi * xi
        for _ in range(steps):
            eta = lr / math.sqrt(hi * hi * s + ci / batch_size)
            s = (1 - eta * hi) ** 2 * s + eta * eta * ci / batch_size
        total += 0.5 * hi * s
    return torch.tensor(total, dtype=torch.float64)


def adam_nqm_mean_and_variance(h, c, x0, lr, batch_size, steps):
    """The mean and the variance kept apart, the step from their sum; numpy inside."""
    hn, cn = h.numpy(), c.numpy() / batch_size
    mean, var = x0.numpy().copy(), np.zeros_like(hn)
    for _ in range(steps):
        eta = lr / np.sqrt(hn ** 2 * (mean ** 2 + var) + cn)
        mean, var = (1 - eta * hn) * mean, (1 - eta * hn) ** 2 * var + eta ** 2 * cn
    return torch.from_numpy(np.asarray(0.5 * np.dot(hn, mean ** 2 + var)))


MUTANTS: dict[str, list] = {
    "adam_step": [
        (adam_no_bias_correction, oc.NO_BIAS_CORRECTION), (adam_t_from_zero, oc.WRONG_STEP),
        (adam_eps_in_sqrt, oc.EPS_INSIDE), (adam_l2_decay, oc.L2_DECAY),
        (adam_decay_without_lr, oc.DECAY_NO_LR), (adam_decay_after, oc.DECAY_AFTER),
        (adam_forgets_moments, oc.NOT_CARRIED), (adam_betas_swapped, oc.BETAS_SWAPPED),
        (adam_v_of_g, oc.V_OF_G), (adam_rebinds, oc.NOT_IN_PLACE),
        (adam_keeps_its_own_count, "counts the steps taken"),
        (adam_returns_nothing, "it returned None"),
    ],
    "noisy_quadratic_loss": [
        (nqm_noise_not_divided, oc.NOISE_NOT_DIVIDED), (nqm_not_squared, oc.NOT_SQUARED),
        (nqm_no_lr2, oc.NO_LR2), (nqm_one_step_more, oc.OFF_BY_ONE),
        (nqm_no_half, oc.NO_HALF), (nqm_per_coordinate, oc.NOT_SUMMED),
        (nqm_mean_only, oc.NO_NOISE), (nqm_one_step_less, oc.OFF_BY_ONE),
        (nqm_starts_at_x0, oc.BAD_START), (nqm_mean_over_coordinates, oc.AVERAGED),
    ],
    "optimal_lr_by_batch": [
        (opt_argmax, oc.ARGMAX), (opt_first, oc.FIRST_LR), (opt_last, oc.LAST_LR),
        (opt_batch_one, oc.IGNORES_BATCH), (opt_ties_larger, oc.TIES_LARGER),
        (opt_index, oc.INDEX), (opt_own_loss, oc.OWN_LOSS), (opt_float32, oc.FLOAT32),
    ],
    "adam_noisy_quadratic_loss": [
        (adam_nqm_is_sgd, oc.ADAM_IS_SGD), (adam_nqm_no_root, oc.ADAM_NO_ROOT),
        (adam_nqm_v_without_batch, oc.ADAM_V_NO_BATCH),
        (adam_nqm_v_noise_only, oc.ADAM_V_NO_SIGNAL),
        (adam_nqm_v_h_unsquared, oc.ADAM_V_H_UNSQUARED), (adam_nqm_v_frozen, oc.ADAM_V_FROZEN),
        (adam_nqm_shrinks_by_lr, oc.ADAM_SHRINK_LR), (adam_nqm_noise_by_lr, oc.ADAM_NOISE_LR),
        (adam_nqm_one_step_more, oc.OFF_BY_ONE), (adam_nqm_no_half, oc.NO_HALF),
        (adam_nqm_per_coordinate, oc.NOT_SUMMED), (adam_nqm_starts_at_zero, oc.BAD_START),
    ],
}

RIGHT_ANSWERS: dict[str, list] = {
    "adam_step": [adam_by_torch_foreach, adam_by_numpy],
    "noisy_quadratic_loss": [nqm_closed_form, nqm_mean_and_variance],
    "optimal_lr_by_batch": [opt_python_min, opt_strict_improvement],
    "adam_noisy_quadratic_loss": [adam_nqm_python_floats, adam_nqm_mean_and_variance],
}
