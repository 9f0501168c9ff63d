"""Lessons 10-12's known wrong answers (probes, steering, superposition and SAEs), each with
the phrase its check must say.

``mutants.py`` adds MUTANTS to the course-wide table, after the first few mutants of
linear_probe, steering_vector and sae_loss it already holds. Every message the checks in
``gptscope.course.checks.features`` can give has a mutant here (tested in
``test_course_depth_features.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptscope.course.solutions import lesson10_probes as s10
from gptscope.course.solutions import lesson11_steering as s11
from gptscope.course.solutions import lesson12_superposition as s12
from gptscope.steering import SteeringVector

# -- linear_probe


def _probe(train_x, train_y, test_x, test_y, steps=200, seed=0, bias=True, sign=1.0,
           dims=None, seeded=True):
    """The reference probe with one thing changed: no bias, the loss's sign, the dimensions
    it reads, or its seeding (a random start and minibatches drawn from the global RNG)."""
    if seeded:
        torch.manual_seed(seed)
    keep = slice(None) if dims is None else slice(0, dims)
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = ((train_x - mean) / std)[:, keep], ((test_x - mean) / std)[:, keep]
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    W = (torch.zeros if seeded else torch.randn)(xs.shape[1], n_classes).requires_grad_(True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b] if bias else [W], lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        rows = slice(None) if seeded else torch.randperm(len(xs))[:8]
        logits = xs[rows] @ W + (b if bias else 0)
        loss = sign * F.cross_entropy(logits, train_y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((xt @ W + (b if bias else 0)).argmax(-1) == test_y).float().mean().item()


def probe_percent(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return 100 * s10.linear_probe(train_x, train_y, test_x, test_y, steps, seed)


def probe_returns_loss(train_x, train_y, test_x, test_y, steps=200, seed=0):
    w = torch.zeros(train_x.shape[1], 2, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy(train_x @ w, train_y.clamp(max=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def probe_trained_on_test_too(train_x, train_y, test_x, test_y, steps=200, seed=0):
    both_x, both_y = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])
    return s10.linear_probe(both_x, both_y, test_x, test_y, steps, seed)


def probe_gradient_ascent(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return _probe(train_x, train_y, test_x, test_y, steps, seed, sign=-1.0)


def probe_unseeded(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return _probe(train_x, train_y, test_x, test_y, steps, seed, seeded=False)


def probe_no_bias(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return _probe(train_x, train_y, test_x, test_y, steps, seed, bias=False)


def probe_one_sigmoid_logit(train_x, train_y, test_x, test_y, steps=200, seed=0):
    w = torch.zeros(train_x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(train_x @ w + b, train_y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((test_x @ w + b > 0).long() == test_y).float().mean().item()


def probe_reads_four_dims(train_x, train_y, test_x, test_y, steps=200, seed=0):
    return _probe(train_x, train_y, test_x, test_y, steps, seed, dims=4)


# -- probe_selectivity


def _control(train_y, test_y, train_types, test_types, seed):
    """The reference's control labels (train, test)."""
    types = torch.cat([train_types, test_types])
    labels = torch.cat([train_y, test_y])
    distinct, index = types.unique(return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    control = labels[torch.randint(0, len(labels), (len(distinct),), generator=g)][index]
    return control[:len(train_y)], control[len(train_y):]


def _selectivity(probe, train_x, train_y, test_x, test_y, control_train, control_test,
                 combine=lambda a, c: a - c):
    accuracy = probe(train_x, train_y, test_x, test_y)
    control_accuracy = probe(train_x, control_train, test_x, control_test)
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": combine(accuracy, control_accuracy)}


def sel_calls_linear_probe(train_x, train_y, test_x, test_y, train_types, test_types,
                           seed=0, probe=s10.linear_probe):
    return s10.probe_selectivity(train_x, train_y, test_x, test_y, train_types, test_types,
                                 seed, probe=lambda *args: 0.5)


def sel_one_call(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                 probe=s10.linear_probe):
    accuracy = probe(train_x, train_y, test_x, test_y)
    return {"accuracy": accuracy, "control_accuracy": 0.5, "selectivity": accuracy - 0.5}


def sel_control_twice(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                      probe=s10.linear_probe):
    accuracy = probe(train_x, train_y, test_x, test_y)
    controls = []
    for s in (seed, seed + 1):
        control_train, control_test = _control(train_y, test_y, train_types, test_types, s)
        controls.append(probe(train_x, control_train, test_x, control_test))
    control = sum(controls) / 2
    return {"accuracy": accuracy, "control_accuracy": control,
            "selectivity": accuracy - control}


def sel_no_real_task(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                     probe=s10.linear_probe):
    first = _control(train_y, test_y, train_types, test_types, seed)
    second = _control(train_y, test_y, train_types, test_types, seed + 1)
    accuracy = probe(train_x, first[0], test_x, first[1])
    control = probe(train_x, second[0], test_x, second[1])
    return {"accuracy": accuracy, "control_accuracy": control,
            "selectivity": accuracy - control}


def _with_control(make, combine=lambda a, c: a - c, swap=False):
    """A probe_selectivity whose control labels come from ``make(train_y, test_y,
    train_types, test_types, seed) -> (train, test)``."""
    def selectivity(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                    probe=s10.linear_probe):
        control = make(train_y, test_y, train_types, test_types, seed)
        accuracy = probe(train_x, train_y, test_x, test_y)
        control_accuracy = probe(train_x, control[0], test_x, control[1])
        if swap:
            accuracy, control_accuracy = control_accuracy, accuracy
        return {"accuracy": accuracy, "control_accuracy": control_accuracy,
                "selectivity": combine(accuracy, control_accuracy)}
    return selectivity


def _per_type(labels_of_types):
    """Control labels from ``labels_of_types(n_types, labels, seed) -> [n_types]``."""
    def make(train_y, test_y, train_types, test_types, seed):
        types = torch.cat([train_types, test_types])
        distinct, index = types.unique(return_inverse=True)
        control = labels_of_types(len(distinct), torch.cat([train_y, test_y]), seed)[index]
        return control[:len(train_y)], control[len(train_y):]
    return make


def _own_first_label(train_y, test_y, train_types, test_types, seed):
    types, labels = torch.cat([train_types, test_types]), torch.cat([train_y, test_y])
    first = {}
    for t, y in zip(types.tolist(), labels.tolist()):
        first.setdefault(t, y)
    control = torch.tensor([first[t] for t in types.tolist()])
    return control[:len(train_y)], control[len(train_y):]


def _shuffled(train_y, test_y, train_types, test_types, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([train_y, test_y])
    control = labels[torch.randperm(len(labels), generator=g)]
    return control[:len(train_y)], control[len(train_y):]


def _drawn_per_split(train_y, test_y, train_types, test_types, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for y, types in ((train_y, train_types), (test_y, test_types)):
        distinct, index = types.unique(return_inverse=True)
        out.append(y[torch.randint(0, len(y), (len(distinct),), generator=g)][index])
    return tuple(out)


def _donors(n_types, labels, seed):
    g = torch.Generator().manual_seed(seed)
    return labels[torch.randint(0, len(labels), (n_types,), generator=g)]


def sel_evaluates_on_train(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                           probe=s10.linear_probe):
    control, _ = _control(train_y, test_y, train_types, test_types, seed)
    accuracy = probe(train_x, train_y, train_x, train_y)
    control_accuracy = probe(train_x, control, train_x, control)
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": accuracy - control_accuracy}


def sel_types_as_features(train_x, train_y, test_x, test_y, train_types, test_types, seed=0,
                          probe=s10.linear_probe):
    control = _control(train_y, test_y, train_types, test_types, seed)
    as_x = [t[:, None].float() for t in (train_types, test_types)]
    accuracy = probe(as_x[0], train_y, as_x[1], test_y)
    control_accuracy = probe(as_x[0], control[0], as_x[1], control[1])
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": accuracy - control_accuracy}


sel_own_label = _with_control(_own_first_label)
sel_float_labels = _with_control(lambda *a: tuple(c.float() for c in _control(*a)))
sel_one_hot_control = _with_control(lambda *a: tuple(F.one_hot(c) for c in _control(*a)))
sel_type_index = _with_control(_per_type(lambda n, labels, seed: torch.arange(n)))
sel_per_example = _with_control(_shuffled)
sel_split = _with_control(_drawn_per_split)
sel_uniform = _with_control(_per_type(lambda n, labels, seed: torch.randint(
    0, int(labels.max()) + 1, (n,), generator=torch.Generator().manual_seed(seed))))
sel_two_classes = _with_control(_per_type(lambda n, labels, seed: torch.randint(
    0, 2, (n,), generator=torch.Generator().manual_seed(seed))))
sel_global_rng = _with_control(_per_type(
    lambda n, labels, seed: labels[torch.randint(0, len(labels), (n,))]))
sel_seed_ignored = _with_control(_per_type(lambda n, labels, seed: _donors(n, labels, 0)))
sel_reversed = _with_control(_control, combine=lambda a, c: c - a)
sel_swapped = _with_control(_control, swap=True)
sel_ratio = _with_control(_control, combine=lambda a, c: a / c)


# -- mean_difference_direction


def _means(acts, labels):
    return acts[labels == 1].mean(0), acts[labels == 0].mean(0)


def md_reversed(acts, labels):
    pos, neg = _means(acts, labels)
    return F.normalize(neg - pos, dim=0)


def md_not_unit(acts, labels):
    pos, neg = _means(acts, labels)
    return pos - neg


def md_sums(acts, labels):
    diff = acts[labels == 1].sum(0) - acts[labels == 0].sum(0)
    return diff / diff.norm()


def md_labels_as_indices(acts, labels):
    diff = acts[labels].mean(0) - acts[1 - labels].mean(0)
    return diff / diff.norm()


def md_wrong_axis(acts, labels):
    diff = acts[labels == 1].mean(-1) - acts[labels == 0].mean(-1)
    return diff / diff.norm()


def md_l1_norm(acts, labels):
    pos, neg = _means(acts, labels)
    return (pos - neg) / (pos - neg).abs().sum()


def md_squared_norm(acts, labels):
    pos, neg = _means(acts, labels)
    return (pos - neg) / (pos - neg).pow(2).sum()


def md_keepdim(acts, labels):
    diff = acts[labels == 1].mean(0, keepdim=True) - acts[labels == 0].mean(0, keepdim=True)
    return diff / diff.norm()


def md_overall_mean(acts, labels):
    return acts[labels == 1].mean(0) - acts.mean(0)


# -- steering_vector


def _resid(model, tokens, layer, hook="hook_resid_pre"):
    name = f"blocks.{layer}.{hook}"
    return model.run_with_cache(tokens, names_filter=name)[1][name][0]


def _padded_pair(model, positive, negative, layer, hook="hook_resid_pre"):
    a, b = _resid(model, positive, layer, hook), _resid(model, negative, layer, hook)
    n = max(len(a), len(b))
    return (torch.cat([a, a.new_zeros(n - len(a), a.shape[1])]),
            torch.cat([b, b.new_zeros(n - len(b), b.shape[1])]))


def steer_layer_below(model, positive, negative, layer):
    a, b = _padded_pair(model, positive, negative, max(layer - 1, 0))
    return a - b


def steer_mean_positions(model, positive, negative, layer):
    return _resid(model, positive, layer).mean(0) - _resid(model, negative, layer).mean(0)


def steer_mean_d_model(model, positive, negative, layer):
    a, b = _padded_pair(model, positive, negative, layer)
    return a.mean(-1) - b.mean(-1)


def steer_pad_tokens(model, positive, negative, layer):
    n = max(positive.shape[1], negative.shape[1])
    pad = [torch.cat([t, t.new_zeros(1, n - t.shape[1])], 1) for t in (positive, negative)]
    return _resid(model, pad[0], layer) - _resid(model, pad[1], layer)


def steer_truncated(model, positive, negative, layer):
    a, b = _resid(model, positive, layer), _resid(model, negative, layer)
    n = min(len(a), len(b))
    return a[:n] - b[:n]


def steer_batch_dim(model, positive, negative, layer):
    return s11.steering_vector(model, positive, negative, layer)[None]


def steer_normalised(model, positive, negative, layer):
    v = s11.steering_vector(model, positive, negative, layer)
    return v / v.norm()


def steer_positive_only(model, positive, negative, layer):
    return _padded_pair(model, positive, negative, layer)[0]


# -- apply_steering


def _lib_steer(model, tokens, vector, hook, coefficient, start):
    with SteeringVector(vector, hook).apply(model, coefficient, start):
        return model(tokens)


def _edit_steer(model, tokens, layer, edit):
    def hook(x, hook):
        x = x.clone()
        edit(x)
        return x
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])


def as_no_coefficient(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector, layer, 1.0, start)


def as_subtracts(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector, layer, -coefficient, start)


def as_resid_post(model, tokens, vector, layer, coefficient=1.0, start=0):
    return _lib_steer(model, tokens, vector, f"blocks.{layer}.hook_resid_post", coefficient,
                      start)


def as_layer_below(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector, max(layer - 1, 0), coefficient, start)


def as_start_ignored(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector, layer, coefficient, 0)


def as_only_at_start(model, tokens, vector, layer, coefficient=1.0, start=0):
    if vector.dim() == 2:
        return s11.apply_steering(model, tokens, vector, layer, coefficient, start)
    return _edit_steer(model, tokens, layer, lambda x: x[:, start:start + 1].add_(
        coefficient * vector))


def as_last_only(model, tokens, vector, layer, coefficient=1.0, start=0):
    if vector.dim() == 2:
        return s11.apply_steering(model, tokens, vector, layer, coefficient, start)
    return _edit_steer(model, tokens, layer, lambda x: x[:, -1].add_(coefficient * vector))


def as_first_row_only(model, tokens, vector, layer, coefficient=1.0, start=0):
    steered = s11.apply_steering(model, tokens, vector, layer, coefficient, start)
    return torch.cat([steered[:1], model(tokens[1:])]) if len(tokens) > 1 else steered


def as_normalised(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector / vector.norm(), layer, coefficient, start)


def as_hook_result_dropped(model, tokens, vector, layer, coefficient=1.0, start=0):
    def hook(x, hook):
        x = x + coefficient * vector  # a new tensor, never returned: the hook changes nothing
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])


