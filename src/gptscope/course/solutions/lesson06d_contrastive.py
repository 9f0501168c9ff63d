"""Lesson 6d: modeling objectives. A contrastive objective, and classifying by similarity.

Every lesson so far trained on labels or on the next token. A *contrastive* objective needs
neither: show the encoder two random views of the same image (here small shifts and pixel
noise) and ask it to pick its partner out of the batch. The loss is InfoNCE (van den Oord
et al., 2018; the symmetric form is CLIP's, the same idea as SimCLR's NT-Xent): a
cross-entropy whose logits are the cosine similarities of the embeddings over a
temperature and whose right answers are the diagonal. Labels come back only at the end,
to measure what the embedding learned: a held-out digit is classified by the labels of the
training digits most similar to it (k nearest neighbours), with no classifier trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.datasets import digits


def augment(images: Tensor, generator: torch.Generator, noise: float = 0.1) -> Tensor:
    """Given: one random view of each image, [n, 64] -> [n, 64].

    Each 8x8 image moves by one of the 9 shifts of at most one pixel (pixels moved in from
    the border are 0), then gets Gaussian noise of std ``noise``, clamped to [0, 1]. The
    draws, in this order: ``torch.randint(0, 9, (n,), generator=generator)`` picks the
    shifts, ``torch.randn(n, 64, generator=generator)`` the noise.
    """
    n = images.shape[0]
    padded = F.pad(images.reshape(n, 8, 8), (1, 1, 1, 1))
    # All nine shifted copies [9, n, 8, 8]; each image then keeps the one it drew.
    # (The shifts live here, not in a module constant: a notebook copies functions only.)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # index 4 is no shift
    moved = torch.stack([padded[:, 1 - dy:9 - dy, 1 - dx:9 - dx] for dy, dx in shifts])
    which = torch.randint(0, 9, (n,), generator=generator)
    views = moved[which, torch.arange(n)].reshape(n, 64)
    views = views + noise * torch.randn(n, 64, generator=generator, dtype=images.dtype)
    return views.clamp(0, 1)


def info_nce_loss(z_a: Tensor, z_b: Tensor, temperature: float = 0.1) -> Tensor:
    """The symmetric InfoNCE loss of two views, a 0-dim tensor that keeps its gradient.

    z_a, z_b [batch, dim]: row i of each embeds a view of the same example i (a positive
    pair); every other row of the *other* view is a negative. L2-normalise each row, then
    logits[i, j] = cos(z_a[i], z_b[j]) / temperature, [batch, batch]. The loss is the mean
    of two cross-entropies whose targets are the diagonal (target of row i is i): over
    the rows of ``logits`` (a picks its b) and over its columns (b picks its a), each
    averaged over the batch:

        loss = (CE(logits, arange(batch)) + CE(logits.T, arange(batch))) / 2

    The positive stays in the denominator (it is one of the batch classes); rows of the
    same view are not compared with each other (that is SimCLR's variant, not this one).

    Why normalise: without it the encoder lowers the loss by growing its outputs rather
    than by arranging them. Why a temperature: cosines lie in [-1, 1], far too flat for a
    softmax over a batch; dividing by a small temperature sharpens it.
    """
    a = F.normalize(z_a, dim=-1)
    b = F.normalize(z_b, dim=-1)
    logits = a @ b.T / temperature
    targets = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def nearest_neighbour_classify(train_z: Tensor, train_y: Tensor, test_z: Tensor, k: int = 1
                               ) -> Tensor:
    """Classify each test embedding by its k most cosine-similar training embeddings.

    train_z [n_train, dim] with labels train_y [n_train] (int64), test_z [n_test, dim];
    1 <= k <= n_train. For each test row take the k training rows with the highest cosine
    similarity to it (the check's cases have no ties in similarity) and return the label
    most of them carry, [n_test] int64. Where several labels tie for most votes, return the
    smallest of them.

    Why cosine: the contrastive loss only ever sees normalised embeddings, so their
    lengths carry nothing it trained; Euclidean distance or a raw dot product would let
    them decide.
    """
    sims = F.normalize(test_z, dim=-1) @ F.normalize(train_z, dim=-1).T
    nearest = sims.topk(k, dim=-1).indices  # [n_test, k]
    n_labels = int(train_y.max()) + 1
    votes = F.one_hot(train_y[nearest], n_labels).sum(1)  # [n_test, n_labels]
    return votes.argmax(-1)  # argmax returns the first of ties: the smallest label


def train_contrastive(encoder: torch.nn.Module, images: Tensor, steps: int,
                      batch_size: int = 128, lr: float = 3e-3, temperature: float = 0.2,
                      seed: int = 0) -> list[float]:
    """Train ``encoder`` in place with ``info_nce_loss`` on two views of each image.

    encoder maps [batch, 64] images to [batch, dim] embeddings; images [n, 64]. Return the
    ``steps`` training losses, a list of floats. The check replays your first steps with
    the same draws, so make them in this order:

        one torch.optim.AdamW(encoder.parameters(), lr=lr) and one
        g = torch.Generator().manual_seed(seed), both before the loop; then each step
        rows = torch.randint(0, n, (batch_size,), generator=g)
        view_a = augment(images[rows], g); view_b = augment(images[rows], g)
        loss = info_nce_loss(encoder(view_a), encoder(view_b), temperature)
        zero_grad, backward, step, and keep loss.item()

    Why two separate draws: the two views must differ, or the easiest way to match them is
    to remember each image's exact pixels, and nothing about what stays the same under a
    shift or noise is learned.
    """
    opt = torch.optim.AdamW(encoder.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, len(images), (batch_size,), generator=g)
        view_a = augment(images[rows], g)
        view_b = augment(images[rows], g)
        loss = info_nce_loss(encoder(view_a), encoder(view_b), temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def explore_contrastive_digits(steps: int = 300, labelled_per_class: int = 5, seed: int = 0
                               ) -> dict[str, float]:
    """Given: what a contrastive embedding buys when labels are few (uses *your* exercises).

    Splits the bundled digits (scikit-learn's when installed) into 1297 training and 500
    held-out images, trains a small MLP encoder contrastively on all the training images
    *without* their labels, and then labels only ``labelled_per_class`` training images of
    each class. Each held-out digit gets the label of its nearest labelled neighbour, by
    raw pixels, by an untrained encoder and by the trained one. Prints and returns the
    three accuracies (chance is 0.1).
    """
    x, y, source = digits()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[:-500], order[-500:]
    labelled = torch.cat([train[y[train] == c][:labelled_per_class] for c in range(10)])
    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                  torch.nn.Linear(128, 32))

    def accuracy(embed) -> float:
        with torch.no_grad():
            pred = nearest_neighbour_classify(embed(x[labelled]), y[labelled], embed(x[test]))
        return (pred == y[test]).float().mean().item()

    found = {"raw pixels": accuracy(lambda v: v), "untrained encoder": accuracy(encoder)}
    losses = train_contrastive(encoder, x[train], steps, batch_size=256, seed=seed)
    found["contrastive encoder"] = accuracy(encoder)
    print(f"{source}: 1-nearest-neighbour accuracy on 500 held-out digits, "
          f"{labelled_per_class} labelled per class")
    for name, value in found.items():
        print(f"  {name:20s} {value:.3f}")
    print(f"  (contrastive loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps)")
    print("the contrastive encoder, trained without a label, is far above chance and above "
          "its own untrained start; on these clean digits raw pixels are a strong baseline "
          "that shifts of one pixel and noise alone do not beat")
    return found
