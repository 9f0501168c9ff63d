"""Lesson 3c's known wrong answers (each with the phrase its check must say) and right
answers written differently from the reference (each must pass).

MUTANTS[exercise] and RIGHT_ANSWERS[exercise] are lists; ``mutants.py`` merges MUTANTS into
the course-wide table and ``right_answers.py`` RIGHT_ANSWERS.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F

from gptscope.course.checks import evaluation as ce
from gptscope.course.checks import red_teaming as cr
from gptscope.course.solutions import lesson03c_red_teaming as s
from gptscope.evals import calibration as lib_cal
from gptscope.evals import diversity as lib_div
from gptscope.evals import ood as lib_ood

# -- reliability_bins


def _rows(table):
    return [tuple(row) for row in table.tolist()]


def bins_closed_left(conf, correct, n_bins=10, scheme="width"):
    _check_scheme(scheme)
    return _rows(ce.bins_variant(conf, correct, n_bins, scheme, closed_left=True))


def bins_mass_off_by_one(conf, correct, n_bins=10, scheme="width"):
    _check_scheme(scheme)
    return _rows(ce.bins_variant(conf, correct, n_bins, scheme, mass_offset=0))


def bins_empty_zero(conf, correct, n_bins=10, scheme="width"):
    return [(r.lo, r.hi, r.count, r.confidence if r.count else 0.0,
             r.accuracy if r.count else 0.0)
            for r in lib_cal.reliability_bins(conf, correct, n_bins, scheme)]


def bins_empty_dropped(conf, correct, n_bins=10, scheme="width"):
    return [r for r in lib_cal.reliability_bins(conf, correct, n_bins, scheme) if r.count]


def bins_zero_last(conf, correct, n_bins=10, scheme="width"):
    _check_scheme(scheme)
    return _rows(ce.bins_variant(conf, correct, n_bins, scheme, zero_last=True))


def bins_swapped(conf, correct, n_bins=10, scheme="width"):
    return [(r.lo, r.hi, r.count, r.accuracy, r.confidence)
            for r in lib_cal.reliability_bins(conf, correct, n_bins, scheme)]


def bins_midpoint(conf, correct, n_bins=10, scheme="width"):
    return [(r.lo, r.hi, r.count, (r.lo + r.hi) / 2 if r.count else math.nan, r.accuracy)
            for r in lib_cal.reliability_bins(conf, correct, n_bins, scheme)]


def bins_fractions(conf, correct, n_bins=10, scheme="width"):
    return [(r.lo, r.hi, r.count / len(conf), r.confidence, r.accuracy)
            for r in lib_cal.reliability_bins(conf, correct, n_bins, scheme)]


def bins_scheme_ignored(conf, correct, n_bins=10, scheme="width"):
    _check_scheme(scheme)
    return s.reliability_bins(conf, correct, n_bins, "width")


def bins_n_ignored(conf, correct, n_bins=10, scheme="width"):
    return s.reliability_bins(conf, correct, 10, scheme)


def bins_no_value_error(conf, correct, n_bins=10, scheme="width"):
    return s.reliability_bins(conf, correct, n_bins, "width" if scheme != "mass" else scheme)


def bins_accuracy_of_wrong(conf, correct, n_bins=10, scheme="width"):
    return s.reliability_bins(conf, ~correct.bool(), n_bins, scheme)


def _check_scheme(scheme):
    if scheme not in ("width", "mass"):
        raise ValueError(scheme)


def bins_torch_bucketize(conf, correct, n_bins=10, scheme="width"):
    """Right: bucketize against the inner edges, written with tensors throughout."""
    if scheme == "width":
        edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    elif scheme == "mass":
        ordered = torch.sort(conf.double()).values
        at = [min(len(conf), -(-k * len(conf) // n_bins)) - 1 for k in range(1, n_bins)]
        edges = torch.cat([torch.zeros(1, dtype=torch.float64), ordered[at],
                           torch.ones(1, dtype=torch.float64)])
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    which = torch.bucketize(conf.double(), edges[1:-1])
    out = []
    for b in range(n_bins):
        m = which == b
        k = int(m.sum())
        out.append((edges[b].item(), edges[b + 1].item(), k,
                    conf.double()[m].mean().item() if k else float("nan"),
                    correct.double()[m].mean().item() if k else float("nan")))
    return out


def bins_library(conf, correct, n_bins=10, scheme="width"):
    """Right: the library's Bin objects, passed through."""
    return lib_cal.reliability_bins(conf, correct, n_bins, scheme)


# -- temperature_scale