def as_probabilities(model, tokens, vector, layer, coefficient=1.0, start=0):
    return s11.apply_steering(model, tokens, vector, layer, coefficient, start).softmax(-1)


def as_hook_left_attached(model, tokens, vector, layer, coefficient=1.0, start=0):
    fn = SteeringVector(vector, f"blocks.{layer}.hook_resid_pre").hook_fn(model, coefficient,
                                                                         start)
    model.hook_point(f"blocks.{layer}.hook_resid_pre").fwd_fns.append(fn)
    return model(tokens)


def as_edits_weights(model, tokens, vector, layer, coefficient=1.0, start=0):
    with torch.no_grad():  # steering folded into the embeddings stays there afterwards
        model.embed.W_E += coefficient * (vector if vector.dim() == 1 else vector[0])
    return model(tokens)


def as_scales_vector_in_place(model, tokens, vector, layer, coefficient=1.0, start=0):
    vector *= coefficient
    return s11.apply_steering(model, tokens, vector, layer, 1.0, start)


# -- steering_effect


def _effect(model, vector, layer, coefficient, prompts, targets, neutral, neutral_mask,
            effect_of=None, kl_of=None):
    """The reference measurement with the effect's or the kl's formula replaced:
    ``effect_of(clean_logits, steered_logits)`` on the prompts, ``kl_of(p_logits,
    q_logits, mask)`` on the neutral texts."""
    with torch.no_grad():
        clean, steered = model(prompts), s11.apply_steering(model, prompts, vector, layer,
                                                            coefficient)
        p, q = model(neutral), s11.apply_steering(model, neutral, vector, layer, coefficient)
    reference = s11.steering_effect(model, vector, layer, coefficient, prompts, targets,
                                    neutral, neutral_mask)
    if effect_of is not None:
        reference["effect"] = float(effect_of(clean, steered, targets))
    if kl_of is not None:
        reference["kl"] = float(kl_of(p, q, neutral_mask))
    return reference


