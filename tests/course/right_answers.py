"""Right answers written differently from the references: every one must pass its check.

RIGHT[exercise] lists correct functions in other styles than the reference solution (a
library call, loops instead of einsum, float64 inside, another order of operations), so a
check that is too strict about *how* an answer is computed fails here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .mutants_circuits import RIGHT_ANSWERS as CIRCUITS_RIGHT
from .mutants_contrastive import RIGHT_ANSWERS as CONTRASTIVE_RIGHT
from .mutants_data_parallel import RIGHT_ANSWERS as DATA_PARALLEL_RIGHT
from .mutants_encoder_decoder import RIGHT_ANSWERS as ENCODER_DECODER_RIGHT
from .mutants_optimization import RIGHT_ANSWERS as OPTIMIZATION_RIGHT
from .mutants_real_models import RIGHT_ANSWERS as REAL_MODELS_RIGHT
from .mutants_red_teaming import RIGHT_ANSWERS as RED_TEAMING_RIGHT
from .mutants_vision import RIGHT_ANSWERS as VISION_RIGHT
from .right_answers_lessons_1_to_9 import RIGHT_ANSWERS as EARLY_RIGHT

# -- lesson 1


def mlp_forward_linear(x, W1, b1, W2, b2):
    return F.linear(F.relu(F.linear(x, W1.T, b1)), W2.T, b2)


def mlp_backward_autograd(x, y, W1, b1, W2, b2):
    params = {k: v.detach().clone().requires_grad_(True) for k, v in
              {"W1": W1, "b1": b1, "W2": W2, "b2": b2}.items()}
    logits = torch.relu(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    grads = torch.autograd.grad(F.cross_entropy(logits, y), list(params.values()))
    return dict(zip(params, grads))


def mlp_backward_by_example(x, y, W1, b1, W2, b2):
    """Backprop one example at a time, averaged: loops instead of matrices."""
    total = {"W1": 0, "b1": 0, "W2": 0, "b2": 0}
    for xi, yi in zip(x, y):
        pre = xi @ W1 + b1
        h = pre.clamp(min=0)
        d = (h @ W2 + b2).softmax(-1)
        d[yi] -= 1
        dpre = (W2 @ d) * (pre > 0)
        for name, g in (("W2", torch.outer(h, d)), ("b2", d), ("W1", torch.outer(xi, dpre)),
                        ("b1", dpre)):
            total[name] = total[name] + g / len(x)
    return total


# -- lesson 2


def softmax_library(x, dim=-1):
    return torch.softmax(x, dim)


def softmax_float64(x, dim=-1):
    z = x.double()
    e = (z - z.amax(dim, keepdim=True)).exp()
    return (e / e.sum(dim, keepdim=True)).to(x.dtype)


def log_softmax_logsumexp(x, dim=-1):
    return x - torch.logsumexp(x, dim, keepdim=True)


def cross_entropy_library(logits, targets):
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def cross_entropy_nll(logits, targets):
    return F.nll_loss(torch.log_softmax(logits, -1).flatten(0, -2), targets.flatten())


# -- lesson 3


def sinusoidal_loops(n_pos, d_model, base=10000.0):
    pe = torch.zeros(n_pos, d_model)
    for p in range(n_pos):
        for j in range(d_model):
            angle = p / base ** (2 * (j // 2) / d_model)
            pe[p, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def ece_vectorised(probs, labels, n_bins=10):
    conf, pred = probs.double().max(-1)
    bins = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf)
    right = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins,
                                                               (pred == labels).double())
    return ((right - conf_sum).abs().sum() / len(conf))  # a 0-d tensor is a float too


def rotary_complex(x, positions, base=10000.0):
    """RoPE as multiplication by unit complex numbers, one per feature pair."""
    d = x.shape[-1]
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double())
    freqs = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.outer(positions.double(), freqs)
    z = z * torch.polar(torch.ones_like(angles), angles)
    return torch.cat([z.real, z.imag], -1).to(x.dtype)


def rotary_library(x, positions, base=10000.0):
    from gptscope.model import functional as gf
    cos, sin = gf.rotary_angles(len(positions), x.shape[-1], base, offset=int(positions[0]))
    moved = x.unsqueeze(-2).movedim(-3, -3)  # [..., pos, 1 head, d]
    return gf.apply_rotary(moved.reshape(-1, *moved.shape[-3:]), cos, sin).reshape(x.shape)


def alibi_loops(n_heads, n_query, n_key=None):
    if n_heads & (n_heads - 1):
        raise ValueError("n_heads must be a power of two")
    n_key = n_query if n_key is None else n_key
    out = torch.empty(n_heads, n_query, n_key)
    for h in range(n_heads):
        slope = 2 ** (-8 * (h + 1) / n_heads)
        for i in range(n_query):
            pos = n_key - n_query + i
            for j in range(n_key):
                out[h, i, j] = slope * (j - pos) if j <= pos else -math.inf
    return out


def alibi_from_mask(n_heads, n_query, n_key=None):
    if n_heads & (n_heads - 1):
        raise ValueError("n_heads must be a power of two")
    n_key = n_query if n_key is None else n_key
    allowed = torch.ones(n_query, n_key, dtype=torch.bool).tril(n_key - n_query)
    rel = torch.arange(n_key)[None, :] - torch.arange(n_key - n_query, n_key)[:, None]
    slopes = torch.tensor([2 ** (-8 * (h + 1) / n_heads) for h in range(n_heads)])
    bias = slopes.view(-1, 1, 1) * rel
    return torch.where(allowed, bias, torch.tensor(-math.inf))


def auroc_sklearn(scores, labels):
    from sklearn.metrics import roc_auc_score
    if labels.bool().all() or not labels.bool().any():
        raise ValueError("need both classes")
    return float(roc_auc_score(labels.long().numpy(), scores.double().numpy()))


def auroc_average_ranks(scores, labels):
    """The rank-sum form, tied scores sharing their mean rank."""
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("need both classes")
    values = scores.double()
    ranks = torch.tensor([(values < v).sum().item() + ((values == v).sum().item() + 1) / 2
                          for v in values])
    return ((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def temperature_scipy(logits, labels):
    from scipy.optimize import minimize_scalar
    z = logits.double()
    found = minimize_scalar(lambda lt: F.cross_entropy(z / math.exp(lt), labels).item(),
                            bounds=(-5, 5), method="bounded", options={"xatol": 1e-8})
    return math.exp(found.x)


def temperature_newton(logits, labels):
    """Newton's method on log T with autograd's derivatives, each step at most 1 long."""
    z = logits.double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    for _ in range(50):
        loss = F.cross_entropy(z / log_t.exp(), labels)
        (grad,) = torch.autograd.grad(loss, log_t, create_graph=True)
        (hess,) = torch.autograd.grad(grad, log_t)
        with torch.no_grad():
            log_t -= (grad / hess.abs().clamp(min=1e-3)).clamp(-1.0, 1.0)
    return log_t.exp().item()


def rms_norm_library(x, w, eps=1e-6):
    return F.rms_norm(x, x.shape[-1:], w, eps)


def rms_norm_float64(x, w, eps=1e-6):
    z = x.double()
    return (z * torch.rsqrt((z * z).mean(-1, keepdim=True) + eps) * w.double()).to(x.dtype)


# -- lesson 4


def causal_mask_tril(n_query, n_key=None):
    n_key = n_query if n_key is None else n_key
    return torch.ones(n_query, n_key, dtype=torch.bool).tril(n_key - n_query)


def multihead_attention_loop(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal=True):
    out = b_O.expand_as(x).clone()
    n = x.shape[1]
    for h in range(W_Q.shape[0]):
        q, k, v = (x @ W[h] + b[h] for W, b in ((W_Q, b_Q), (W_K, b_K), (W_V, b_V)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -1e30)
        out = out + scores.softmax(-1) @ v @ W_O[h]
    return out


# -- lesson 5


def layer_norm_library(x, w, b, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def layer_norm_float64(x, w, b, eps=1e-5):
    z = x.double()
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return ((z - mean) / torch.sqrt(var + eps) * w.double() + b.double()).to(x.dtype)


def attention_library(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attention_loops(q, k, v, mask=None):
    scale = 1 / math.sqrt(q.shape[-1])
    scores = torch.einsum("...qd,...kd->...qk", q, k) * scale
    if mask is not None:
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    return torch.einsum("...qk,...kd->...qd", scores.softmax(-1), v)


def block_as_module():
    """A right answer written as an nn.Module class, as the docstring allows."""
    from gptscope.course.solutions.lesson05_transformer import transformer_block

    class Block(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            from gptscope.course.checks.attention import reference_block
            self.cfg = cfg
            for name, p in reference_block(cfg).state_dict().items():
                self.register_parameter(name.replace(".", "__"),
                                        torch.nn.Parameter(torch.zeros_like(p)))

        def load_state_dict(self, params, strict=True):
            return super().load_state_dict(
                {k.replace(".", "__"): v for k, v in params.items()}, strict=strict)

        def forward(self, x):
            params = {k.replace("__", "."): v for k, v in self.named_parameters()}
            return transformer_block(x, params, self.cfg)
    return Block


def block_float64(x, params, cfg):
    from gptscope.course.solutions.lesson05_transformer import transformer_block
    return transformer_block(x.double(), {k: v.double() for k, v in params.items()},
                             cfg).float()


RIGHT: dict[str, list] = {
    "mlp_forward": [mlp_forward_linear],
    "mlp_backward": [mlp_backward_autograd, mlp_backward_by_example],
    "cross_entropy": [cross_entropy_library, cross_entropy_nll],
    "sinusoidal_positions": [sinusoidal_loops],
    "expected_calibration_error": [ece_vectorised],
    "rotary_embed": [rotary_complex, rotary_library],
    "alibi_bias": [alibi_loops, alibi_from_mask],
    "auroc": [auroc_sklearn, auroc_average_ranks],
    "fit_temperature": [temperature_scipy, temperature_newton],
    "rms_norm": [rms_norm_library, rms_norm_float64],
    "causal_mask": [causal_mask_tril],
    "multihead_attention": [multihead_attention_loop],
    "transformer_block": [block_float64, block_as_module()],
    "softmax": [softmax_library, softmax_float64],
    "log_softmax": [log_softmax_logsumexp],
    "layer_norm": [layer_norm_library, layer_norm_float64],
    "attention": [attention_library, attention_loops],
}


# -- lessons 10-12: probes, steering, superposition and SAEs


def probe_lbfgs_float64(train_x, train_y, test_x, test_y, steps=200, seed=0):
    x, xt = train_x.double(), test_x.double()
    n_classes = int(torch.cat([train_y, test_y]).max()) + 1
    W = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, train_y) + 1e-4 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xt @ W + b).argmax(-1) == test_y).double().mean())


def probe_linear_module(train_x, train_y, test_x, test_y, steps=200, seed=0):
    torch.manual_seed(seed)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    layer = torch.nn.Linear(train_x.shape[1], n_classes)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.03, weight_decay=1e-2)
    targets = F.one_hot(train_y, n_classes).float()  # probabilities: the same loss
    for _ in range(steps + 100):
        opt.zero_grad()
        F.cross_entropy(layer(train_x), targets).backward()
        opt.step()
    with torch.no_grad():
        return (layer(test_x).argmax(-1) == test_y).float().mean()  # a 0-dim tensor


def selectivity_sampled_shares(train_x, train_y, test_x, test_y, train_types, test_types,
                               seed=0, probe=None):
    from gptscope.course.solutions.lesson10_probes import linear_probe
    probe = probe or linear_probe
    labels = torch.cat([train_y, test_y])
    distinct, index = torch.cat([train_types, test_types]).unique(return_inverse=True)
    shares = torch.bincount(labels).double() / len(labels)
    g = torch.Generator().manual_seed(seed)
    control = torch.multinomial(shares, len(distinct), replacement=True, generator=g)[index]
    n = len(train_y)
    accuracy = probe(train_x, train_y, test_x, test_y)
    control_accuracy = probe(train_x, control[:n], test_x, control[n:])
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": accuracy - control_accuracy}


def selectivity_dict_of_types(train_x, train_y, test_x, test_y, train_types, test_types,
                              seed=0, probe=None):
    from gptscope.course.solutions.lesson10_probes import linear_probe
    probe = probe or linear_probe
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([train_y, test_y]).tolist()
    label_of = {}
    for t in torch.cat([train_types, test_types]).tolist():
        if t not in label_of:
            label_of[t] = labels[int(torch.randint(len(labels), (), generator=g))]
    train_c = torch.tensor([label_of[t] for t in train_types.tolist()])
    test_c = torch.tensor([label_of[t] for t in test_types.tolist()])
    accuracy = float(probe(train_x, train_y, test_x, test_y))
    control_accuracy = float(probe(train_x, train_c, test_x, test_c))
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": accuracy - control_accuracy}


def mean_difference_normalize(acts, labels):
    mask = labels.bool()
    return F.normalize(acts[mask].mean(0) - acts[~mask].mean(0), dim=0)


def mean_difference_weights(acts, labels):
    # One weighted sum: +1/n1 on the concept's examples, -1/n0 on the others.
    y = labels.double()
    weights = y / y.sum() - (1 - y) / (1 - y).sum()
    diff = weights @ acts.double()
    return (diff / torch.linalg.vector_norm(diff)).to(acts.dtype)


def mean_difference_from_overall_mean(acts, labels):
    diff = acts[labels == 1].mean(0) - acts.mean(0)  # the same direction, scaled by n0 / n
    return diff / diff.norm()


def steering_vector_library(model, positive, negative, layer):
    from gptscope.steering import SteeringVector
    return SteeringVector.from_contrast(model, positive, negative,
                                        f"blocks.{layer}.hook_resid_pre").vector


def steering_vector_stop_at_layer(model, positive, negative, layer):
    with torch.no_grad():
        a = model(positive, stop_at_layer=layer)[0]  # the residual stream entering `layer`
        b = model(negative, stop_at_layer=layer)[0]
    n = max(len(a), len(b))
    return F.pad(a, (0, 0, 0, n - len(a))) - F.pad(b, (0, 0, 0, n - len(b)))


def apply_steering_library(model, tokens, vector, layer, coefficient=1.0, start=0):
    from gptscope.steering import SteeringVector
    with torch.no_grad(), SteeringVector(vector, f"blocks.{layer}.hook_resid_pre").apply(
            model, coefficient, start):
        return model(tokens)


def apply_steering_split_forward(model, tokens, vector, layer, coefficient=1.0, start=0):
    with torch.no_grad():
        resid = model(tokens, stop_at_layer=layer).clone()
        rows = vector[None] if vector.dim() == 1 else vector
        for i in range(start, resid.shape[1]):
            row = 0 if vector.dim() == 1 else i - start
            if row < len(rows):
                resid[:, i] += coefficient * rows[row]
        return model(resid, start_at_layer=layer)


def apply_steering_in_place_hook(model, tokens, vector, layer, coefficient=1.0, start=0):
    def hook(resid, hook):
        n = resid.shape[1] - start
        if vector.dim() == 1:
            resid[:, start:] += coefficient * vector
        elif n > 0:
            resid[:, start:start + len(vector[:n])] += coefficient * vector[:n]
        # returns None: the edit in place is kept
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])


def steering_effect_kl_div(model, vector, layer, coefficient, prompts, targets, neutral,
                           neutral_mask):
    from gptscope.course.solutions.lesson11_steering import apply_steering
    with torch.no_grad():
        before = model(prompts)[:, -1].softmax(-1)[:, targets].sum(-1).log()
        after = apply_steering(model, prompts, vector, layer, coefficient)[:, -1]
        after = after.softmax(-1)[:, targets].sum(-1).log()
        p = model(neutral).log_softmax(-1)[neutral_mask]
        q = apply_steering(model, neutral, vector, layer, coefficient).log_softmax(-1)
        kl = F.kl_div(q[neutral_mask], p, log_target=True, reduction="batchmean")
    return {"effect": (after - before).mean().item(), "kl": kl.item()}


def steering_effect_float64_loops(model, vector, layer, coefficient, prompts, targets,
                                  neutral, neutral_mask):
    from gptscope.course.solutions.lesson11_steering import apply_steering
    with torch.no_grad():
        runs = [model(t).double().log_softmax(-1) for t in (prompts, neutral)]
        steered = [apply_steering(model, t, vector, layer, coefficient).double()
                   .log_softmax(-1) for t in (prompts, neutral)]
    changes = [torch.logsumexp(steered[0][i, -1, targets], 0)
               - torch.logsumexp(runs[0][i, -1, targets], 0) for i in range(len(prompts))]
    kls = []
    for i, j in neutral_mask.nonzero().tolist():
        p, q = runs[1][i, j], steered[1][i, j]
        kls.append((p.exp() * (p - q)).sum())
    return {"effect": float(sum(changes) / len(changes)), "kl": float(sum(kls) / len(kls))}


def sae_loss_functional(x, x_hat, acts, l1_coefficient, decoder_norms=None):
    mse = F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]
    weighted = acts if decoder_norms is None else acts * decoder_norms
    l1 = torch.linalg.vector_norm(weighted, ord=1, dim=-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def sae_loss_float64_einsum(x, x_hat, acts, l1_coefficient, decoder_norms=None):
    err = (x_hat - x).double()
    norms = torch.ones(acts.shape[-1], dtype=torch.float64) if decoder_norms is None else \
        decoder_norms.double()
    mse = torch.einsum("bd,bd->", err, err) / len(x)
    l1 = torch.einsum("bf,f->", acts.double().abs(), norms) / len(x)
    return (mse + l1_coefficient * l1).float(), mse.float(), l1.float()


def toy_model_bmm(x, W, b, importance):
    xi = x.transpose(0, 1)  # [instances, batch, features]: each instance one matmul
    out = torch.relu(torch.bmm(torch.bmm(xi, W.transpose(1, 2)), W) + b[:, None])
    x_hat = out.transpose(0, 1)
    per_instance = (importance * (x - x_hat) ** 2).sum(-1).mean(0)
    return x_hat, per_instance.sum()


def toy_model_loop(x, W, b, importance):
    outs, loss = [], 0.0
    for i in range(W.shape[0]):
        h = x[:, i] @ W[i].T
        out = F.relu(h @ W[i] + b[i])
        outs.append(out)
        loss = loss + (importance[i] * (x[:, i] - out).pow(2)).sum(-1).mean()
    return torch.stack(outs, dim=1), loss


def sae_step_projection(params, x, optimizer, l1_coefficient):
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    optimizer.zero_grad()
    acts = F.relu(F.linear(x - b_dec, W_enc.T, b_enc))
    x_hat = F.linear(acts, W_dec.T, b_dec)
    loss = (x - x_hat).pow(2).sum(-1).mean() + l1_coefficient * acts.sum(-1).mean()
    loss.backward()
    unit = W_dec.detach() / W_dec.detach().norm(dim=1, keepdim=True)
    W_dec.grad = W_dec.grad - torch.einsum("fd,fd->f", W_dec.grad, unit)[:, None] * unit
    optimizer.step()
    W_dec.data = F.normalize(W_dec.data, dim=1)
    return float(loss.detach())


def sae_step_library_loss(params, x, optimizer, l1_coefficient):
    from gptscope.sae import sae_loss
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    loss = sae_loss(x, acts @ W_dec + b_dec, acts, l1_coefficient, acts_nonnegative=True)[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        g, w = W_dec.grad, F.normalize(W_dec, dim=-1)
        g.sub_((g * w).sum(-1, keepdim=True) * w)
        optimizer.step()
        W_dec.copy_(F.normalize(W_dec, dim=-1))
    return loss.item()


RIGHT.update({
    "linear_probe": [probe_lbfgs_float64, probe_linear_module],
    "probe_selectivity": [selectivity_sampled_shares, selectivity_dict_of_types],
    "mean_difference_direction": [mean_difference_normalize, mean_difference_weights,
                                  mean_difference_from_overall_mean],
    "steering_vector": [steering_vector_library, steering_vector_stop_at_layer],
    "apply_steering": [apply_steering_library, apply_steering_split_forward,
                       apply_steering_in_place_hook],
    "steering_effect": [steering_effect_kl_div, steering_effect_float64_loops],
    "sae_loss": [sae_loss_functional, sae_loss_float64_einsum],
    "toy_model_forward": [toy_model_bmm, toy_model_loop],
    "sae_training_step": [sae_step_projection, sae_step_library_loss],
})


# -- lessons 6 and 7


def gpt_forward_library_ops(tokens, params, cfg):
    """F.layer_norm, F.scaled_dot_product_attention and F.gelu instead of by hand."""
    p = params
    x = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][:tokens.shape[1]]
    d = (cfg.d_model,)
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        h = F.layer_norm(x, d, p[b + "ln1.w"], p[b + "ln1.b"], cfg.eps)
        q, k, v = (torch.einsum("bpm,hmd->bhpd", h, p[b + f"attn.W_{n}"])
                   + p[b + f"attn.b_{n}"][:, None] for n in "QKV")
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + torch.einsum("bhpd,hdm->bpm", z, p[b + "attn.W_O"]) + p[b + "attn.b_O"]
        if not cfg.attn_only:
            h = F.layer_norm(x, d, p[b + "ln2.w"], p[b + "ln2.b"], cfg.eps)
            h = F.gelu(h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"], approximate="tanh")
            x = x + h @ p[b + "mlp.W_out"] + p[b + "mlp.b_out"]
    x = F.layer_norm(x, d, p["ln_final.w"], p["ln_final.b"], cfg.eps)
    return x @ (p["embed.W_E"].T if cfg.tie_embeddings else p["unembed.W_U"])


def train_loop_log_softmax(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    """A right answer by another road (log_softmax and gather): must pass."""
    optimizer, g = torch.optim.AdamW(model.parameters(), lr=lr), torch.Generator()
    g.manual_seed(seed)
    losses = []
    for _ in range(steps):
        tokens = data[torch.randint(0, len(data), (batch_size,), generator=g)]
        logp = F.log_softmax(model(tokens)[:, :-1], -1)
        loss = -logp.gather(-1, tokens[:, 1:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses




def count_params_by_building(cfg):
    """The docstring's own cross-check: build the model on the meta device and count."""
    from gptscope.model.transformer import Transformer

    return sum(p.numel() for p in Transformer(cfg, device="meta").parameters())


RIGHT.update({
    "gpt_forward": [gpt_forward_library_ops],
    "train_loop": [train_loop_log_softmax],
    "count_params": [count_params_by_building],
})

# Lessons 7-9 and 14's new exercises keep their right answers beside their mutants.
for _answers in (REAL_MODELS_RIGHT, CIRCUITS_RIGHT, OPTIMIZATION_RIGHT, EARLY_RIGHT,
                 CONTRASTIVE_RIGHT, DATA_PARALLEL_RIGHT, VISION_RIGHT, ENCODER_DECODER_RIGHT,
                 RED_TEAMING_RIGHT):
    for _exercise, _fns in _answers.items():
        RIGHT.setdefault(_exercise, []).extend(_fns)
