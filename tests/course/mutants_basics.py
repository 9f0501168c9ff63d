"""More wrong answers to lessons 1-5, mistakes learners make that the first list lacked.

Each is (wrong function, phrase its check must say); mutants.py adds them to MUTANTS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptscope.course.solutions import lesson01_mlp as s01
from gptscope.course.solutions import lesson03_positions as s03
from gptscope.course.solutions import lesson03b_evaluation as s03b
from gptscope.course.solutions import lesson04_attention as s04
from gptscope.course.solutions import lesson05_transformer as s05
from gptscope.model import functional as gf

# -- lesson 1


def mlp_sigmoid(x, W1, b1, W2, b2):
    return torch.sigmoid(x @ W1 + b1) @ W2 + b2


def mlp_bias_after_relu(x, W1, b1, W2, b2):
    return (torch.relu(x @ W1) + b1) @ W2 + b2


def mlp_w1_transposed(x, W1, b1, W2, b2):
    return torch.relu(x @ W1.T + b1) @ W2 + b2


def mlp_returns_hidden(x, W1, b1, W2, b2):
    return torch.relu(x @ W1 + b1)


def backward_no_softmax(x, y, W1, b1, W2, b2):
    n = x.shape[0]
    h = torch.relu(x @ W1 + b1)
    d = (h @ W2 + b2).clone()
    d[torch.arange(n), y] -= 1
    d /= n
    dpre = (d @ W2.T) * (x @ W1 + b1 > 0)
    return {"W1": x.T @ dpre, "b1": dpre.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


def backward_bias_mean(x, y, W1, b1, W2, b2):
    grads = s01.mlp_backward(x, y, W1, b1, W2, b2)
    return grads | {"b2": grads["b2"] / x.shape[0]}


def backward_list(x, y, W1, b1, W2, b2):
    return list(s01.mlp_backward(x, y, W1, b1, W2, b2).values())


# -- lesson 2


def softmax_global_max(x, dim=-1):
    e = (x - x.max()).exp()
    return e / e.sum(dim, keepdim=True)


def softmax_returns_log(x, dim=-1):
    return gf.log_softmax(x, dim)


def log_softmax_max_not_added_back(x, dim=-1):
    m = x.amax(dim, keepdim=True)
    return x - (x - m).exp().sum(dim, keepdim=True).log()


def log_softmax_no_max(x, dim=-1):
    return x - x.exp().sum(dim, keepdim=True).log()


def ce_mean_over_classes(logits, targets):
    one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return -(gf.log_softmax(logits, -1) * one_hot).mean()


def ce_naive(logits, targets):
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return -p.gather(-1, targets.unsqueeze(-1)).log().mean()


def ce_raw_logit(logits, targets):
    return -logits.gather(-1, targets.unsqueeze(-1)).mean()


def ce_float_loss(logits, targets):
    return float(gf.cross_entropy(logits, targets))


# -- lesson 3


def sin_base_ignored(n_pos, d_model, base=10000.0):
    return s03.sinusoidal_positions(n_pos, d_model, 10000.0)


def sin_concat(n_pos, d_model, base=10000.0):
    pe = s03.sinusoidal_positions(n_pos, d_model, base)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], 1)


def sin_transposed(n_pos, d_model, base=10000.0):
    return s03.sinusoidal_positions(n_pos, d_model, base).T


def _rope(x, positions, base, layout="half", sign=1.0):
    d = x.shape[-1]
    inv = base ** (-torch.arange(d // 2, dtype=torch.float64) * 2 / d)
    ang = torch.outer(positions.double(), inv)
    cos, sin = ang.cos().to(x.dtype), (sign * ang.sin()).to(x.dtype)
    if layout == "pairs":
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
        return out
    a, b = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)


def rope_interleaved(x, positions, base=10000.0):
    return _rope(x, positions, base, layout="pairs")


def rope_backwards(x, positions, base=10000.0):
    return _rope(x, positions, base, sign=-1.0)


def rope_from_zero(x, positions, base=10000.0):
    return _rope(x, torch.arange(x.shape[-2]), base)


def rope_fixed_base(x, positions, base=10000.0):
    return _rope(x, positions, 10000.0)


def rope_exp_i(x, positions, base=10000.0):
    d = x.shape[-1]
    inv = base ** (-torch.arange(d // 2, dtype=torch.float64) / d)
    ang = torch.outer(positions.double(), inv)
    a, b = x[..., : d // 2], x[..., d // 2:]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)


def rope_float64_out(x, positions, base=10000.0):
    return _rope(x.double(), positions, base)


def _alibi(n_heads, n_query, n_key, first=1, sign=1.0, offset=True, mask=True):
    n_key = n_query if n_key is None else n_key
    slopes = 2.0 ** (-8.0 * torch.arange(first, first + n_heads) / n_heads)
    q = torch.arange(n_query)[:, None] + (n_key - n_query if offset else 0)
    dist = (torch.arange(n_key)[None, :] - q).float()
    bias = sign * slopes[:, None, None] * dist
    return bias.masked_fill(dist > 0, -math.inf) if mask else bias


def alibi_head_zero(n_heads, n_query, n_key=None):
    return _alibi(n_heads, n_query, n_key, first=0)


def alibi_rewards_distance(n_heads, n_query, n_key=None):
    return _alibi(n_heads, n_query, n_key, sign=-1.0)


def alibi_no_offset(n_heads, n_query, n_key=None):
    return _alibi(n_heads, n_query, n_key, offset=False)


def alibi_unmasked(n_heads, n_query, n_key=None):
    return _alibi(n_heads, n_query, n_key, mask=False)


def alibi_zero_future(n_heads, n_query, n_key=None):
    return _alibi(n_heads, n_query, n_key).nan_to_num(neginf=0.0)


def alibi_linear_slopes(n_heads, n_query, n_key=None):
    bias = _alibi(1, n_query, n_key)[0] * 2.0 ** 8  # distances, masked
    return bias / torch.arange(1, n_heads + 1)[:, None, None]  # slopes 1/h, not geometric


# -- lesson 3b


def _bins(conf, n_bins, floor=False):
    edges = torch.floor(conf * n_bins) if floor else torch.ceil(conf * n_bins) - 1
    return edges.clamp(0, n_bins - 1).long()


def _ece(probs, labels, n_bins, floor=False):
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    conf = conf.double()
    bins = _bins(conf, n_bins, floor)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum().item() / len(conf) * (correct[m].mean() - conf[m].mean()).abs()
    return float(total)


def ece_floor_bins(probs, labels, n_bins=10):
    return _ece(probs, labels, n_bins, floor=True)


def ece_ignores_n_bins(probs, labels, n_bins=10):
    return _ece(probs, labels, 10)


def ece_list(probs, labels, n_bins=10):
    return [s03b.expected_calibration_error(probs, labels, n_bins)]


def ece_float64_tensor(probs, labels, n_bins=10):
    return torch.tensor([_ece(probs, labels, n_bins)])  # [1], not a float


def auroc_ties_win(scores, labels):
    pos, neg = scores[labels.bool()], scores[~labels.bool()]
    return (pos[:, None] >= neg[None, :]).double().mean().item()


def auroc_ties_lose(scores, labels):
    pos, neg = scores[labels.bool()], scores[~labels.bool()]
    return (pos[:, None] > neg[None, :]).double().mean().item()


def auroc_flipped(scores, labels):
    return 1 - s03b.auroc(scores, labels)


def auroc_accuracy(scores, labels):
    return ((scores > 0.5).long() == labels.long()).double().mean().item()


def auroc_never_raises(scores, labels):
    labels = labels.bool()
    if labels.all() or not labels.any():
        return 0.5
    return s03b.auroc(scores, labels)


def auroc_rank_no_tie_average(scores, labels):
    order = torch.argsort(scores.double(), stable=True)
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    n_pos = int(labels.bool().sum())
    n_neg = len(scores) - n_pos
    return ((ranks[labels.bool()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def temperature_inverse(logits, labels):
    return 1 / s03b.fit_temperature(logits, labels)


def temperature_unfitted(logits, labels):
    return 1.0


def temperature_grid(logits, labels):
    grid = [0.25 * k for k in range(1, 41)]  # too coarse: 0.25 apart
    return min(grid, key=lambda t: F.cross_entropy(logits / t, labels).item())


def temperature_few_steps(logits, labels):
    lo, hi = -5.0, 5.0
    for _ in range(5):  # stopped too early
        mid = (lo + hi) / 2
        a = F.cross_entropy(logits.double() / math.exp(mid - 1e-4), labels)
        b = F.cross_entropy(logits.double() / math.exp(mid + 1e-4), labels)
        lo, hi = (mid, hi) if b < a else (lo, mid)
    return math.exp((lo + hi) / 2)


def temperature_negative(logits, labels):
    return -s03b.fit_temperature(logits, labels)


# -- lesson 4


def mask_square_only(n_query, n_key=None):
    return s04.causal_mask(n_query)


def mask_hidden_convention(n_query, n_key=None):
    return ~s04.causal_mask(n_query, n_key)


def mask_int(n_query, n_key=None):
    return s04.causal_mask(n_query, n_key).int()


def mask_nested_list(n_query, n_key=None):
    return s04.causal_mask(n_query, n_key).tolist()


def mask_triu_hidden(n_query, n_key=None):
    n_key = n_query if n_key is None else n_key
    return torch.ones(n_query, n_key, dtype=torch.bool).triu(1 + n_key - n_query)


def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def attn_fill_zero(q, k, v, mask=None):
    s = _scores(q, k)
    return (s if mask is None else s.masked_fill(~mask, 0.0)).softmax(-1) @ v


def attn_mask_after_softmax(q, k, v, mask=None):
    w = _scores(q, k).softmax(-1)
    return (w if mask is None else w * mask) @ v


def attn_naive_exp(q, k, v, mask=None):
    e = _scores(q, k).exp()
    e = e if mask is None else e * mask
    return e / e.sum(-1, keepdim=True) @ v


def attn_q_k_swapped(q, k, v, mask=None):
    if q.shape[-2] != k.shape[-2]:
        return s04.attention(q, k, v, mask)[..., :0]  # cannot swap: wrong shape
    s = _scores(k, q)
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1) @ v


def _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, qkv_bias=True, heads="sum",
         scale=None):
    q = torch.einsum("bpm,hmd->bhpd", x, W_Q)
    k = torch.einsum("bpm,hmd->bhpd", x, W_K)
    v = torch.einsum("bpm,hmd->bhpd", x, W_V)
    if qkv_bias:
        q, k, v = (t + b[None, :, None] for t, b in ((q, b_Q), (k, b_K), (v, b_V)))
    mask = gf.causal_mask(x.shape[1]) if causal else None
    z = gf.attention(q, k, v, mask, scale=scale)
    per_head = torch.einsum("bhpd,hdm->bhpm", z, W_O)
    out = per_head.sum(1) if heads == "sum" else per_head.mean(1)
    return out + b_O


def mha_no_qkv_bias(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, qkv_bias=False)


def mha_heads_averaged(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, heads="mean")


def mha_scale_d_head(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, scale=1 / W_Q.shape[-1])


def mha_bo_per_head(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal) + (W_Q.shape[0] - 1) * b_O


def mha_always_causal(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, True)


# -- lesson 5


def _ln_parts(x, eps):
    c = x - x.mean(-1, keepdim=True)
    return c, c.pow(2).mean(-1, keepdim=True)


def ln_eps_ignored(x, w, b, eps=1e-5):
    c, var = _ln_parts(x, eps)
    return c / var.sqrt() * w + b


def ln_w_b_swapped(x, w, b, eps=1e-5):
    c, var = _ln_parts(x, eps)
    return c / (var + eps).sqrt() * b + w


def ln_eps_fixed(x, w, b, eps=1e-5):
    c, var = _ln_parts(x, 1e-5)
    return c / (var + 1e-5).sqrt() * w + b


def ln_dim0(x, w, b, eps=1e-5):
    c = x - x.mean(0, keepdim=True)
    return c / (c.pow(2).mean(0, keepdim=True) + eps).sqrt() * w + b


def ln_torch_std(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + eps) * w + b


def rms_centred(x, w, eps=1e-6):
    c = x - x.mean(-1, keepdim=True)
    return c / (c.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w


def rms_eps_outside(x, w, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w


def rms_no_eps(x, w, eps=1e-6):
    return x / x.pow(2).mean(-1, keepdim=True).sqrt() * w


def rms_sum(x, w, eps=1e-6):
    return x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt() * w


def rms_std(x, w, eps=1e-6):
    return x / (x.var(-1, keepdim=True, correction=0) + eps).sqrt() * w


def rms_no_w(x, w, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def rms_dim0(x, w, eps=1e-6):
    return x / (x.pow(2).mean(0, keepdim=True) + eps).sqrt() * w


def _block_params_with(params, **swap):
    return {**params, **{k: params[v] for k, v in swap.items()}}


def block_ln1_twice(x, params, cfg):
    return s05.transformer_block(x, _block_params_with(params, **{"ln2.w": "ln1.w",
                                                                  "ln2.b": "ln1.b"}), cfg)


def block_no_mlp_bias(x, params, cfg):
    p = dict(params)
    p["mlp.b_in"] = torch.zeros_like(p["mlp.b_in"])
    return s05.transformer_block(x, p, cfg)


MUTANTS = {
    "mlp_forward": [(mlp_sigmoid, "sigmoid"), (mlp_bias_after_relu, "b1 added after the ReLU"),
                    (mlp_w1_transposed, "shapes cannot be multiplied"),
                    (mlp_returns_hidden, "returned the hidden layer")],
    "mlp_backward": [(backward_no_softmax, "softmax(logits) - one_hot(y)"),
                     (backward_bias_mean, "= 1/6"),
                     (backward_list, "return a dict")],
    "softmax": [(softmax_global_max, "max of the whole tensor"),
                (softmax_returns_log, "returned log-softmax")],
    "log_softmax": [(log_softmax_max_not_added_back, "not added back"),
                    (log_softmax_no_max, "overflows for large inputs")],
    "cross_entropy": [(ce_mean_over_classes, "averaged over the classes too"),
                      (ce_naive, "overflow"), (ce_raw_logit, "raw logit"),
                      (ce_float_loss, "expected a tensor")],
    "sinusoidal_positions": [(sin_base_ignored, "base ignored"),
                             (sin_concat, "concatenated"), (sin_transposed, "swapped")],
    "expected_calibration_error": [(ece_floor_bins, "bin edge"),
                                   (ece_ignores_n_bins, "n_bins ignored"),
                                   (ece_list, "return a float"),
                                   (ece_float64_tensor, "return a float")],
    "causal_mask": [(mask_square_only, "square"),
                    (mask_hidden_convention, "True marks what is hidden"),
                    (mask_int, "0/1 values"), (mask_nested_list, "list, not a tensor"),
                    (mask_triu_hidden, "True marks what is hidden")],
    "attention": [(attn_fill_zero, "set to 0"), (attn_mask_after_softmax, "after the softmax"),
                  (attn_naive_exp, "overflows for large scores"),
                  (attn_q_k_swapped, "q and k swapped")],
    "multihead_attention": [(mha_no_qkv_bias, "b_Q, b_K, b_V"),
                            (mha_heads_averaged, "heads averaged"),
                            (mha_scale_d_head, "divided by d_head instead of sqrt"),
                            (mha_bo_per_head, "b_O added once per head"),
                            (mha_always_causal, "although causal=False")],
    "layer_norm": [(ln_eps_ignored, "eps ignored"), (ln_w_b_swapped, "w and b swapped"),
                   (ln_eps_fixed, "eps fixed at 1e-5"), (ln_dim0, "wrong dimension"),
                   (ln_torch_std, "differs from the right answer")],
    "rotary_embed": [(rope_interleaved, "interleaved pairs"), (rope_backwards, "wrong way"),
                     (rope_from_zero, "positions ignored"), (rope_fixed_base, "base ignored"),
                     (rope_exp_i, "i instead of 2i"), (rope_float64_out, "keep the input's")],
    "alibi_bias": [(alibi_head_zero, "slopes start at head 0"),
                   (alibi_rewards_distance, "sign is flipped"),
                   (alibi_no_offset, "the *last* positions"),
                   (alibi_unmasked, "future keys are not masked"),
                   (alibi_zero_future, "future keys get 0"),
                   (alibi_linear_slopes, "differs from the right answer")],
    "auroc": [(auroc_ties_win, "ties counted as wins"), (auroc_ties_lose, "ties counted as"),
              (auroc_flipped, "wrong way round"), (auroc_accuracy, "accuracy at threshold"),
              (auroc_never_raises, "raise ValueError"),
              (auroc_rank_no_tie_average, "not averaged")],
    "fit_temperature": [(temperature_inverse, "returned 1/T"),
                        (temperature_unfitted, "not fitted"),
                        (temperature_grid, "differs from the right answer"),
                        (temperature_few_steps, "differs from the right answer"),
                        (temperature_negative, "must be a positive number")],
    "rms_norm": [(rms_centred, "the mean was subtracted"), (rms_eps_outside, "eps added outside"),
                 (rms_no_eps, "eps ignored"), (rms_sum, "sum of squares"),
                 (rms_std, "standard deviation"), (rms_no_w, "w not applied"),
                 (rms_dim0, "differs from the right answer")],
    "transformer_block": [(block_ln1_twice, "ln1 used for both"),
                          (block_no_mlp_bias, "b_in")],
}
