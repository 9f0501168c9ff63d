"""Small image data sets, made on the spot or bundled with a package (no downloads).

``glyphs``: 8x8 grey images of 10 classes, each class a fixed random stroke pattern drawn
with noise and a random one-pixel shift. It stands in for Fashion-MNIST at laptop scale and
needs no extra packages. ``digits`` returns scikit-learn's bundled 8x8 handwritten digits
when scikit-learn is installed (it ships the file; nothing is downloaded), else glyphs.
The course's lessons and the scaling lab's small CNNs (`gptscope.scaling.digits`) train on
them.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

SKLEARN_DIGITS = "scikit-learn digits"
GLYPHS_FALLBACK = "gptscope glyphs (scikit-learn not installed)"


def _prototypes(n_classes: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(n_classes, 8, 8)
    for c in range(n_classes):
        # A few random horizontal/vertical strokes per class.
        for _ in range(3):
            if torch.rand(1, generator=g) < 0.5:
                r = int(torch.randint(1, 7, (1,), generator=g))
                a, b = sorted(torch.randint(1, 7, (2,), generator=g).tolist())
                protos[c, r, a:b + 2] = 1.0
            else:
                col = int(torch.randint(1, 7, (1,), generator=g))
                a, b = sorted(torch.randint(1, 7, (2,), generator=g).tolist())
                protos[c, a:b + 2, col] = 1.0
    return protos


def glyphs(n: int, seed: int = 0, noise: float = 0.25, shift: bool = True,
           n_classes: int = 10, brightness: float = 1.0) -> tuple[Tensor, Tensor]:
    """``n`` images [n, 64] in [0, 1] and labels [n]. ``brightness`` < 1 dims the strokes
    (a simple distribution shift for lesson 3b)."""
    protos = _prototypes(n_classes, seed=1234)  # the classes are the same for every seed
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    imgs = protos[y] * brightness
    if shift:
        dx = torch.randint(-1, 2, (n,), generator=g)
        dy = torch.randint(-1, 2, (n,), generator=g)
        imgs = torch.stack([im.roll((int(a), int(b)), dims=(0, 1))
                            for im, a, b in zip(imgs, dy, dx)])
    imgs = imgs + noise * torch.randn(imgs.shape, generator=g)
    return imgs.clamp(0, 1).reshape(n, 64), y


def glyph_split(seed: int = 0, n_train: int = 1000, n_test: int = 500
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) of glyphs, disjoint draws."""
    x_tr, y_tr = glyphs(n_train, seed=seed)
    x_te, y_te = glyphs(n_test, seed=seed + 10_000)
    return x_tr, y_tr, x_te, y_te


def digits() -> tuple[Tensor, Tensor, str]:
    """(x [n, 64] in [0, 1], y [n], source): scikit-learn's digits if installed, else glyphs."""
    try:
        from sklearn.datasets import load_digits  # optional; ships its data with the package
    except ImportError:
        x, y = glyphs(1800)
        return x, y, GLYPHS_FALLBACK
    d = load_digits()
    return (torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target),
            SKLEARN_DIGITS)


DIGITS_HELD_OUT = 0.2  # the share of the digits kept out of training
DIGITS_SPLIT_SEED = 0  # which digits are held out: the same for every run and every lab


@functools.cache
def digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """(x_train [n, 1, 8, 8], y_train [n], x_test [m, 1, 8, 8], y_test [m], source): the
    bundled digits (``digits``) shuffled once with a fixed seed, the last 20% held out. The
    scaling lab's CNNs and the ViT read the same split (cached: treat it as read-only)."""
    x, y, source = digits()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    x, y = x[order].reshape(-1, 1, 8, 8), y[order]
    n_test = round(DIGITS_HELD_OUT * len(y))
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:], source