def _effect_mutant(**formula):
    def mutant(model, vector, layer, coefficient, prompts, targets, neutral, neutral_mask):
        return _effect(model, vector, layer, coefficient, prompts, targets, neutral,
                       neutral_mask, **formula)
    return mutant


def _lse(logits, targets):
    return logits.log_softmax(-1)[..., targets].logsumexp(-1)


def _kl_tokens(p, q):
    p, q = p.log_softmax(-1), q.log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


eff_reversed = _effect_mutant(effect_of=lambda c, s, t: (_lse(c, t) - _lse(s, t))[:, -1]
                              .mean())
eff_logits = _effect_mutant(effect_of=lambda c, s, t: (s[:, -1, t] - c[:, -1, t]).mean())
eff_mean_logprobs = _effect_mutant(effect_of=lambda c, s, t: (
    s.log_softmax(-1) - c.log_softmax(-1))[:, -1, t].mean())
eff_probabilities = _effect_mutant(effect_of=lambda c, s, t: (
    s.softmax(-1) - c.softmax(-1))[:, -1, t].sum(-1).mean())
eff_all_positions = _effect_mutant(effect_of=lambda c, s, t: (_lse(s, t) - _lse(c, t)).mean())
eff_summed = _effect_mutant(effect_of=lambda c, s, t: (_lse(s, t) - _lse(c, t))[:, -1].sum())
kl_reversed = _effect_mutant(kl_of=lambda p, q, m: _kl_tokens(q, p)[m].mean())
kl_with_padding = _effect_mutant(kl_of=lambda p, q, m: _kl_tokens(p, q).mean())
kl_row_means = _effect_mutant(kl_of=lambda p, q, m: torch.stack(
    [row[keep].mean() for row, keep in zip(_kl_tokens(p, q), m)]).mean())
