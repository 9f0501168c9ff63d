"""Lesson 1: neural networks and gradient descent.

A two-layer perceptron (MLP) is ``logits = relu(x @ W1 + b1) @ W2 + b2``. You write its
forward pass, its backward pass by hand (no autograd), and a training loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def mlp_forward(x: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    """The forward pass of a one-hidden-layer MLP with a ReLU.

    Shapes: x [batch, d_in], W1 [d_in, d_hidden], b1 [d_hidden], W2 [d_hidden, n_classes],
    b2 [n_classes]. Returns the logits [batch, n_classes] (no softmax at the end).

    Hint: ``torch.relu`` or ``.clamp(min=0)``; ``@`` is matrix multiplication.
    """
    hidden = torch.relu(x @ W1 + b1)  # [batch, d_hidden]
    return hidden @ W2 + b2


def mlp_backward(
    x: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor
) -> dict[str, Tensor]:
    """Gradients of the mean cross-entropy loss of ``mlp_forward`` by hand (no autograd).

    x [batch, d_in] inputs, y [batch] class ids (int64); weights as in ``mlp_forward``.
    Returns {"W1": dL/dW1, "b1": dL/db1, "W2": dL/dW2, "b2": dL/db2}, each shaped like
    its parameter, where L = mean over the batch of -log softmax(logits)[y].

    Hints: go backwards one step at a time. d(loss)/d(logits) = (softmax(logits) -
    onehot(y)) / batch. A matmul ``h @ W`` sends gradient G to ``h.T @ G`` for W and
    ``G @ W.T`` for h. ReLU passes gradient only where its input was > 0. A bias's gradient
    is the sum over the batch of the gradient of what it was added to.
    """
    n = x.shape[0]
    pre = x @ W1 + b1  # [batch, d_hidden]
    hidden = pre.clamp(min=0)
    logits = hidden @ W2 + b2  # [batch, n_classes]
    probs = (logits - logits.amax(-1, keepdim=True)).exp()
    probs = probs / probs.sum(-1, keepdim=True)
    d_logits = probs.clone()
    d_logits[torch.arange(n), y] -= 1.0
    d_logits /= n
    d_hidden = d_logits @ W2.T
    d_pre = d_hidden * (pre > 0).to(d_hidden.dtype)
    return {
        "W1": x.T @ d_pre,
        "b1": d_pre.sum(0),
        "W2": hidden.T @ d_logits,
        "b2": d_logits.sum(0),
    }


def train_classifier(
    x_train: Tensor, y_train: Tensor, n_classes: int, seed: int = 0
) -> Callable[[Tensor], Tensor]:
    """Train a classifier on images and return a function that predicts class ids.

    x_train [n, d_in] float pixels (8x8 images flattened to 64 values in [0, 1]), y_train
    [n] class ids in [0, n_classes). Return ``predict(x [m, d_in]) -> [m]`` class ids. The
    check times it (well under a minute on a laptop) and needs held-out accuracy >= 0.85.

    Hints: an ``nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)`` and ``torch.optim.Adam``
    with lr around 1e-2 for a few hundred full-batch steps is plenty. Use
    ``torch.manual_seed(seed)`` so runs repeat. Predict with ``argmax`` of the logits.
    """
    torch.manual_seed(seed)
    d_in = x_train.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, 64), torch.nn.ReLU(), torch.nn.Linear(64, n_classes)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict(x: Tensor) -> Tensor:
        with torch.no_grad():
            return model(x).argmax(-1)

    return predict
