"""Wrong and right answers to the new exercises of lessons 9 and 14.

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from gptscope.course.checks import circuits as cc
from gptscope.course.checks import projects as pc
from gptscope.course.solutions import lesson09_induction as s09
from gptscope.course.solutions import lesson14_projects as s14
from gptscope.interp.circuits import composition_scores, ov_circuit, qk_circuit

# -- ov_qk_circuits


def _head(model, layer, head):
    attn = model.blocks[layer].attn
    return (model.W_E.detach(), model.W_U.detach(), *(getattr(attn, k)[head].detach()
                                                       for k in ("W_Q", "W_K", "W_V", "W_O")))


def qk_swapped(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return E @ K @ Q.T @ E.T, E @ V @ O @ U


def ov_transposed(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return E @ Q @ K.T @ E.T, U.T @ O.T @ V.T @ E.T


def w_u_for_keys(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return E @ Q @ K.T @ U, E @ V @ O @ U


def w_e_t_for_logits(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return E @ Q @ K.T @ E.T, E @ V @ O @ E.T


def no_embed(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return Q @ K.T, V @ O @ U


def no_unembed(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    return E @ Q @ K.T @ E.T, E @ V @ O


def next_head(model, layer, head):
    return s09.ov_qk_circuits(model, layer, (head + 1) % model.cfg.n_heads)


def layer_head_swapped(model, layer, head):
    return s09.ov_qk_circuits(model, head, layer)


def with_biases(model, layer, head):
    E, U, Q, K, V, O = _head(model, layer, head)
    attn = model.blocks[layer].attn
    qk = (E @ Q + attn.b_Q[head]) @ (E @ K + attn.b_K[head]).T
    return qk.detach(), ((E @ V + attn.b_V[head]) @ O @ U + attn.b_O @ U).detach()


def scaled_qk(model, layer, head):
    qk, ov = s09.ov_qk_circuits(model, layer, head)
    return qk / math.sqrt(model.cfg.d_head), ov


def zeroes_biases_in_place(model, layer, head):
    with torch.no_grad():
        for name in ("b_Q", "b_K", "b_V", "b_O"):
            getattr(model.blocks[layer].attn, name).zero_()
    return s09.ov_qk_circuits(model, layer, head)


def circuits_by_library(model, layer, head):
    return qk_circuit(model, layer, head).AB, ov_circuit(model, layer, head).AB


def circuits_by_einsum_float64(model, layer, head):
    E = model.W_E.detach().double()
    U = model.W_U.detach().double()
    Q, K, V, O = (getattr(model, k)[layer, head].detach().double()
                  for k in ("W_Q", "W_K", "W_V", "W_O"))
    qk = torch.einsum("id,de,je->ij", E @ Q, torch.eye(Q.shape[1]).double(), E @ K)
    ov = torch.einsum("ie,ej->ij", E @ V, O @ U)
    return qk.float(), ov.float()


# -- composition_score


def _wa_wb(model, la, ha, lb, hb, kind):
    a, b = model.blocks[la].attn, model.blocks[lb].attn
    W_A = (a.W_V[ha] @ a.W_O[ha]).detach()
    qk = (b.W_Q[hb] @ b.W_K[hb].T).detach()
    W_B = {"Q": qk, "K": qk.T, "V": (b.W_V[hb] @ b.W_O[hb]).detach()}[kind]
    return W_A, W_B, qk


def comp_not_normalised(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = _wa_wb(model, la, ha, lb, hb, kind)
    return torch.linalg.matrix_norm(W_A @ W_B)


def comp_reversed(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = _wa_wb(model, la, ha, lb, hb, kind)
    fro = torch.linalg.matrix_norm
    return fro(W_B @ W_A) / (fro(W_A) * fro(W_B))


def comp_spectral(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = _wa_wb(model, la, ha, lb, hb, kind)
    spec = torch.linalg.matrix_norm
    return spec(W_A @ W_B, ord=2) / (spec(W_A, ord=2) * spec(W_B, ord=2))


def comp_k_as_q(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, qk = _wa_wb(model, la, ha, lb, hb, kind)
    W_B = qk if kind == "K" else W_B
    fro = torch.linalg.matrix_norm
    return fro(W_A @ W_B) / (fro(W_A) * fro(W_B))


def comp_column_ov(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = _wa_wb(model, la, ha, lb, hb, kind)
    fro = torch.linalg.matrix_norm
    return fro(W_A.T @ W_B) / (fro(W_A) * fro(W_B))


def comp_one_norm(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = _wa_wb(model, la, ha, lb, hb, kind)
    fro = torch.linalg.matrix_norm
    return fro(W_A @ W_B) / fro(W_A)


def comp_by_library(model, la, ha, lb, hb, kind="Q"):
    return composition_scores(model, kind)[la, ha, lb, hb]


def comp_by_numpy_svd(model, la, ha, lb, hb, kind="Q"):
    W_A, W_B, _ = (m.double().numpy() for m in _wa_wb(model, la, ha, lb, hb, kind))

    def fro(m):  # the Frobenius norm is the root of the squared singular values' sum
        return math.sqrt(float((np.linalg.svd(m, compute_uv=False) ** 2).sum()))
    return torch.tensor(fro(W_A @ W_B) / (fro(W_A) * fro(W_B)))


# -- ablate_head


def _run_ablated(model, tokens, layer, fill_fn, name="hook_z"):
    def hook(x, hook):
        return fill_fn(x.clone())
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
        return model.run_with_hooks(tokens, return_type="loss",
                                    fwd_hooks=[(f"blocks.{layer}.attn.{name}", hook)]) - clean


def _mean_z(model, tokens, layer):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.attn.hook_z")
    return cache[f"blocks.{layer}.attn.hook_z"]


def ablate_all_heads(model, tokens, layer, head, kind="zero"):
    z = _mean_z(model, tokens, layer)

    def fill(x):
        x[:] = 0 if kind == "zero" else z.mean((0, 1))
        return x
    return _run_ablated(model, tokens, layer, fill)


def ablate_per_position(model, tokens, layer, head, kind="zero"):
    z = _mean_z(model, tokens, layer)

    def fill(x):
        x[:, :, head] = 0 if kind == "zero" else z[:, :, head].mean(0)
        return x
    return _run_ablated(model, tokens, layer, fill)


def ablate_over_d_head(model, tokens, layer, head, kind="zero"):
    z = _mean_z(model, tokens, layer)

    def fill(x):
        x[:, :, head] = 0 if kind == "zero" else z[:, :, head].mean(-1, keepdim=True)
        return x
    return _run_ablated(model, tokens, layer, fill)


def ablate_over_heads(model, tokens, layer, head, kind="zero"):
    z = _mean_z(model, tokens, layer)

    def fill(x):
        x[:, :, head] = 0 if kind == "zero" else z.mean((0, 1, 2))
        return x
    return _run_ablated(model, tokens, layer, fill)


def ablate_ignores_kind(model, tokens, layer, head, kind="zero"):
    return s09.ablate_head(model, tokens, layer, head, "zero")


def ablate_pattern(model, tokens, layer, head, kind="zero"):
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=name)

    def fill(x):
        x[:, head] = 0 if kind == "zero" else cache[name][:, head].mean(0)
        return x
    return _run_ablated(model, tokens, layer, fill, "hook_pattern")


def ablate_sign(model, tokens, layer, head, kind="zero"):
    return -s09.ablate_head(model, tokens, layer, head, kind)


def ablate_returns_loss(model, tokens, layer, head, kind="zero"):
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
    return s09.ablate_head(model, tokens, layer, head, kind) + clean


def ablate_leaves_hook(model, tokens, layer, head, kind="zero"):
    out = s09.ablate_head(model, tokens, layer, head, kind)
    model.hook_point(f"blocks.{layer}.attn.hook_z").fwd_fns.append(lambda x, hook: None)
    return out


def ablate_edits_weights(model, tokens, layer, head, kind="zero"):
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
        model.blocks[layer].attn.W_O[head].zero_()
        return model(tokens, return_type="loss") - clean


def ablate_with_context_and_cross_entropy(model, tokens, layer, head, kind="zero"):
    def loss_of(logits):
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    z = _mean_z(model, tokens, layer)
    fill = z[:, :, head].mean(dim=1).mean(dim=0) if kind == "mean" else 0.0

    def hook(x, hook):
        x[:, :, head] = fill  # edits in place and returns None: the hook point keeps x
    with torch.no_grad():
        clean = loss_of(model(tokens))
        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]):
            ablated = loss_of(model(tokens))
    return ablated - clean


def ablate_by_result_float64(model, tokens, layer, head, kind="zero"):
    # Subtract the head's own contribution (z - fill) W_O from the attention output: the
    # same as replacing z by fill, since the output is linear in z.
    z = _mean_z(model, tokens, layer).double()
    fill = z[:, :, head].reshape(-1, z.shape[-1]).mean(0) if kind == "mean" else 0 * z[0, 0, 0]
    W_O = model.blocks[layer].attn.W_O[head].detach().double()
    delta = ((fill - z[:, :, head]) @ W_O).float()  # [batch, pos, d_model]

    def hook(x, hook):
        return x + delta
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
        ablated = model.run_with_hooks(tokens, return_type="loss",
                                       fwd_hooks=[(f"blocks.{layer}.hook_attn_out", hook)])
    return ablated - clean


# -- bootstrap_interval


def _boot_stats(values, statistic, n_resamples, generator):
    idx = torch.randint(0, len(values), (n_resamples, len(values)), generator=generator)
    return torch.stack([statistic(values[row]) for row in idx])


def _tails(level):
    return torch.tensor([(1 - level) / 2, (1 + level) / 2])


def boot_without_replacement(values, statistic, n_resamples, level, generator):
    stats = torch.stack([statistic(values[torch.randperm(len(values), generator=generator)])
                         for _ in range(n_resamples)])
    return torch.quantile(stats, _tails(level))


def boot_level_as_tail(values, statistic, n_resamples, level, generator):
    stats = _boot_stats(values, statistic, n_resamples, generator)
    return torch.quantile(stats, torch.tensor([1 - level, level]))


def boot_once(values, statistic, n_resamples, level, generator):
    stats = _boot_stats(values, statistic, 1, generator)
    return torch.quantile(stats, _tails(level))


def boot_data_std(values, statistic, n_resamples, level, generator):
    torch.randint(0, 2, (1,), generator=generator)
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    m, s = values.mean(), values.std()
    return torch.stack([m - z * s, m + z * s])


def boot_normal_se(values, statistic, n_resamples, level, generator):
    torch.randint(0, 2, (1,), generator=generator)
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    m, se = values.mean(), values.std() / math.sqrt(len(values))
    return torch.stack([m - z * se, m + z * se])


def boot_stats_std(values, statistic, n_resamples, level, generator):
    stats = _boot_stats(values, statistic, n_resamples, generator)
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    return torch.stack([stats.mean() - z * stats.std(), stats.mean() + z * stats.std()])


def boot_swapped(values, statistic, n_resamples, level, generator):
    return s14.bootstrap_interval(values, statistic, n_resamples, level, generator).flip(0)


def boot_idx_columns(values, statistic, n_resamples, level, generator):
    idx = torch.randint(0, len(values), (len(values), n_resamples), generator=generator)
    stats = torch.stack([statistic(values[idx[:, r]]) for r in range(n_resamples)])
    return torch.quantile(stats, _tails(level))


def boot_fixed_1000(values, statistic, n_resamples, level, generator):
    return s14.bootstrap_interval(values, statistic, 1000, level, generator)


def boot_fixed_95(values, statistic, n_resamples, level, generator):
    return s14.bootstrap_interval(values, statistic, n_resamples, 0.95, generator)


def boot_global_rng(values, statistic, n_resamples, level, generator):
    return s14.bootstrap_interval(values, statistic, n_resamples, level, None)


def boot_loop_numpy(values, statistic, n_resamples, level, generator):
    # One draw of n per resample takes the same numbers from the generator as one big draw.
    stats = [float(statistic(values[torch.randint(0, len(values), (len(values),),
                                                  generator=generator)]))
             for _ in range(n_resamples)]
    low, high = np.percentile(np.array(stats, dtype=np.float64),
                              [50 * (1 - level), 50 * (1 + level)])
    return torch.tensor([low, high])


def boot_sorted_by_hand(values, statistic, n_resamples, level, generator):
    stats = _boot_stats(values.double(), statistic, n_resamples, generator).sort().values

    def quantile(q):  # linear interpolation between the order statistics around q (R - 1)
        pos = q * (len(stats) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(stats) - 1)
        return stats[lo] + (pos - lo) * (stats[hi] - stats[lo])
    return torch.stack([quantile((1 - level) / 2), quantile((1 + level) / 2)]).float()


# -- paired_permutation_test


def _signs(n, R, generator):
    return torch.randint(0, 2, (R, n), generator=generator) * 2 - 1


def perm_no_plus_one(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1).abs()
    return float((null >= d.mean().abs()).sum()) / n_permutations


def perm_plus_one_top(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1).abs()
    return (1 + float((null >= d.mean().abs()).sum())) / n_permutations


def perm_one_sided(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1)
    return (1 + int((null >= d.mean()).sum())) / (1 + n_permutations)


def perm_abs_observed_only(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1)
    return (1 + int((null >= d.mean().abs()).sum())) / (1 + n_permutations)


def perm_strict(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1).abs()
    return (1 + int((null > d.mean().abs()).sum())) / (1 + n_permutations)


def perm_reversed(a, b, n_permutations, generator):
    d = a - b
    null = (_signs(len(d), n_permutations, generator) * d).mean(1).abs()
    return (1 + int((null <= d.mean().abs()).sum())) / (1 + n_permutations)


def perm_signs_columns(a, b, n_permutations, generator):
    d = a - b
    signs = torch.randint(0, 2, (len(d), n_permutations), generator=generator) * 2 - 1
    null = (signs.T * d).mean(1).abs()
    return (1 + int((null >= d.mean().abs()).sum())) / (1 + n_permutations)


def perm_unpaired(a, b, n_permutations, generator):
    pooled, n = torch.cat([a, b]), len(a)
    observed, count = (a.mean() - b.mean()).abs(), 0
    for _ in range(n_permutations):
        p = pooled[torch.randperm(2 * n, generator=generator)]
        count += int((p[:n].mean() - p[n:].mean()).abs() >= observed)
    return (1 + count) / (1 + n_permutations)


def perm_global_rng(a, b, n_permutations, generator):
    return s14.paired_permutation_test(a, b, n_permutations, None)


def perm_loop(a, b, n_permutations, generator):
    d = (a - b).tolist()
    signs = (torch.randint(0, 2, (n_permutations, len(d)), generator=generator) * 2 - 1)
    observed = abs(sum(d) / len(d))
    count = 0
    for row in signs.tolist():
        count += abs(sum(s * x for s, x in zip(row, d)) / len(d)) >= observed
    return (1 + count) / (1 + n_permutations)


def perm_numpy_sums(a, b, n_permutations, generator):
    # |sum| ranks the same as |mean| (n > 0), so the sums give the same count.
    signs = torch.randint(0, 2, (n_permutations, len(a)), generator=generator).numpy()
    d = (a - b).double().numpy()
    null = np.abs((2 * signs - 1) @ d)
    return float((1 + np.sum(null >= abs(d.sum()))) / (1 + n_permutations))


# -- seed_spread


def _sd(x, correction=1):
    # Check the length first, so one run raises (as the contract asks) before torch warns.
    if len(x) < 2:
        raise ValueError("two runs at least")
    return float(x.std(correction=correction))


def _spread(x, std, sem, mean=None, lo=None, hi=None):
    return {"mean": float(x.mean()) if mean is None else mean, "std": std, "sem": sem,
            "min": float(x.min()) if lo is None else lo,
            "max": float(x.max()) if hi is None else hi}


def spread_population(finals):
    s = _sd(finals, 0)
    return _spread(finals, s, s / math.sqrt(len(finals)))


def spread_sem_population(finals):
    return _spread(finals, _sd(finals), _sd(finals, 0) / math.sqrt(len(finals)))


def spread_sem_over_n(finals):
    return _spread(finals, _sd(finals), _sd(finals) / len(finals))


def spread_sem_over_n1(finals):
    return _spread(finals, _sd(finals), _sd(finals) / math.sqrt(len(finals) - 1))


def spread_sem_is_std(finals):
    return _spread(finals, _sd(finals), _sd(finals))


def spread_variance(finals):
    v = _sd(finals) ** 2
    return _spread(finals, v, v / math.sqrt(len(finals)))


def spread_min_max_swapped(finals):
    s = _sd(finals)
    return _spread(finals, s, s / math.sqrt(len(finals)), lo=float(finals.max()),
                   hi=float(finals.min()))


def spread_median(finals):
    s = _sd(finals)
    return _spread(finals, s, s / math.sqrt(len(finals)), mean=float(finals.median()))


def spread_one_run_nan(finals):
    s = _sd(finals) if len(finals) > 1 else float("nan")
    return {"mean": float(finals.mean()), "std": s, "sem": s / math.sqrt(len(finals)),
            "min": float(finals.min()), "max": float(finals.max())}


def spread_statistics_module(finals):
    xs = [float(v) for v in finals]
    if len(xs) < 2:
        raise ValueError("a spread needs two runs")
    sd = statistics.stdev(xs)
    return {"mean": statistics.fmean(xs), "std": sd, "sem": sd / len(xs) ** 0.5,
            "min": min(xs), "max": max(xs)}


def spread_numpy(finals):
    x = finals.double().numpy()
    if x.size < 2:
        raise ValueError("need two or more runs")
    sd = float(np.std(x, ddof=1))
    return {"mean": float(np.mean(x)), "std": sd, "sem": float(sd / np.sqrt(x.size)),
            "min": float(np.min(x)), "max": float(np.max(x))}


MUTANTS: dict[str, list] = {
    "ov_qk_circuits": [
        (qk_swapped, cc.QK_SWAPPED), (ov_transposed, cc.OV_TRANSPOSED),
        (w_u_for_keys, cc.W_U_FOR_KEYS), (w_e_t_for_logits, cc.W_E_T_FOR_LOGITS),
        (no_embed, cc.NO_EMBED), (no_unembed, cc.NO_UNEMBED), (next_head, cc.OTHER_HEAD),
        (layer_head_swapped, cc.OTHER_HEAD), (with_biases, cc.BIASES), (scaled_qk, cc.SCALED),
        (zeroes_biases_in_place, "changed the model's weights"),
    ],
    "composition_score": [
        (comp_not_normalised, cc.NOT_NORMALISED), (comp_reversed, cc.REVERSED),
        (comp_spectral, cc.SPECTRAL), (comp_k_as_q, cc.K_AS_Q),
        (comp_column_ov, cc.COLUMN_OV), (comp_one_norm, cc.ONE_NORM),
    ],
    "ablate_head": [
        (ablate_all_heads, cc.ALL_HEADS), (ablate_per_position, cc.PER_POSITION),
        (ablate_over_d_head, cc.OVER_D_HEAD), (ablate_over_heads, cc.OVER_HEADS),
        (ablate_ignores_kind, cc.KIND_IGNORED), (ablate_pattern, cc.PATTERN),
        (ablate_sign, cc.SIGN), (ablate_returns_loss, cc.ABLATED_ONLY),
        (ablate_leaves_hook, cc.HOOK_LEFT), (ablate_edits_weights, cc.WEIGHTS_CHANGED),
    ],
    "bootstrap_interval": [
        (boot_without_replacement, pc.NO_REPLACEMENT), (boot_level_as_tail, pc.LEVEL_AS_TAIL),
        (boot_once, pc.ONE_RESAMPLE), (boot_data_std, pc.DATA_STD),
        (boot_normal_se, pc.NORMAL_SE), (boot_stats_std, pc.STATS_STD),
        (boot_swapped, pc.SWAPPED), (boot_idx_columns, pc.IDX_SHAPE),
        (boot_fixed_1000, pc.R_IGNORED), (boot_fixed_95, pc.LEVEL_IGNORED),
        (boot_global_rng, pc.GENERATOR_UNUSED),
    ],
    "paired_permutation_test": [
        (perm_no_plus_one, pc.NO_PLUS_ONE), (perm_plus_one_top, pc.PLUS_ONE_TOP),
        (perm_one_sided, pc.ONE_SIDED), (perm_abs_observed_only, pc.ABS_OBSERVED_ONLY),
        (perm_strict, pc.STRICT), (perm_reversed, pc.REVERSED_TAIL),
        (perm_signs_columns, pc.SIGNS_SHAPE), (perm_unpaired, pc.UNPAIRED),
        (perm_global_rng, pc.GENERATOR_UNUSED),
    ],
    "seed_spread": [
        (spread_population, pc.POPULATION), (spread_sem_population, pc.SEM_FROM_POPULATION),
        (spread_sem_over_n, pc.SEM_OVER_N), (spread_sem_over_n1, pc.SEM_OVER_N1),
        (spread_sem_is_std, pc.SEM_IS_STD), (spread_variance, pc.VARIANCE),
        (spread_min_max_swapped, pc.MIN_MAX), (spread_median, pc.MEDIAN),
        (spread_one_run_nan, pc.ONE_RUN),
    ],
}

RIGHT_ANSWERS: dict[str, list] = {
    "ov_qk_circuits": [circuits_by_library, circuits_by_einsum_float64],
    "composition_score": [comp_by_library, comp_by_numpy_svd],
    "ablate_head": [ablate_with_context_and_cross_entropy, ablate_by_result_float64],
    "bootstrap_interval": [boot_loop_numpy, boot_sorted_by_hand],
    "paired_permutation_test": [perm_loop, perm_numpy_sums],
    "seed_spread": [spread_statistics_module, spread_numpy],
}