kl_summed = _effect_mutant(kl_of=lambda p, q, m: _kl_tokens(p, q)[m].sum())
kl_vocab_mean = _effect_mutant(kl_of=lambda p, q, m: F.kl_div(
    q.log_softmax(-1)[m], p.log_softmax(-1)[m], log_target=True, reduction="none").mean())
kl_div_probabilities = _effect_mutant(kl_of=lambda p, q, m: F.kl_div(
    q.softmax(-1)[m], p.softmax(-1)[m], reduction="sum") / m.sum())
kl_on_logits = _effect_mutant(kl_of=lambda p, q, m: (p.softmax(-1) * (p - q)).sum(-1)[m]
                              .mean())


def eff_hook_left(model, vector, layer, coefficient, prompts, targets, neutral, neutral_mask):
    found = s11.steering_effect(model, vector, layer, coefficient, prompts, targets, neutral,
                                neutral_mask)
    hook = SteeringVector(vector, f"blocks.{layer}.hook_resid_pre").hook_fn(model, coefficient)
    model.hook_point(f"blocks.{layer}.hook_resid_pre").fwd_fns.append(hook)
    return found


# -- sae_loss (decoder_norms is new: the lesson's first mutants in mutants.py ignore it)


def _sae_loss(x, x_hat, acts, l1_coefficient, decoder_norms=None, mse_of=None, l1_of=None,
              combine=None):
    weight = 1.0 if decoder_norms is None else decoder_norms
    mse = (x_hat - x).pow(2).sum(-1).mean() if mse_of is None else mse_of(x_hat - x)
    l1 = (acts.abs() * weight).sum(-1).mean() if l1_of is None else l1_of(acts, weight)
    loss = mse + l1_coefficient * l1 if combine is None else combine(mse, l1, l1_coefficient)
    return loss, mse, l1