def _fit(logits, labels):
    return lib_cal.fit_temperature(logits, labels)


def ts_fit_on_test(logits, labels, val):
    return logits / _fit(logits[~val], labels[~val])


def ts_fit_on_all(logits, labels, val):
    return logits / _fit(logits, labels)


def ts_multiplied(logits, labels, val):
    return logits * _fit(logits[val], labels[val])


def ts_unfitted(logits, labels, val):
    return logits.clone()


def ts_probs(logits, labels, val):
    return (logits / _fit(logits[val], labels[val])).softmax(-1)


def ts_log_probs(logits, labels, val):
    return (logits / _fit(logits[val], labels[val])).log_softmax(-1)


def ts_only_val(logits, labels, val):
    out = logits.clone()
    out[val] = logits[val] / _fit(logits[val], labels[val])
    return out


def ts_returns_t(logits, labels, val):
    return _fit(logits[val], labels[val])


def ts_test_rows_only(logits, labels, val):
    return logits[~val] / _fit(logits[val], labels[val])


def ts_centred(logits, labels, val):
    centred = logits - logits.mean(-1, keepdim=True)
    return centred / _fit(logits[val], labels[val])


def ts_lbfgs(logits, labels, val):
    """Right: optimise log T with LBFGS in float64."""
    x, y = logits[val].double(), labels[val]
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss
    opt.step(closure)
    return logits / log_t.exp().item()


def ts_library(logits, labels, val):
    """Right: the library's fit, applied in float32."""
    return logits / lib_cal.fit_temperature(logits[val], labels[val])


# -- ood_auroc


def _labelled(inside, outside):
    scores = torch.cat([inside, outside])
    return scores, torch.cat([torch.zeros(len(inside)), torch.ones(len(outside))]).long()


def _check_both(inside, outside):
    if len(inside) == 0 or len(outside) == 0:
        raise ValueError("empty")


def ood_ties_win(inside, outside):
    _check_both(inside, outside)
    return float((outside[:, None] >= inside[None, :]).double().mean())


def ood_ties_lose(inside, outside):
    _check_both(inside, outside)
    return float((outside[:, None] > inside[None, :]).double().mean())


def ood_swapped(inside, outside):
    return s.ood_auroc(outside, inside)


def ood_no_value_error(inside, outside):
    if len(inside) == 0 or len(outside) == 0:
        return 0.5
    return s.ood_auroc(inside, outside)


def ood_accuracy(inside, outside):
    _check_both(inside, outside)
    scores, labels = _labelled(inside, outside)
    return float(((scores > 0.5).long() == labels).double().mean())


def ood_mean_gap(inside, outside):
    _check_both(inside, outside)
    return float(outside.mean() - inside.mean())


def ood_library(inside, outside):
    """Right: the library's rank-based AUROC on the labelled union."""
    _check_both(inside, outside)
    return lib_ood.auroc(*_labelled(inside, outside))


def ood_sorted_sweep(inside, outside):
    """Right: count, for each out-of-distribution score, the in-distribution scores below
    and equal to it, with searchsorted."""
    _check_both(inside, outside)
    ordered = inside.double().sort().values
    below = torch.searchsorted(ordered, outside.double(), right=False)
    upto = torch.searchsorted(ordered, outside.double(), right=True)
    return ((below + upto).double() / 2).sum().item() / (len(inside) * len(outside))


# -- loglik_choice


def _pick(scores, last=False):
    best = 0
    for i, x in enumerate(scores):
        if x > scores[best] or (last and x == scores[best]):
            best = i
    return best


def ll_normalise_ignored(logprobs, choices, normalise):
    return _pick([sum(lp) for lp in logprobs])


def ll_always_normalised(logprobs, choices, normalise):
    return _pick([sum(lp) / len(c) for lp, c in zip(logprobs, choices)])


def ll_per_token(logprobs, choices, normalise):
    return _pick([sum(lp) / (len(lp) if normalise else 1) for lp in logprobs])


def ll_stripped(logprobs, choices, normalise):
    return _pick([sum(lp) / (len(c.strip()) if normalise else 1)
                  for lp, c in zip(logprobs, choices)])


def ll_argmin(logprobs, choices, normalise):
    return _pick([-sum(lp) / (len(c) if normalise else 1) for lp, c in zip(logprobs, choices)])


def ll_last_tie(logprobs, choices, normalise):
    return _pick([sum(lp) / (len(c) if normalise else 1) for lp, c in zip(logprobs, choices)],
                 last=True)


def ll_first_token(logprobs, choices, normalise):
    return _pick([lp[0] / (len(c) if normalise else 1) for lp, c in zip(logprobs, choices)])


