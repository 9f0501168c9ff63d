"""Known wrong answers to the course exercises, each with the phrase its check must say.

MUTANTS[exercise] is a list of (wrong function, key phrase). Every check must fail on every
mutant of its exercise and its message must contain the phrase: the check names the mistake.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptscope.config import gelu_new
from gptscope.course.solutions import (
    lesson01_mlp as s01,
)
from gptscope.course.solutions import (
    lesson06_gpt as s06,
)
from gptscope.course.solutions import (
    lesson07_real_models as s07,
)
from gptscope.course.solutions import (
    lesson09_induction as s09,
)
from gptscope.model import functional as gf
from gptscope.steering import SteeringVector

from .mutants_assistant import MUTANTS as ASSISTANT_MUTANTS
from .mutants_basics import MUTANTS as BASICS_MUTANTS
from .mutants_circuits import MUTANTS as CIRCUITS_MUTANTS
from .mutants_contrastive import MUTANTS as CONTRASTIVE_MUTANTS
from .mutants_data_parallel import MUTANTS as DATA_PARALLEL_MUTANTS
from .mutants_encoder_decoder import MUTANTS as ENCODER_DECODER_MUTANTS
from .mutants_features import MUTANTS as FEATURES_MUTANTS
from .mutants_gpt import MUTANTS as GPT_MUTANTS
from .mutants_interp import MUTANTS as INTERP_MUTANTS
from .mutants_optimization import MUTANTS as OPTIMIZATION_MUTANTS
from .mutants_real_models import MUTANTS as REAL_MODELS_MUTANTS
from .mutants_red_teaming import MUTANTS as RED_TEAMING_MUTANTS
from .mutants_scaling import MUTANTS as SCALING_MUTANTS
from .mutants_vision import MUTANTS as VISION_MUTANTS

# -- lesson 1


def mlp_no_relu(x, W1, b1, W2, b2):
    return (x @ W1 + b1) @ W2 + b2


def mlp_softmax(x, W1, b1, W2, b2):
    return (torch.relu(x @ W1 + b1) @ W2 + b2).softmax(-1)


def mlp_no_b2(x, W1, b1, W2, b2):
    return torch.relu(x @ W1 + b1) @ W2


def backward_sum(x, y, W1, b1, W2, b2):
    return {k: v * x.shape[0] for k, v in s01.mlp_backward(x, y, W1, b1, W2, b2).items()}


def backward_no_relu_grad(x, y, W1, b1, W2, b2):
    n = x.shape[0]
    h = torch.relu(x @ W1 + b1)
    d = (h @ W2 + b2).softmax(-1)
    d[torch.arange(n), y] -= 1
    d /= n
    dpre = d @ W2.T
    return {"W1": x.T @ dpre, "b1": dpre.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


def backward_transposed(x, y, W1, b1, W2, b2):
    g = s01.mlp_backward(x, y, W1, b1, W2, b2)
    g["W2"] = g["W2"].T
    return g


def classifier_untrained(x_train, y_train, n_classes, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(x_train.shape[1], n_classes)
    return lambda x: model(x).argmax(-1)


# -- lesson 2


def softmax_naive(x, dim=-1):
    return x.exp() / x.exp().sum(dim, keepdim=True)


def softmax_fixed_dim(x, dim=-1):
    return gf.softmax(x, -1)


def softmax_unnormalised(x, dim=-1):
    return (x - x.amax(dim, keepdim=True)).exp()


def log_softmax_naive(x, dim=-1):
    return gf.softmax(x, dim).log()


def log_softmax_max_only(x, dim=-1):
    return x - x.amax(dim, keepdim=True)


def ce_sum(logits, targets):
    return -gf.log_softmax(logits).gather(-1, targets.unsqueeze(-1)).sum()


def ce_no_log(logits, targets):
    return -gf.softmax(logits).gather(-1, targets.unsqueeze(-1)).mean()


def ce_sign(logits, targets):
    return gf.log_softmax(logits).gather(-1, targets.unsqueeze(-1)).mean()


# -- lesson 3


def _sin(n_pos, d, base, start=0, swap=False, exp_i=False):
    pos = torch.arange(start, start + n_pos, dtype=torch.float64)[:, None]
    i = torch.arange(0, (d + 1) // 2, dtype=torch.float64)
    ang = pos / base ** ((i if exp_i else 2 * i) / d)
    pe = torch.zeros(n_pos, d, dtype=torch.float64)
    f, g = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    pe[:, 0::2] = f(ang)
    pe[:, 1::2] = g(ang[:, : d // 2])
    return pe.float()


def sin_start_1(n_pos, d_model, base=10000.0):
    return _sin(n_pos, d_model, base, start=1)


def sin_swapped(n_pos, d_model, base=10000.0):
    return _sin(n_pos, d_model, base, swap=True)


def sin_exp_i(n_pos, d_model, base=10000.0):
    return _sin(n_pos, d_model, base, exp_i=True)


# -- lesson 3b


def ece_unweighted(probs, labels, n_bins=10):
    from gptscope.course.checks.calibration import reference_ece
    return reference_ece(probs, labels, n_bins, weighted=False)


def ece_per_sample(probs, labels, n_bins=10):
    conf, pred = probs.max(-1)
    return ((pred == labels).double() - conf.double()).abs().mean().item()


def ece_true_class(probs, labels, n_bins=10):
    from gptscope.course.checks.calibration import reference_ece
    return reference_ece(probs, labels, n_bins, true_class=True)


# -- lesson 4


def mask_strict(n_query, n_key=None):
    n_key = n_query if n_key is None else n_key
    return torch.arange(n_key)[None] < torch.arange(n_query)[:, None] + (n_key - n_query)


def mask_upper(n_query, n_key=None):
    n_key = n_query if n_key is None else n_key
    return torch.arange(n_key)[None] >= torch.arange(n_query)[:, None] + (n_key - n_query)


def mask_float(n_query, n_key=None):
    return gf.causal_mask(n_query, n_key).float()


def mask_no_offset(n_query, n_key=None):
    n_key = n_query if n_key is None else n_key
    return torch.ones(n_query, n_key, dtype=torch.bool).tril()


def _attn(q, k, v, mask, scale=None, axis=-1, flip=False):
    s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        s = s.masked_fill(mask if flip else ~mask, float("-inf"))
    return s.softmax(axis) @ v


def attn_no_scale(q, k, v, mask=None):
    return _attn(q, k, v, mask, scale=1.0)


def attn_mask_reversed(q, k, v, mask=None):
    return _attn(q, k, v, mask, flip=True)


def attn_wrong_axis(q, k, v, mask=None):
    return _attn(q, k, v, mask, axis=-2)


def _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True, scale=None, bo=True):
    q = torch.einsum("bpm,hmd->bhpd", x, W_Q) + b_Q[None, :, None]
    k = torch.einsum("bpm,hmd->bhpd", x, W_K) + b_K[None, :, None]
    v = torch.einsum("bpm,hmd->bhpd", x, W_V) + b_V[None, :, None]
    mask = gf.causal_mask(x.shape[1]) if causal else None
    z = gf.attention(q, k, v, mask, scale=scale)
    out = torch.einsum("bhpd,hdm->bpm", z, W_O)
    return out + b_O if bo else out


def mha_never_causal(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=False)


def mha_sqrt_d_model(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal,
                scale=1 / math.sqrt(x.shape[-1]))


def mha_no_bo(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    return _mha(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, bo=False)


# -- lesson 5


def ln_unbiased(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + eps).sqrt() * w + b


def ln_eps_outside(x, w, b, eps=1e-5):
    c = x - x.mean(-1, keepdim=True)
    return c / (c.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w + b


def ln_no_center(x, w, b, eps=1e-5):
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def _block(x, p, cfg, post=False, causal=None, act=gelu_new, residual=True):
    causal = cfg.causal if causal is None else causal

    def ln(h, n):
        return gf.layer_norm(h, p[n + ".w"], p[n + ".b"], cfg.eps)

    def attn(h):
        return gf.multihead_attention(h, *(p["attn." + k] for k in (
            "W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")), causal=causal)

    def mlp(h):
        return act(h @ p["mlp.W_in"] + p["mlp.b_in"]) @ p["mlp.W_out"] + p["mlp.b_out"]

    if post:
        mid = ln(x + attn(x), "ln1")
        return ln(mid + mlp(mid), "ln2")
    if not residual:
        return mlp(ln(attn(ln(x, "ln1")), "ln2"))
    mid = x + attn(ln(x, "ln1"))
    return mid + mlp(ln(mid, "ln2"))


def block_post_ln(x, params, cfg):
    return _block(x, params, cfg, post=True)


def block_never_causal(x, params, cfg):
    return _block(x, params, cfg, causal=False)


def block_relu(x, params, cfg):
    return _block(x, params, cfg, act=F.relu)


def block_exact_gelu(x, params, cfg):
    return _block(x, params, cfg, act=F.gelu)


def block_no_residual(x, params, cfg):
    return _block(x, params, cfg, residual=False)


# -- lesson 6


def _gpt(tokens, p, cfg, pos=True, final_ln=True, causal=True):
    n = tokens.shape[1]
    x = p["embed.W_E"][tokens] + (p["pos_embed.W_pos"][:n] if pos else 0)
    for i in range(cfg.n_layers):
        sub = {k[len(f"blocks.{i}."):]: v for k, v in p.items() if k.startswith(f"blocks.{i}.")}
        x = _block(x, sub, cfg, causal=causal)
    if final_ln:
        x = gf.layer_norm(x, p["ln_final.w"], p["ln_final.b"], cfg.eps)
    return x @ p["unembed.W_U"]


def gpt_no_pos(tokens, params, cfg):
    return _gpt(tokens, params, cfg, pos=False)


def gpt_no_final_ln(tokens, params, cfg):
    return _gpt(tokens, params, cfg, final_ln=False)


def gpt_not_causal(tokens, params, cfg):
    return _gpt(tokens, params, cfg, causal=False)


def sample_k_plus_1(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return s06.sample_next(logits, temperature, None if top_k is None else top_k + 1, top_p,
                           generator)


def sample_temp_multiplies(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return s06.sample_next(logits * temperature * temperature, temperature, top_k, top_p,
                           generator)


def sample_top_p_drops_crossing(logits, temperature=1.0, top_k=None, top_p=None,
                                generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sl, order = logits.sort(dim=-1, descending=True)
        drop_sorted = sl.softmax(-1).cumsum(-1) >= top_p
        drop_sorted[..., 0] = False
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def sample_always_greedy(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return logits.argmax(-1)


def bpe_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new_id] + list(ids[i + 2:])
    return list(ids)


def bpe_overlapping(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
    return out


def bpe_in_place(ids, pair, new_id):
    out = s06.bpe_merge(ids, pair, new_id)
    ids[:] = out
    return out


def step_no_shift(model, optimizer, tokens):
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_no_zero_grad(model, optimizer, tokens):
    logits = model(tokens)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.item()


def step_no_step(model, optimizer, tokens):
    logits = model(tokens)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1)).item()


def loop_no_training(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return [0.0] * steps


# -- lesson 7


def params_no_unembed(cfg):
    return s07.count_params(cfg) - (0 if cfg.tie_embeddings else cfg.d_model * cfg.d_vocab)


def params_no_ln(cfg):
    if not cfg.normalization:
        return s07.count_params(cfg)
    n_ln = cfg.n_layers * (1 if cfg.attn_only else 2) + 1
    return s07.count_params(cfg) - n_ln * 2 * cfg.d_model


# -- lesson 8


def lens_no_ln(model, tokens):
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(tokens)
    rs = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
    rs.append(cache[f"blocks.{n - 1}.hook_resid_post"])
    return torch.stack(rs) @ model.W_U


# -- lesson 9


def induction_dup_offset(pattern, seq_len):
    return pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1).mean(dim=(0, 2))


def induction_all_rows(pattern, seq_len):
    d = pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., 1:]
    return d.sum(-1).mean(0) / pattern.shape[-2]


def patching_reversed(model, clean, corrupted, metric):
    return s09.activation_patching(model, corrupted, clean, metric)


def patching_transposed(model, clean, corrupted, metric):
    return s09.activation_patching(model, clean, corrupted, metric).T


# -- lesson 10


def probe_train_accuracy(train_x, train_y, test_x, test_y, steps=200, seed=0):
    from gptscope.course.solutions.lesson10_probes import linear_probe
    return linear_probe(train_x, train_y, train_x, train_y, steps, seed)


def probe_untrained(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return (test_y == 0).float().mean().item() if (test_y == 0).float().mean() > 0.5 else \
        (test_y == 1).float().mean().item()


# -- lesson 11


def steer_flipped(model, positive, negative, layer):
    return -SteeringVector.from_contrast(model, positive, negative,
                                         f"blocks.{layer}.hook_resid_pre").vector


def steer_resid_post(model, positive, negative, layer):
    return SteeringVector.from_contrast(model, positive, negative,
                                        f"blocks.{layer}.hook_resid_post").vector


def steer_last_only(model, positive, negative, layer):
    return SteeringVector.from_contrast(model, positive, negative,
                                        f"blocks.{layer}.hook_resid_pre", aligned=False).vector


# -- lesson 12


def sae_mse_mean(x, x_hat, acts, l1_coefficient):
    mse = (x_hat - x).pow(2).mean()
    l1 = acts.abs().sum(-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def sae_l1_squared(x, x_hat, acts, l1_coefficient):
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.pow(2).sum(-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def sae_no_abs(x, x_hat, acts, l1_coefficient):
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.sum(-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def sae_no_coeff(x, x_hat, acts, l1_coefficient):
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.abs().sum(-1).mean()
    return mse + l1, mse, l1


MUTANTS: dict[str, list[tuple[object, str]]] = {
    "mlp_forward": [(mlp_no_relu, "no ReLU"), (mlp_softmax, "return the logits"),
                    (mlp_no_b2, "bias b2 is missing")],
    "mlp_backward": [(backward_sum, "mean"), (backward_no_relu_grad, "ReLU's derivative"),
                     (backward_transposed, "transposed")],
    "train_classifier": [(classifier_untrained, "about chance")],
    "softmax": [(softmax_naive, "overflows for inputs of 1000"),
                (softmax_fixed_dim, "not normalised along dim"),
                (softmax_unnormalised, "not normalised along dim")],
    "log_softmax": [(log_softmax_naive, "underflows to -inf"),
                    (log_softmax_max_only, "log-sum-exp")],
    "cross_entropy": [(ce_sum, "sum instead of the mean"), (ce_no_log, "forgot the log"),
                      (ce_sign, "sign is flipped")],
    "sinusoidal_positions": [(sin_start_1, "positions start at 1"),
                             (sin_swapped, "sin and cos swapped"),
                             (sin_exp_i, "uses i instead of 2i")],
    "expected_calibration_error": [(ece_unweighted, "weight each bin"),
                                   (ece_per_sample, "0/1 correctness"),
                                   (ece_true_class, "probability of the true label")],
    "causal_mask": [(mask_strict, "diagonal excluded"), (mask_upper, "upper instead of lower"),
                    (mask_float, "bool tensor"), (mask_no_offset, "*last* positions")],
    "attention": [(attn_no_scale, "not divided by sqrt(d_head)"),
                  (attn_mask_reversed, "hides the past instead of the future"),
                  (attn_wrong_axis, "softmax taken over the wrong axis")],
    "multihead_attention": [(mha_never_causal, "no causal mask"),
                            (mha_sqrt_d_model, "sqrt(d_model)"),
                            (mha_no_bo, "b_O is missing")],
    "layer_norm": [(ln_unbiased, "unbiased variance"), (ln_eps_outside, "eps added outside"),
                   (ln_no_center, "subtract the mean")],
    "transformer_block": [(block_post_ln, "post-LN"), (block_never_causal, "no causal mask"),
                          (block_relu, "ReLU"), (block_exact_gelu, "tanh approximation"),
                          (block_no_residual, "residual connections missing")],
    "gpt_forward": [(gpt_no_pos, "positional embeddings missing"),
                    (gpt_no_final_ln, "ln_final missing"), (gpt_not_causal, "no causal mask")],
    "sample_next": [(sample_k_plus_1, "top-k keeps k+1"),
                    (sample_temp_multiplies, "temperature multiplies"),
                    (sample_top_p_drops_crossing, "top-p drops the token that crosses p"),
                    (sample_always_greedy, "always returns the most likely token")],
    "bpe_merge": [(bpe_first_only, "only the first occurrence"),
                  (bpe_overlapping, "overlapping"), (bpe_in_place, "changed the input")],
    "train_step": [(step_no_shift, "predict token t + 1"), (step_no_zero_grad, "zero_grad"),
                   (step_no_step, "did not change")],
    "train_loop": [(loop_no_training, "did not change")],
    "count_params": [(params_no_unembed, "unembedding"), (params_no_ln, "LayerNorm")],
    "logit_lens": [(lens_no_ln, "ln_final not applied")],
    "induction_score": [(induction_dup_offset, "duplicate-token"),
                        (induction_all_rows, "averaged over every query")],
    "activation_patching": [(patching_reversed, "patched the wrong way"),
                            (patching_transposed, "transposed")],
    "linear_probe": [(probe_train_accuracy, "training data"),
                     (probe_untrained, "majority class")],
    "steering_vector": [(steer_flipped, "sign flipped"), (steer_resid_post, "wrong hook"),
                        (steer_last_only, "last position only")],
    "sae_loss": [(sae_mse_mean, "averaged over d_in too"), (sae_l1_squared, "uses squares"),
                 (sae_no_abs, "without abs()"), (sae_no_coeff, "forgot the coefficient")],
}



# -- more single mistakes, one per variant the checks diagnose


def attn_d_head_scale(q, k, v, mask=None):
    return _attn(q, k, v, mask, scale=1 / q.shape[-1])


def attn_ignores_mask(q, k, v, mask=None):
    return _attn(q, k, v, None)


def attn_returns_pattern(q, k, v, mask=None):
    return gf.attention(q, k, v, mask, return_pattern=True)[1]


def log_softmax_returns_softmax(x, dim=-1):
    return gf.softmax(x, dim)


def ce_per_example(logits, targets):
    return -gf.log_softmax(logits).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def ln_no_affine(x, w, b, eps=1e-5):
    return gf.layer_norm(x, None, None, eps)


def gpt_probs(tokens, params, cfg):
    return _gpt(tokens, params, cfg).softmax(-1)


def sample_ignores_temperature(logits, temperature=1.0, top_k=None, top_p=None,
                               generator=None):
    return s06.sample_next(logits, 1.0 if temperature else 0.0, top_k, top_p, generator)


def sample_ignores_top_k(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return s06.sample_next(logits, temperature, None, top_p, generator)


def sample_uniform(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=generator)


def sample_float_ids(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return s06.sample_next(logits, temperature, top_k, top_p, generator).float()


def mlp_backward_sign(x, y, W1, b1, W2, b2):
    return {k: -v for k, v in s01.mlp_backward(x, y, W1, b1, W2, b2).items()}


def ece_returns_tensor_list(probs, labels, n_bins=10):
    return [1.0, 2.0]


def params_no_pos(cfg):
    return s07.count_params(cfg) - (cfg.n_ctx * cfg.d_model if cfg.positional == "learned"
                                    else 0)



def sae_l1_batch_sum(x, x_hat, acts, l1_coefficient):
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.abs().sum()
    return mse + l1_coefficient * l1, mse, l1


def steer_pad_front(model, positive, negative, layer):
    name = f"blocks.{layer}.hook_resid_pre"
    a, b = (model.run_with_cache(t)[1][name][0] for t in (positive, negative))
    n = max(len(a), len(b))
    return (torch.cat([a.new_zeros(n - len(a), a.shape[1]), a])
            - torch.cat([b.new_zeros(n - len(b), b.shape[1]), b]))


def lens_posts_only(model, tokens):
    _, cache = model.run_with_cache(tokens)
    posts = torch.stack([cache[f"blocks.{i}.hook_resid_post"] for i in
                         range(model.cfg.n_layers)])
    return model.ln_final(posts) @ model.W_U


def induction_transposed(pattern, seq_len):
    return s09.induction_score(pattern.transpose(-2, -1), seq_len)


MORE = {
    "attention": [(attn_d_head_scale, "divided by d_head instead of sqrt"),
                  (attn_ignores_mask, "the mask was ignored"),
                  (attn_returns_pattern, "returned the attention pattern")],
    "log_softmax": [(log_softmax_returns_softmax, "returned softmax, not its log")],
    "cross_entropy": [(ce_per_example, "one loss per example")],
    "layer_norm": [(ln_no_affine, "w and b not applied")],
    "gpt_forward": [(gpt_probs, "returned probabilities")],
    "sample_next": [(sample_ignores_temperature, "temperature ignored"),
                    (sample_ignores_top_k, "top-k ignored"),
                    (sample_uniform, "samples uniformly"),
                    (sample_float_ids, "int64")],
    "mlp_backward": [(mlp_backward_sign, "wrong sign")],
    "expected_calibration_error": [(ece_returns_tensor_list, "return a float")],
    "count_params": [(params_no_pos, "position embeddings")],
    "sae_loss": [(sae_l1_batch_sum, "l1 summed over the batch")],
    "steering_vector": [(steer_pad_front, "padded with zero rows at the *end*")],
    "logit_lens": [(lens_posts_only, "resid_post of every layer only")],
    "induction_score": [(induction_transposed, "query and key axes swapped")],
}
for _exercise, _items in [*MORE.items(), *BASICS_MUTANTS.items(), *FEATURES_MUTANTS.items(),
                          *GPT_MUTANTS.items(), *INTERP_MUTANTS.items(),
                          *REAL_MODELS_MUTANTS.items(), *CIRCUITS_MUTANTS.items(),
                          *OPTIMIZATION_MUTANTS.items(), *CONTRASTIVE_MUTANTS.items(),
                          *DATA_PARALLEL_MUTANTS.items(), *VISION_MUTANTS.items(),
                          *ENCODER_DECODER_MUTANTS.items(), *RED_TEAMING_MUTANTS.items()]:
    MUTANTS.setdefault(_exercise, []).extend(_items)
MUTANTS.update(ASSISTANT_MUTANTS)  # lesson 13b's, kept in their own file
MUTANTS.update(SCALING_MUTANTS)  # lesson 13's too
# Their own test files check these more strictly (each its own message, right answers too);
# lessons 10-12's in test_course_depth_features.py.
TESTED_ELSEWHERE = (set(ASSISTANT_MUTANTS) | set(SCALING_MUTANTS) | set(FEATURES_MUTANTS)
                    | set(REAL_MODELS_MUTANTS) | set(CIRCUITS_MUTANTS)
                    | set(OPTIMIZATION_MUTANTS) | set(CONTRASTIVE_MUTANTS)
                    | set(DATA_PARALLEL_MUTANTS) | set(VISION_MUTANTS)
                    | set(ENCODER_DECODER_MUTANTS) | set(RED_TEAMING_MUTANTS))