def _sae_mutant(**change):
    def mutant(x, x_hat, acts, l1_coefficient, decoder_norms=None):
        return _sae_loss(x, x_hat, acts, l1_coefficient, decoder_norms, **change)
    return mutant


def sae_mse_batch_sum(x, x_hat, acts, l1_coefficient, decoder_norms=None):
    return _sae_loss(x, x_hat, acts, l1_coefficient, decoder_norms,
                     mse_of=lambda e: e.pow(2).sum())


sae_mse_abs = _sae_mutant(mse_of=lambda e: e.abs().sum(-1).mean())
sae_mse_norm = _sae_mutant(mse_of=lambda e: e.norm(dim=-1).mean())
sae_l1_relu = _sae_mutant(l1_of=lambda a, w: (a.clamp(min=0) * w).sum(-1).mean())
sae_l1_feature_mean = _sae_mutant(l1_of=lambda a, w: (a.abs() * w).mean())
sae_l1_norms_ignored = _sae_mutant(l1_of=lambda a, w: a.abs().sum(-1).mean())
sae_l1_norms_squared = _sae_mutant(l1_of=lambda a, w: (a.abs() * w ** 2).sum(-1).mean())
sae_l1_norms_divided = _sae_mutant(l1_of=lambda a, w: (a.abs() / w).sum(-1).mean())
sae_coefficient_on_mse = _sae_mutant(combine=lambda mse, l1, c: c * mse + l1)
sae_penalty_subtracted = _sae_mutant(combine=lambda mse, l1, c: mse - c * l1)