def ll_summed_probs(logprobs, choices, normalise):
    return _pick([sum(math.exp(x) for x in lp) / (len(c) if normalise else 1)
                  for lp, c in zip(logprobs, choices)])


def ll_one_based(logprobs, choices, normalise):
    return s.loglik_choice(logprobs, choices, normalise) + 1


def ll_returns_scores(logprobs, choices, normalise):
    return [sum(lp) for lp in logprobs]


def ll_best_token(logprobs, choices, normalise):
    return max(range(len(choices)), key=lambda i: max(logprobs[i]))


def ll_tensor_argmax(logprobs, choices, normalise):
    """Right: torch.argmax (which returns the first maximum) in float64."""
    totals = torch.tensor([math.fsum(lp) for lp in logprobs], dtype=torch.float64)
    if normalise:
        totals = totals / torch.tensor([len(c) for c in choices], dtype=torch.float64)
    return int(torch.argmax(totals))


def ll_sorted(logprobs, choices, normalise):
    """Right: a stable sort on the negated scores; the first is the pick."""
    scores = [sum(lp) / (len(c) if normalise else 1) for lp, c in zip(logprobs, choices)]
    return sorted(range(len(scores)), key=lambda i: -scores[i])[0]


# -- attack_success_rate


def _nonempty(scores):
    if len(scores) == 0:
        raise ValueError("empty")


def asr_at_least(scores, threshold=0.5):
    _nonempty(scores)
    return (scores >= threshold).double().mean().item()


def asr_threshold_ignored(scores, threshold=0.5):
    _nonempty(scores)
    return (scores > 0.5).double().mean().item()


def asr_failures(scores, threshold=0.5):
    _nonempty(scores)
    return (scores <= threshold).double().mean().item()


def asr_counted(scores, threshold=0.5):
    _nonempty(scores)
    return float((scores > threshold).sum())


def asr_mean_score(scores, threshold=0.5):
    _nonempty(scores)
    return scores.mean().item()


def asr_no_value_error(scores, threshold=0.5):
    if len(scores) == 0:
        return 0.0
    return (scores > threshold).double().mean().item()


def asr_tensor_mask(scores, threshold=0.5):
    _nonempty(scores)
    return (scores > threshold).double().mean()


def asr_below_count(scores, threshold=0.5):
    _nonempty(scores)
    return 1 - (scores < threshold).double().mean().item()


def asr_loop(scores, threshold=0.5):
    """Right: a plain loop over Python floats."""
    values = scores.tolist()
    if not values:
        raise ValueError("scores is empty")
    return sum(1 for v in values if v > threshold) / len(values)


def asr_tensor(scores, threshold=0.5):
    """Right: a 0-d float tensor is a float too."""
    if scores.numel() == 0:
        raise ValueError("scores is empty")
    return scores.gt(threshold).float().mean()


# -- self_bleu


def _sb(texts, max_n, **kw):
    return float(cr.self_bleu_variant(texts, max_n, **kw))


def sb_with_itself(texts, max_n=4):
    return _sb(texts, max_n, with_itself=True)


def sb_unsmoothed(texts, max_n=4):
    return _sb(texts, max_n, smooth=False)


def sb_no_brevity(texts, max_n=4):
    return _sb(texts, max_n, brevity="none")


def sb_unclipped(texts, max_n=4):
    return _sb(texts, max_n, clip="none")


def sb_pooled(texts, max_n=4):
    return _sb(texts, max_n, clip="sum")


def sb_arithmetic(texts, max_n=4):
    return _sb(texts, max_n, mean="arithmetic")


def sb_shortest_ref(texts, max_n=4):
    return _sb(texts, max_n, brevity="shortest")


def sb_max_n_ignored(texts, max_n=4):
    return _sb(texts, 4)


def sb_characters(texts, max_n=4):
    return lib_div.self_bleu(texts, max_n, tokenize=list)


def sb_distinct(texts, max_n=4):
    return lib_div.distinct_n(texts, max_n)


def sb_nltk_style(texts, max_n=4):
    """Right: BLEU written from n-gram Counters with `&` clipping, one reference at a time
    merged by `|`, and log-space brevity."""
    words = [t.split() for t in texts]
    total = 0.0
    for i, hyp in enumerate(words):
        refs = words[:i] + words[i + 1:]
        if not hyp:
            continue
        logs = []
        for n in range(1, max_n + 1):
            grams = Counter(zip(*(hyp[k:] for k in range(n))))
            best = Counter()
            for ref in refs:
                best |= Counter(zip(*(ref[k:] for k in range(n))))
            hits = sum((grams & best).values())
            if n == 1 and not hits:
                logs = None
                break
            logs.append(math.log((hits or 0.1) / max(sum(grams.values()), 1)))
        if logs is None:
            continue
        c = len(hyp)
        r = sorted((len(ref) for ref in refs), key=lambda n: (abs(n - c), n))[0]
        total += math.exp(sum(logs) / max_n + (0.0 if c > r else 1 - r / c))
    return total / len(words)


