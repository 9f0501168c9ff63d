"""Wrong and right answers to lesson 6d's exercises (InfoNCE, nearest-neighbour
classification, a contrastive training loop).

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gptscope.course.checks import contrastive as cc
from gptscope.course.solutions.lesson06d_contrastive import augment, info_nce_loss

# -- info_nce_loss: one function with switches, each mutant flips one --------------------------


def _nce(z_a, z_b, temperature, *, normalise=True, dim=-1, multiply=False, both=True,
         halve=True, reduce="mean", positive=True, within=False):
    a = F.normalize(z_a, dim=dim) if normalise else z_a
    b = F.normalize(z_b, dim=dim) if normalise else z_b
    scale = temperature if multiply else 1 / temperature
    n = len(a)
    eye = torch.eye(n, dtype=torch.bool)

    def one_way(x, y):
        logits = x @ y.T * scale
        pos = logits.diagonal()
        if within:
            logits = torch.cat([logits, (x @ x.T * scale).masked_fill(eye, float("-inf"))], 1)
        if not positive:
            logits = logits.masked_fill(F.pad(eye, (0, logits.shape[1] - n)), float("-inf"))
        per = logits.logsumexp(1) - pos
        return per.mean() if reduce == "mean" else per.sum()

    if not both:
        return one_way(a, b)
    total = one_way(a, b) + one_way(b, a)
    return total / 2 if halve else total


def nce_unnormalised(a, b, t):
    return _nce(a, b, t, normalise=False)


def nce_normalise_columns(a, b, t):
    return _nce(a, b, t, dim=0)


def nce_temperature_multiplied(a, b, t):
    return _nce(a, b, t, multiply=True)


def nce_one_direction(a, b, t):
    return _nce(a, b, t, both=False)


def nce_directions_added(a, b, t):
    return _nce(a, b, t, halve=False)


def nce_summed(a, b, t):
    return _nce(a, b, t, reduce="sum")


def nce_positive_excluded(a, b, t):
    return _nce(a, b, t, positive=False)


def nce_nt_xent(a, b, t):
    return _nce(a, b, t, within=True)


def nce_argmax_targets(a, b, t):
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / t
    return (F.cross_entropy(logits, logits.argmax(1).detach())
            + F.cross_entropy(logits.T, logits.T.argmax(1).detach())) / 2


def nce_detached(a, b, t):
    return torch.tensor(info_nce_loss(a, b, t).item(), dtype=a.dtype, requires_grad=True)


def nce_float(a, b, t):
    return info_nce_loss(a, b, t).item()


# Right answers, written differently.

def nce_by_log_softmax(z_a, z_b, temperature=0.1):
    a = z_a / z_a.norm(dim=1, keepdim=True)
    b = z_b / z_b.norm(dim=1, keepdim=True)
    sims = torch.einsum("id,jd->ij", a, b) / temperature
    return -(sims.log_softmax(1).diagonal().mean() + sims.log_softmax(0).diagonal().mean()) / 2


def nce_by_cosine_similarity(z_a, z_b, temperature=0.1):
    sims = F.cosine_similarity(z_a[:, None, :], z_b[None, :, :], dim=-1) / temperature
    labels = torch.arange(len(z_a))
    return 0.5 * F.cross_entropy(sims, labels) + 0.5 * F.cross_entropy(sims.T, labels)


# -- nearest_neighbour_classify ---------------------------------------------------------------


def _knn(train_z, train_y, test_z, k, *, score="cosine", largest=True, ties="smallest",
         index=False):
    if score == "cosine":
        sims = F.normalize(test_z, dim=-1) @ F.normalize(train_z, dim=-1).T
    elif score == "dot":
        sims = test_z @ train_z.T
    else:
        sims = -torch.cdist(test_z, train_z)
    nearest = sims.topk(k, dim=-1, largest=largest).indices
    if index:
        return nearest[:, 0]
    votes = F.one_hot(train_y[nearest], int(train_y.max()) + 1).sum(1)
    if ties == "largest":
        return votes.shape[1] - 1 - votes.flip(1).argmax(1)
    return votes.argmax(1)


def knn_euclidean(a, y, b, k):
    return _knn(a, y, b, k, score="euclidean")


def knn_dot(a, y, b, k):
    return _knn(a, y, b, k, score="dot")


def knn_farthest(a, y, b, k):
    return _knn(a, y, b, k, largest=False)


def knn_ignores_k(a, y, b, k):
    return _knn(a, y, b, 1)


def knn_one_more(a, y, b, k):
    return _knn(a, y, b, k + 1)


def knn_index(a, y, b, k):
    return _knn(a, y, b, k, index=True)


def knn_ties_largest(a, y, b, k):
    return _knn(a, y, b, k, ties="largest")


def knn_ties_nearest(a, y, b, k):
    sims = F.normalize(b, dim=-1) @ F.normalize(a, dim=-1).T
    labels = y[sims.topk(k, dim=-1).indices].tolist()
    out = []
    for row in labels:  # Counter-style: the first label, in order of nearness, with the most
        counts = {label: row.count(label) for label in row}
        out.append(max(counts, key=counts.get))
    return torch.tensor(out)


def knn_float_labels(a, y, b, k):
    return _knn(a, y, b, k).float()


# Right answers, written differently.

def knn_by_numpy(train_z, train_y, test_z, k=1):
    a = train_z.numpy() / np.linalg.norm(train_z.numpy(), axis=1, keepdims=True)
    b = test_z.numpy() / np.linalg.norm(test_z.numpy(), axis=1, keepdims=True)
    order = np.argsort(-(b @ a.T), axis=1, kind="stable")[:, :k]
    labels = train_y.numpy()[order]
    n = int(train_y.max()) + 1
    votes = np.stack([np.bincount(row, minlength=n) for row in labels])
    return torch.from_numpy(votes.argmax(1)).long()


def knn_by_sorting_angles(train_z, train_y, test_z, k=1):
    sims = F.cosine_similarity(test_z[:, None], train_z[None], dim=-1)
    order = sims.argsort(dim=1, descending=True)[:, :k]
    out = torch.empty(len(test_z), dtype=torch.long)
    for i, row in enumerate(train_y[order]):
        counts = torch.bincount(row)
        out[i] = int(torch.nonzero(counts == counts.max())[0])
    return out


# -- train_contrastive ------------------------------------------------------------------------


def _loop(encoder, images, steps, batch_size, lr, temperature, seed, *, fresh=False,
          same_rows=False, views="two", optimizer=torch.optim.AdamW, use_lr=True,
          use_temperature=True, as_tensors=False, zero_grad=True):
    def make():
        return optimizer(encoder.parameters(), lr=lr) if use_lr else optimizer(
            encoder.parameters())

    opt, g = make(), torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(images), (batch_size,), generator=g)
    losses = []
    for step in range(steps):
        if fresh:
            opt = make()
        if step and not same_rows:
            rows = torch.randint(0, len(images), (batch_size,), generator=g)
        batch = images[rows]
        a = batch if views == "none" else augment(batch, g)
        b = a if views == "one" else batch if views == "none" else augment(batch, g)
        loss = info_nce_loss(encoder(a), encoder(b), temperature if use_temperature else 0.1)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach() if as_tensors else loss.item())
    return losses


def loop_fresh_optimizer(*a):
    return _loop(*a, fresh=True)


def loop_same_rows(*a):
    return _loop(*a, same_rows=True)


def loop_one_view(*a):
    return _loop(*a, views="one")


def loop_no_augmentation(*a):
    return _loop(*a, views="none")


def loop_sgd(*a):
    return _loop(*a, optimizer=torch.optim.SGD)


def loop_ignores_lr(*a):
    return _loop(*a, use_lr=False)


def loop_ignores_temperature(*a):
    return _loop(*a, use_temperature=False)


def loop_tensors(*a):
    return _loop(*a, as_tensors=True)


def loop_on_a_copy(encoder, *a):
    import copy
    return _loop(copy.deepcopy(encoder), *a)


def loop_returns_nothing(*a):
    _loop(*a)


# Right answers, written differently.

def loop_with_set_to_none(encoder, images, steps, batch_size=128, lr=3e-3, temperature=0.2,
                          seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    opt = torch.optim.AdamW(params=list(encoder.parameters()), lr=lr)
    losses = []
    while len(losses) < steps:
        picked = images[torch.randint(0, images.shape[0], (batch_size,), generator=g)]
        first, second = augment(picked, g), augment(picked, g)
        z = encoder(torch.cat([first, second]))  # one forward pass for both views
        loss = nce_by_log_softmax(z[:batch_size], z[batch_size:], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def loop_as_a_tuple_of_floats(encoder, images, steps, batch_size=128, lr=3e-3,
                              temperature=0.2, seed=0):
    optimizer = torch.optim.AdamW(encoder.parameters(), lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        batch = images.index_select(0, torch.randint(len(images), (batch_size,), generator=gen))
        views = [augment(batch, gen) for _ in range(2)]
        loss = nce_by_cosine_similarity(*(encoder(v) for v in views), temperature)
        for p in encoder.parameters():
            p.grad = None
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return tuple(out)


MUTANTS: dict[str, list] = {
    "info_nce_loss": [
        (nce_unnormalised, cc.NOT_NORMALISED), (nce_normalise_columns, cc.NORMALISED_COLUMNS),
        (nce_temperature_multiplied, cc.TEMP_MULTIPLIED), (nce_one_direction, cc.ONE_DIRECTION),
        (nce_directions_added, cc.DIRECTIONS_ADDED), (nce_summed, cc.SUMMED),
        (nce_positive_excluded, cc.POSITIVE_LEFT_OUT), (nce_nt_xent, cc.WITHIN_VIEW),
        (nce_argmax_targets, cc.WRONG_TARGETS), (nce_detached, cc.LOSS_GRAD),
        (nce_float, "plain number"),
    ],
    "nearest_neighbour_classify": [
        (knn_euclidean, cc.EUCLIDEAN), (knn_dot, cc.DOT), (knn_farthest, cc.FARTHEST),
        (knn_ignores_k, cc.K_IGNORED), (knn_one_more, cc.K_OFF), (knn_index, cc.INDEX_NOT_LABEL),
        (knn_ties_largest, cc.TIES_LARGEST), (knn_ties_nearest, cc.TIES_NEAREST),
        (knn_float_labels, "expected integers"),
    ],
    "train_contrastive": [
        (loop_fresh_optimizer, "a new optimizer every step"), (loop_same_rows, "the same rows"),
        (loop_one_view, "one augmented draw"), (loop_no_augmentation, "not augmented"),
        (loop_sgd, "use torch.optim.AdamW(encoder"),
        (loop_ignores_lr, "lr argument is ignored"),
        (loop_ignores_temperature, "temperature argument is ignored"),
        (loop_tensors, "the losses are tensors"), (loop_on_a_copy, "did not change"),
        (loop_returns_nothing, "returned None"),
    ],
}

RIGHT_ANSWERS: dict[str, list] = {
    "info_nce_loss": [nce_by_log_softmax, nce_by_cosine_similarity],
    "nearest_neighbour_classify": [knn_by_numpy, knn_by_sorting_angles],
    "train_contrastive": [loop_with_set_to_none, loop_as_a_tuple_of_floats],
}