def sae_l1_scaled(x, x_hat, acts, l1_coefficient, decoder_norms=None):
    loss, mse, l1 = s12.sae_loss(x, x_hat, acts, l1_coefficient, decoder_norms)
    return loss, mse, l1_coefficient * l1


def sae_loss_detached(x, x_hat, acts, l1_coefficient, decoder_norms=None):
    loss, mse, l1 = s12.sae_loss(x, x_hat, acts, l1_coefficient, decoder_norms)
    return mse.detach() + l1_coefficient * l1, mse, l1


# -- toy_model_forward


def _toy(x, W, b, importance, hidden_of=None, out_of=None, loss_of=None):
    h = torch.einsum("ihf,bif->bih", W, x) if hidden_of is None else hidden_of(W, x)
    pre = torch.einsum("ihf,bih->bif", W, h)
    x_hat = torch.relu(pre + b) if out_of is None else out_of(pre, b)
    err = (x - x_hat).pow(2)
    loss = (importance * err).sum(-1).mean(0).sum() if loss_of is None else \
        loss_of(x, x_hat, importance)
    return x_hat, loss


def _toy_mutant(**change):
    def mutant(x, W, b, importance):
        return _toy(x, W, b, importance, **change)
    return mutant


def toy_batch_matmul(x, W, b, importance):
    h = x @ W.transpose(-1, -2)  # pairs sample k with W[k] when batch == n_instances
    x_hat = torch.relu(h @ W + b)
    return x_hat, (importance * (x - x_hat).pow(2)).sum(-1).mean(0).sum()


toy_no_relu = _toy_mutant(out_of=lambda pre, b: pre + b)
toy_relu_before_bias = _toy_mutant(out_of=lambda pre, b: torch.relu(pre) + b)
toy_no_bias = _toy_mutant(out_of=lambda pre, b: torch.relu(pre))
toy_summed_instances = _toy_mutant(hidden_of=lambda W, x: torch.einsum(
    "ihf,bif->bh", W, x)[:, None].expand(-1, W.shape[0], -1))
toy_loss_no_importance = _toy_mutant(loss_of=lambda x, h, i: (x - h).pow(2).sum(-1).mean(0)
                                     .sum())
toy_loss_importance_squared = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h)).pow(2).sum(-1)
                                          .mean(0).sum())
toy_loss_abs = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).abs()).sum(-1).mean(0).sum())
toy_loss_feature_mean = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).pow(2)).mean(-1)
                                    .mean(0).sum())
toy_loss_instance_mean = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).pow(2)).sum(-1)
                                     .mean(0).mean())
toy_loss_all_mean = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).pow(2)).mean())
toy_loss_batch_sum = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).pow(2)).sum())
toy_loss_per_instance = _toy_mutant(loss_of=lambda x, h, i: (i * (x - h).pow(2)).sum(-1)
                                    .mean(0))
toy_hidden_detached = _toy_mutant(hidden_of=lambda W, x: torch.einsum("ihf,bif->bih", W, x)
                                  .detach())


# -- sae_training_step