def sb_library(texts, max_n=4):
    """Right: the library's BLEU against the other texts."""
    words = [t.split() for t in texts]
    return sum(lib_div.bleu(w, words[:i] + words[i + 1:], max_n)
               for i, w in enumerate(words)) / len(words)


MUTANTS = {
    "reliability_bins": [
        (bins_closed_left, ce.CLOSED_LEFT), (bins_mass_off_by_one, ce.MASS_OFF_BY_ONE),
        (bins_empty_zero, ce.EMPTY_ZERO), (bins_empty_dropped, ce.EMPTY_DROPPED),
        (bins_zero_last, ce.ZERO_LAST), (bins_swapped, ce.SWAPPED_COLUMNS),
        (bins_midpoint, ce.MIDPOINT), (bins_fractions, ce.FRACTIONS),
        (bins_scheme_ignored, ce.SCHEME_IGNORED), (bins_n_ignored, ce.NBINS_IGNORED),
        (bins_no_value_error, "raise ValueError"),
        (bins_accuracy_of_wrong, "differs from the right answer")],
    "temperature_scale": [
        (ts_fit_on_test, ce.FIT_ON_TEST), (ts_fit_on_all, ce.FIT_ON_ALL),
        (ts_multiplied, ce.MULTIPLIED), (ts_unfitted, ce.UNFITTED), (ts_probs, ce.PROBS),
        (ts_log_probs, ce.LOG_PROBS), (ts_only_val, ce.ONLY_VAL_SCALED),
        (ts_returns_t, "returned a number (T?)"), (ts_test_rows_only, "returned only some rows"),
        (ts_centred, "differs from the right answer")],
    "ood_auroc": [
        (ood_ties_win, "ties counted as wins"), (ood_ties_lose, "ties counted as losses"),
        (ood_swapped, ce.OOD_SWAPPED),
        (ood_no_value_error, "raise ValueError"), (ood_accuracy, "accuracy at threshold 0.5"),
        (ood_mean_gap, "differs from the right answer")],
    "loglik_choice": [
        (ll_normalise_ignored, cr.NORMALISE_IGNORED), (ll_always_normalised, cr.ALWAYS_NORMALISED),
        (ll_per_token, cr.PER_TOKEN), (ll_stripped, cr.STRIPPED), (ll_argmin, cr.ARGMIN),
        (ll_last_tie, cr.LAST_TIE), (ll_first_token, cr.FIRST_TOKEN),
        (ll_summed_probs, cr.SUMMED_PROBS), (ll_one_based, cr.ONE_BASED),
        (ll_returns_scores, "return an int"), (ll_best_token, "differs from the right answer")],
    "attack_success_rate": [
        (asr_at_least, cr.AT_LEAST), (asr_threshold_ignored, cr.THRESHOLD_IGNORED),
        (asr_failures, cr.FAILURES), (asr_counted, cr.COUNTED), (asr_mean_score, cr.MEAN_SCORE),
        (asr_no_value_error, "raise ValueError"), (asr_below_count, cr.AT_LEAST)],
    "self_bleu": [
        (sb_with_itself, cr.WITH_ITSELF), (sb_unsmoothed, cr.UNSMOOTHED),
        (sb_no_brevity, cr.NO_BREVITY), (sb_unclipped, cr.UNCLIPPED), (sb_pooled, cr.POOLED),
        (sb_arithmetic, cr.ARITHMETIC), (sb_shortest_ref, cr.SHORTEST_REF),
        (sb_max_n_ignored, cr.MAX_N_IGNORED), (sb_characters, "differs from the right answer"),
        (sb_distinct, "differs from the right answer")],
}

RIGHT_ANSWERS = {
    "reliability_bins": [bins_torch_bucketize, bins_library],
    "temperature_scale": [ts_lbfgs, ts_library],
    "ood_auroc": [ood_library, ood_sorted_sweep],
    "loglik_choice": [ll_tensor_argmax, ll_sorted],
    "attack_success_rate": [asr_loop, asr_tensor, asr_tensor_mask],
    "self_bleu": [sb_nltk_style, sb_library],
}
