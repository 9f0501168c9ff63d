"""Lesson 10: linear probes. Is a concept linearly readable from the activations?

A probe is a small classifier trained on a model's activations. Its accuracy on held-out
examples says whether a concept can be read off linearly, but not whether the model
computed it: a probe on a wide enough representation can memorise anything that is tied to
the current token. Two tools keep it honest: a *control task* (Hewitt & Liang, 2019) that
the probe can solve only by memorising, and the *difference of means* direction (Marks &
Tegmark, 2023), which has no parameters to fit and so cannot memorise at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 steps: int = 200, seed: int = 0) -> float:
    """Train a logistic-regression probe on (train_x, train_y); return its *test* accuracy.

    train_x [n_train, d] activations, train_y [n_train] int64 class ids; test_x [n_test, d]
    and test_y [n_test] the held-out set. There are n_classes = 1 + the largest id in
    train_y or test_y classes (two or more). The probe is a linear map W [d, n_classes]
    *with* a bias b [n_classes], trained with cross-entropy on the training set only
    (Adam, full batch, ``steps`` steps and a small weight decay is enough); it predicts the
    argmax class. The same ``seed`` must give the same result. Return the share of test
    examples it gets right: a Python float in [0, 1].

    Why held out: with more dimensions than examples a probe can fit even random labels,
    so training accuracy says little.
    """
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    W = torch.zeros(xs.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(xs @ W + b, train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((xt @ W + b).argmax(-1) == test_y).float().mean().item()


def probe_selectivity(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                      train_types: Tensor, test_types: Tensor, seed: int = 0,
                      probe: Callable[..., float] = linear_probe) -> dict[str, float]:
    """How much of a probe's accuracy the representation earns (Hewitt & Liang, 2019).

    train_x [n_train, d], train_y [n_train] and test_x, test_y as for ``linear_probe``;
    train_types [n_train] and test_types [n_test] (int64) are the token (word type) at each
    example. The *control task* gives every type one random label, the same label wherever
    the type occurs, in the training and the test set alike; each type's label is the real
    label of a randomly picked example (so control labels follow the real labels'
    distribution). Draw them with ``torch.Generator().manual_seed(seed)``: the same seed
    gives the same control labels. Control labels are class ids, int64 like the real ones.

    Train ``probe(train_x, labels_train, test_x, labels_test)`` (it returns test accuracy;
    use the ``probe`` you are given) once on the real labels and once on the control labels.
    Return {"accuracy": real accuracy, "control_accuracy": control accuracy,
    "selectivity": accuracy - control_accuracy}, Python floats.

    A probe can reach high control accuracy only by memorising which type gets which label;
    high selectivity says the real task's accuracy is not memorisation.
    """
    types = torch.cat([train_types, test_types])
    labels = torch.cat([train_y, test_y])
    distinct, type_index = types.unique(return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    donors = torch.randint(0, len(labels), (len(distinct),), generator=g)
    control = labels[donors][type_index]
    n_train = len(train_y)
    accuracy = float(probe(train_x, train_y, test_x, test_y))
    control_accuracy = float(probe(train_x, control[:n_train], test_x, control[n_train:]))
    return {"accuracy": accuracy, "control_accuracy": control_accuracy,
            "selectivity": accuracy - control_accuracy}


def mean_difference_direction(acts: Tensor, labels: Tensor) -> Tensor:
    """The difference-of-means ("mass-mean") probe direction (Marks & Tegmark, 2023).

    acts [n, d] activations; labels [n] int64, 1 where the concept is present and 0 where
    it is absent (both occur). Return the unit vector [d] pointing from the mean activation
    of the label-0 examples to the mean activation of the label-1 examples:
    (mean of acts[labels == 1]) - (mean of acts[labels == 0]), divided by its L2 norm.

    It needs no training, and unlike a logistic probe's weights it follows the direction the
    classes actually differ along, which makes it a good steering vector (lesson 11).
    """
    diff = acts[labels == 1].mean(0) - acts[labels == 0].mean(0)
    return diff / diff.norm()


def explore_sentiment_probe(n_sentences: int = 1200, seed: int = 0) -> dict[str, float]:
    """Given: probe the shipped ``stories`` model (``gs.load("stories")``, a 4-layer
    character model of the generated stories) with *your* ``linear_probe``.

    The activations are those at the full stop that ends each positive or negative
    sentence, with the 128 characters before it as context; the label is the sentence's
    sentiment. Every example's last token is the same "." at the same position, so the
    embeddings cannot tell the classes apart (chance, 0.5); what the layers add is what the
    model carried forward from the sentence. Each feature is standardised with the training
    examples' mean and std first (residual features differ in scale by orders of
    magnitude, which a probe trained for a few hundred steps feels). Returns the test
    accuracy after the embeddings and after each block.
    """
    import gptscope as gs
    from gptscope.data.stories import generate_stories

    model = gs.load("stories")
    n_ctx = model.cfg.n_ctx
    windows, labels = [], []
    for story in generate_stories(2 * n_sentences, seed=1000 + seed):
        for span in story.spans:
            if span.labels.get("sentiment") in ("negative", "positive") and \
                    span.labels.get("kind") == "sentiment" and span.end >= n_ctx:
                windows.append(story.text[span.end - n_ctx:span.end])
                labels.append(int(span.labels["sentiment"] == "positive"))
        if len(windows) >= n_sentences:
            break
    tokens = torch.tensor([model.tokenizer.encode(w) for w in windows[:n_sentences]])
    y = torch.tensor(labels[:n_sentences])
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post"
                                           for i in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    n_train = 2 * len(y) // 3
    accuracies = {}
    for name in names:
        x = cache[name][:, -1]  # [n, d_model] at the full stop
        x = (x - x[:n_train].mean(0)) / x[:n_train].std(0).clamp_min(1e-6)
        accuracies[name] = linear_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                                        steps=500, seed=seed)
        print(f"{name:26s} test accuracy {accuracies[name]:.2f}")
    print(f"chance 0.5; after the last block {accuracies[names[-1]]:.2f}: the sentence's "
          "sentiment is linearly readable at its full stop")
    return accuracies