def _sae_step(params, x, optimizer, l1_coefficient, parallel=-1, renorm=-1,
              subtract_b_dec=True, l1_on_pre=False, zero_grad=True, rebind=False):
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    pre = ((x - b_dec) if subtract_b_dec else x) @ W_enc + b_enc
    acts = torch.relu(pre)
    loss, _, _ = s12.sae_loss(x, acts @ W_dec + b_dec, pre if l1_on_pre else acts,
                              l1_coefficient)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    with torch.no_grad():
        if parallel is not None:
            unit = F.normalize(W_dec, dim=parallel)
            W_dec.grad -= (W_dec.grad * unit).sum(parallel, keepdim=True) * unit
        optimizer.step()
        if rebind:
            params["W_dec"] = F.normalize(W_dec, dim=-1)
        elif renorm is not None:
            W_dec /= W_dec.norm(dim=renorm, keepdim=True)
    return loss.item()


def _step_mutant(**change):
    def mutant(params, x, optimizer, l1_coefficient):
        return _sae_step(params, x, optimizer, l1_coefficient, **change)
    return mutant


step_no_parallel = _step_mutant(parallel=None)
step_parallel_columns = _step_mutant(parallel=0)
step_no_renorm = _step_mutant(renorm=None)
step_renorm_columns = _step_mutant(renorm=0)
step_no_b_dec = _step_mutant(subtract_b_dec=False)
step_l1_pre = _step_mutant(l1_on_pre=True)
step_no_zero_grad = _step_mutant(zero_grad=False)
step_rebinds_w_dec = _step_mutant(rebind=True)


def step_never_steps(params, x, optimizer, l1_coefficient):
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    loss, _, _ = s12.sae_loss(x, acts @ W_dec + b_dec, acts, l1_coefficient)
    return loss.item()  # computed, but neither backward nor step


def step_renorm_before_step(params, x, optimizer, l1_coefficient):
    W_dec = params["W_dec"]
    with torch.no_grad():
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return _sae_step(params, x, optimizer, l1_coefficient, renorm=None)


# The factories' functions take the names they are bound to, so test ids say which is which.
for _name, _fn in list(globals().items()):
    if getattr(_fn, "__name__", None) in ("selectivity", "mutant"):
        _fn.__name__ = _name


MUTANTS: dict[str, list[tuple[object, str]]] = {
    "linear_probe": [
        (probe_percent, "a percentage"), (probe_returns_loss, "not a share of the test examples"),
        (probe_trained_on_test_too, "training data"),
        (probe_gradient_ascent, "learned it backwards"),
        (probe_unseeded, "same seed gave different accuracies"),
        (probe_no_bias, "without a bias"), (probe_one_sigmoid_logit, "never predicts class 2"),
        (probe_reads_four_dims, "well below what a logistic probe reaches"),
    ],
    "probe_selectivity": [
        (sel_calls_linear_probe, "never called probe"), (sel_one_call, "call probe twice"),
        (sel_control_twice, "call probe twice"),
        (sel_no_real_task, "no probe call used the real labels"),
        (sel_own_label, "control labels equal the real ones"),
        (sel_evaluates_on_train, "training set as its test set"),
        (sel_types_as_features, "with the activations you were given"),
        (sel_float_labels, "must be int64 class ids"),
        (sel_one_hot_control, "one label per example"),
        (sel_type_index, "none of the real classes"),
        (sel_per_example, "examples of one type got different control labels"),
        (sel_split, "differs from its label in the training set"),
        (sel_uniform, "drawn uniformly over the classes"),
        (sel_two_classes, "shares over the types are far"),
        (sel_global_rng, "two calls with seed=0 drew different"),
        (sel_seed_ignored, "seed=0 and seed=1 drew the same"),
        (sel_reversed, "yours is the reverse"), (sel_swapped, "are swapped"),
        (sel_ratio, "not their ratio"),
    ],
    "mean_difference_direction": [
        (md_reversed, "points the wrong way"), (md_not_unit, "so the direction has norm 1"),
        (md_sums, "subtracted the classes' sums"),
        (md_labels_as_indices, "indexed acts with the labels"),
        (md_wrong_axis, "averaged over the wrong axis"),
        (md_l1_norm, "not by the sum of absolute values"),
        (md_squared_norm, "not by the squared norm"), (md_keepdim, "not [1, d]"),
        (md_overall_mean, "subtracted the overall mean"),
    ],
    "steering_vector": [
        (steer_layer_below, "read layer - 1"), (steer_mean_positions, "averaged over positions"),
        (steer_mean_d_model, "averaged over d_model"),
        (steer_pad_tokens, "padded the shorter prompt's tokens"),
        (steer_truncated, "cut both to the shorter"),
        (steer_batch_dim, "without the batch dimension"),
        (steer_normalised, "do not normalise it"),
        (steer_positive_only, "subtract the negative's"),
    ],
    "apply_steering": [
        (as_no_coefficient, "coefficient was ignored"), (as_subtracts, "subtracted the vector"),
        (as_resid_post, "steered the wrong hook"), (as_layer_below, "steered layer - 1"),
        (as_start_ignored, "went in from position 0"),
        (as_only_at_start, "at position `start` only"),
        (as_last_only, "steered the last position only"),
        (as_first_row_only, "only the first prompt of the batch"),
        (as_normalised, "you normalised the vector"),
        (as_hook_result_dropped, "the logits are the unsteered model's"),
        (as_probabilities, "not probabilities"),
        (as_hook_left_attached, "still attached after apply_steering"),
        (as_edits_weights, "changed the model's weights"),
        (as_scales_vector_in_place, "changed the vector (or tokens)"),
    ],
    "steering_effect": [
        (eff_reversed, "yours is the reverse"), (eff_logits, "you measured logits"),
        (eff_mean_logprobs, "averaged the targets' log-probs"),
        (eff_probabilities, "change in probability"),
        (eff_all_positions, "averaged over every position"),
        (eff_summed, "summed over the prompts"), (kl_reversed, "KL(steered || unsteered)"),
        (kl_with_padding, "over padding positions too"),
        (kl_row_means, "each text's mean KL"), (kl_summed, "summed the KL over the tokens"),
        (kl_vocab_mean, "averaged over the vocabulary"),
        (kl_div_probabilities, "you passed probabilities"),
        (kl_on_logits, "used logits in place of log-probabilities"),
        (eff_hook_left, "still attached after steering_effect"),
    ],
    "sae_loss": [
        (sae_mse_batch_sum, "mse summed over the batch"), (sae_mse_abs, "mse is not squared"),
        (sae_mse_norm, "took each row's norm"),
        (sae_l1_relu, "dropped the negative activations"),
        (sae_l1_feature_mean, "l1 averaged over features too"),
        (sae_l1_scaled, "came back multiplied by l1_coefficient"),
        (sae_l1_norms_ignored, "decoder_norms was ignored"),
        (sae_l1_norms_squared, "not by the squared norm"),
        (sae_l1_norms_divided, "you divided"),
        (sae_coefficient_on_mse, "multiplies the wrong term"),
        (sae_penalty_subtracted, "not minus"),
        (sae_loss_detached, "right value but the wrong gradient"),
    ],
    "toy_model_forward": [
        (toy_no_relu, "x_hat has no ReLU"), (toy_relu_before_bias, "bias goes inside the ReLU"),
        (toy_no_bias, "bias b is missing"), (toy_summed_instances, "summed over the instances"),
        (toy_batch_matmul, "was run through instance k's W"),
        (toy_loss_no_importance, "ignores importance"),
        (toy_loss_importance_squared, "not (importance * (x - x_hat))^2"),
        (toy_loss_abs, "must square the error"),
        (toy_loss_feature_mean, "averaged over features"),
        (toy_loss_instance_mean, "averaged over instances"),
        (toy_loss_all_mean, "a mean over everything"),
        (toy_loss_batch_sum, "summed over the batch: average over it"),
        (toy_loss_per_instance, "not [n_instances]"),
        (toy_hidden_detached, "wrong gradient for W or b"),
    ],
    "sae_training_step": [
        (step_no_parallel, "was not removed before"),
        (step_parallel_columns, "along W_dec's columns"),
        (step_no_renorm, "are not at unit norm"), (step_renorm_before_step, "are not at unit norm"),
        (step_renorm_columns, "normalised W_dec's columns"),
        (step_no_b_dec, "subtract the decoder bias"),
        (step_l1_pre, "taken on the pre-activations"),
        (step_no_zero_grad, "piled up across steps"),
        (step_rebinds_w_dec, "is a new tensor after your step"),
        (step_never_steps, "did not change the encoder"),
    ],
}
