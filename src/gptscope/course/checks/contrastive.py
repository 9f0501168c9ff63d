"""Checks for lesson 6d: the InfoNCE loss, nearest-neighbour classification, a contrastive
training loop.

info_nce_loss is compared with a float64 truth and its gradients with the truth's, on
embeddings whose rows have different lengths (so a missing normalisation shows) and whose
two views are not symmetric (so one direction alone shows). nearest_neighbour_classify
gets rows of very different lengths (cosine, dot product and Euclidean distance rank them
differently) and an even k (so ties between labels happen). train_contrastive is replayed
for its first steps with the same draws, like lesson 6's train_loop, then must give the
glyphs an embedding whose nearest neighbours beat the untrained encoder's.
"""

# The wrong-variant lambdas are called by compare() in the same case that makes them, so
# the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._answers import gradients, tensor_answer
from gptscope.course.checks._common import (
    Mismatch,
    call,
    close,
    compare,
    float32_atol,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.datasets import glyph_split
from gptscope.course.result import CheckResult
from gptscope.course.solutions.lesson06d_contrastive import augment

# -- info_nce_loss ----------------------------------------------------------------------------

NOT_NORMALISED = ("the rows are not L2-normalised: logits are cosine similarities, "
                  "F.normalize(z, dim=-1) each view before the product")
NORMALISED_COLUMNS = ("the normalisation ran over the batch axis: normalise each row (one "
                      "embedding), dim=-1")
TEMP_MULTIPLIED = "the temperature multiplies the similarities: divide them by it"
ONE_DIRECTION = ("only one direction: average CE(logits, targets) and CE(logits.T, targets), "
                 "a picking its b and b picking its a")
DIRECTIONS_ADDED = "the two directions are added: average them, (CE(rows) + CE(columns)) / 2"
SUMMED = "the loss is summed over the batch: average each cross-entropy over the examples"
POSITIVE_LEFT_OUT = ("the positive is left out of the denominator: the softmax runs over the "
                     "whole row, positive included (cross_entropy with the diagonal targets)")
WITHIN_VIEW = ("rows of the same view are used as negatives too (SimCLR's NT-Xent): here the "
               "negatives are only the other view's rows, logits = a @ b.T / temperature")
WRONG_TARGETS = ("the targets are not the diagonal: row i's right answer is column i "
                 "(torch.arange(batch)), the other view of the same example")
LOSS_GRAD = ("the loss has the right value but not the right gradient: build it from z_a "
             "and z_b with differentiable operations only")

NCE_CASES = [  # (label, batch, dim, temperature, row-length spread, dtype, seed)
    ("batch 6, dim 4, temperature 0.5", 6, 4, 0.5, 1.0, torch.float64, 0),
    ("batch 8, dim 5, temperature 0.1, rows of very different lengths", 8, 5, 0.1, 2.0,
     torch.float64, 1),
    ("batch 16, dim 32, temperature 0.07, float32", 16, 32, 0.07, 1.0, torch.float32, 2),
    ("batch 3, dim 2, temperature 1.0", 3, 2, 1.0, 0.5, torch.float64, 3),
]


def info_nce_truth(z_a: Tensor, z_b: Tensor, temperature: float, normalise: str = "rows",
                   temp: str = "divide", direction: str = "both", reduce: str = "mean",
                   positive: bool = True, within_view: bool = False, targets: str = "diagonal"
                   ) -> Tensor:
    """The symmetric InfoNCE loss in float64, or one mistake's (each switch one mistake)."""
    a, b = z_a.double(), z_b.double()
    if normalise != "none":
        dim = -1 if normalise == "rows" else 0
        a, b = F.normalize(a, dim=dim), F.normalize(b, dim=dim)
    scale = 1 / temperature if temp == "divide" else temperature
    n = len(a)
    eye = torch.eye(n, dtype=torch.bool)

    def one_way(x: Tensor, y: Tensor) -> Tensor:
        logits = x @ y.T * scale
        if within_view:  # NT-Xent: the same view's other rows join the negatives
            logits = torch.cat([logits, (x @ x.T * scale).masked_fill(eye, -math.inf)], 1)
        pos = logits[:, :n].diagonal()
        if targets == "argmax":
            pos = logits.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
        rest = logits if positive else logits.masked_fill(
            torch.cat([eye, torch.zeros(n, logits.shape[1] - n, dtype=torch.bool)], 1),
            -math.inf)
        per = rest.logsumexp(1) - pos
        return per.mean() if reduce == "mean" else per.sum()

    rows, cols = one_way(a, b), one_way(b, a)
    return {"both": (rows + cols) / 2, "rows": rows, "cols": cols, "added": rows + cols
            }[direction]


def _nce_inputs(batch: int, dim: int, spread: float, dtype: torch.dtype, seed: int
                ) -> tuple[Tensor, Tensor]:
    """Two views [batch, dim]: b is a noisy copy of a, rows scaled by random lengths."""
    a = randn(batch, dim, seed=seed, dtype=torch.float64)
    b = a + 0.7 * randn(batch, dim, seed=seed + 50, dtype=torch.float64)
    lengths = (spread * randn(2, batch, 1, seed=seed + 90, dtype=torch.float64)).exp()
    return (a * lengths[0]).to(dtype), (b * lengths[1]).to(dtype)


def _nce_mistakes(a: Tensor, b: Tensor, t: float) -> list[tuple[str, Callable[[], Tensor]]]:
    changes = [(NOT_NORMALISED, {"normalise": "none"}),
               (NORMALISED_COLUMNS, {"normalise": "columns"}),
               (TEMP_MULTIPLIED, {"temp": "multiply"}), (ONE_DIRECTION, {"direction": "rows"}),
               (ONE_DIRECTION, {"direction": "cols"}), (DIRECTIONS_ADDED, {"direction": "added"}),
               (SUMMED, {"reduce": "sum"}), (POSITIVE_LEFT_OUT, {"positive": False}),
               (WITHIN_VIEW, {"within_view": True}), (WRONG_TARGETS, {"targets": "argmax"})]
    return [(m, lambda kw=kw: info_nce_truth(a, b, t, **kw)) for m, kw in changes]


def check_info_nce_loss(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, batch, dim, t, spread, dtype, seed = spec
        a0, b0 = _nce_inputs(batch, dim, spread, dtype, seed)
        a, b = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        loss = tensor_answer(call(fn, a, b, t), "the loss info_nce_loss returned")
        truth_a, truth_b = a0.double().requires_grad_(True), b0.double().requires_grad_(True)
        truth = info_nce_truth(truth_a, truth_b, t)
        atol = 1e-9 if dtype == torch.float64 else float32_atol(
            truth, info_nce_truth(a0, b0, t).float(), floor=1e-5)
        compare(loss, truth.detach(), case, _nce_mistakes(a0, b0, t), what="the loss",
                atol=atol, rtol=1e-6)
        want = torch.autograd.grad(truth, [truth_a, truth_b])
        for (name, got), right in zip(gradients(loss, {"z_a": a, "z_b": b}).items(), want):
            got = torch.zeros_like(right) if got is None else got
            if not close(got, right, atol=10 * atol, rtol=1e-4):
                raise Mismatch(LOSS_GRAD, [f"case: {case}", f"d loss / d {name} differs"])
        return f"{case}: {truth.item():.5f}"
    return run_check("info_nce_loss", lambda: run_cases(NCE_CASES, one_case))


# -- nearest_neighbour_classify ---------------------------------------------------------------

EUCLIDEAN = ("neighbours by Euclidean distance: rank the training rows by cosine similarity "
             "(normalise both sides, then the dot product)")
DOT = ("neighbours by the raw dot product: normalise both sides first, so that a row's length "
       "does not decide (cosine similarity)")
FARTHEST = ("these are the *least* similar rows: take the k largest similarities (topk, or "
            "argmin of a distance, not of a similarity)")
K_IGNORED = "k is ignored: vote among the k most similar rows, not only the nearest one"
K_OFF = "the vote is over the wrong number of neighbours: exactly k, the query's own k nearest"
INDEX_NOT_LABEL = ("this is the index of the nearest training row: return its label, "
                   "train_y[index]")
TIES_LARGEST = ("ties between labels went to the largest: where several labels share the most "
                "votes, return the smallest (argmax of the vote counts returns the first)")
TIES_NEAREST = ("ties between labels went to the nearest neighbour's label: the rule here is "
                "the smallest of the tied labels")

KNN_CASES = [  # (label, n_train, n_test, dim, n_labels, k, seed)
    ("k=1, 40 training rows, 4 labels", 40, 25, 6, 4, 1, 0),
    ("k=3, 60 training rows, 5 labels", 60, 30, 8, 5, 3, 1),
    ("k=4 (ties between labels), 50 training rows, 3 labels", 50, 40, 5, 3, 4, 2),
    ("k=2 (ties between labels), 30 training rows, 6 labels", 30, 30, 4, 6, 2, 3),
]


def knn_truth(train_z: Tensor, train_y: Tensor, test_z: Tensor, k: int, score: str = "cosine",
              largest: bool = True, ties: str = "smallest", index: bool = False) -> Tensor:
    """[n_test] int64: the reference labels in float64, or one mistake's."""
    a, b = test_z.double(), train_z.double()
    sims = {"cosine": lambda: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T,
            "dot": lambda: a @ b.T, "euclidean": lambda: -torch.cdist(a, b)}[score]()
    nearest = sims.topk(k, dim=-1, largest=largest).indices
    if index:
        return nearest[:, 0]
    labels = train_y[nearest]
    votes = F.one_hot(labels, int(train_y.max()) + 1).sum(1)
    if ties == "largest":
        return votes.shape[1] - 1 - votes.flip(1).argmax(1)
    if ties == "nearest":  # the first of the k, in order of similarity, with the most votes
        top = votes.max(1, keepdim=True).values
        first = (votes.gather(1, labels) == top).int().argmax(1)
        return labels.gather(1, first[:, None]).squeeze(1)
    return votes.argmax(1)


def _knn_inputs(spec: tuple) -> tuple[Tensor, Tensor, Tensor]:
    _, n_train, n_test, dim, n_labels, _, seed = spec
    train = randn(n_train, dim, seed=seed) * (1.5 * randn(n_train, 1, seed=seed + 7)).exp()
    test = randn(n_test, dim, seed=seed + 3) * (1.5 * randn(n_test, 1, seed=seed + 9)).exp()
    labels = torch.arange(n_train) % n_labels  # every label present
    labels = labels[torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))]
    return train, labels, test


def check_nearest_neighbour_classify(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, k = spec[0], spec[5]
        train, labels, test = _knn_inputs(spec)
        want = knn_truth(train, labels, test, k)
        args = (train, labels, test)
        changes = [(EUCLIDEAN, {"score": "euclidean"}), (DOT, {"score": "dot"}),
                   (FARTHEST, {"largest": False}), (TIES_LARGEST, {"ties": "largest"}),
                   (TIES_NEAREST, {"ties": "nearest"})]
        mistakes = [(m, lambda kw=kw: knn_truth(*args, k, **kw)) for m, kw in changes]
        mistakes += [(K_IGNORED, lambda: knn_truth(*args, 1)) if k > 1 else
                     (INDEX_NOT_LABEL, lambda: knn_truth(*args, 1, index=True))]
        mistakes += [(K_OFF, lambda: knn_truth(*args, k + 1)),
                     (K_OFF, lambda: knn_truth(*args, k - 1)) if k > 2 else
                     (K_OFF, lambda: knn_truth(*args, k + 2))]
        got = call(fn, train.clone(), labels.clone(), test.clone(), k)
        compare(got, want, case, mistakes, what="the predicted labels", atol=0, rtol=0,
                axes=("test row",))
        return case
    return run_check("nearest_neighbour_classify", lambda: run_cases(KNN_CASES, one_case))


# -- train_contrastive ------------------------------------------------------------------------

LOOP_ARGS = {"steps": 120, "batch_size": 128, "lr": 3e-3, "temperature": 0.2, "seed": 0}
REPLAYED_STEPS = 8
LOSS_RTOL = 1e-3
LOOP_BUDGET_S = 30.0
# 1-nearest-neighbour accuracy of held-out glyphs: chance is 0.1, the untrained encoder
# about 0.9 (glyphs are easy), the reference 0.97 to 0.99 over seeds.
ACCURACY_FLOOR = 0.95


def tiny_encoder(seed: int = 0) -> torch.nn.Module:
    """The check's encoder, [batch, 64] -> [batch, 16], its weights fixed by ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 16))


def contrastive_replay(images: Tensor, steps: int, batch_size: int, lr: float,
                       temperature: float, seed: int, optimizer: str = "adamw",
                       fresh_optimizer: bool = False, same_rows: bool = False,
                       views: str = "two") -> list[float]:
    """The reference loop's first ``steps`` losses on a fresh tiny encoder, or those of one
    mistake (``views``: two draws, one draw used twice, or the images unaugmented)."""
    encoder = tiny_encoder()
    kinds = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

    def make() -> torch.optim.Optimizer:
        return kinds[optimizer](encoder.parameters(), lr=lr)

    opt, g = make(), torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(images), (batch_size,), generator=g)
    losses = []
    for step in range(steps):
        if fresh_optimizer:
            opt = make()
        if step and not same_rows:
            rows = torch.randint(0, len(images), (batch_size,), generator=g)
        batch = images[rows]
        a = batch if views == "none" else augment(batch, g)
        b = {"two": lambda: augment(batch, g), "one": lambda: a, "none": lambda: batch}[views]()
        loss = info_nce_truth(encoder(a), encoder(b), temperature).float()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _as_losses(raw: Any, steps: int) -> list[float]:
    if raw is None:
        raise Mismatch("train_contrastive returned None; return the list of training losses")
    if not isinstance(raw, (list, tuple)):
        raise Mismatch(f"train_contrastive returned a {type(raw).__name__}: return a list of "
                       "floats, one loss per step")
    if len(raw) != steps:
        raise Mismatch(f"returned {len(raw)} losses for {steps} steps: return one per step")
    if any(isinstance(x, Tensor) for x in raw):
        raise Mismatch("the losses are tensors: return floats (loss.item()); a list of tensors "
                       "also keeps every step's graph alive")
    if not all(isinstance(x, (float, int)) and not isinstance(x, bool) for x in raw):
        raise Mismatch("return the losses as a list of floats")
    return [float(x) for x in raw]


def _same(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=LOSS_RTOL) for x, y in zip(a, b))


LOOP_MISTAKES = {
    "a new optimizer every step restarts AdamW's moments: make one before the loop":
        {"fresh_optimizer": True},
    "the same rows every step: draw new rows from the one generator at each step":
        {"same_rows": True},
    "the lr argument is ignored: pass lr=lr to AdamW": {"lr": 1e-3},
    "not AdamW: use torch.optim.AdamW(encoder.parameters(), lr=lr)": {"optimizer": "sgd"},
    "both views are one augmented draw: call augment twice, so the two views differ":
        {"views": "one"},
    "the views are not augmented: each is augment(images[rows], g), drawn separately":
        {"views": "none"},
    "the temperature argument is ignored: pass it to info_nce_loss": {"temperature": 0.1},
}


def _replay_mismatch(got: list[float], images: Tensor) -> Mismatch | None:
    """None if the first losses are the replay's; else the mistake they reproduce."""
    k, args = REPLAYED_STEPS, LOOP_ARGS
    want = contrastive_replay(images, **{**args, "steps": k})
    if _same(got[:k], want):
        return None
    shown = (f"your first losses {[round(x, 4) for x in got[:3]]}, the replay's "
             f"{[round(x, 4) for x in want[:3]]}")
    for message, change in LOOP_MISTAKES.items():
        if _same(got[:k], contrastive_replay(images, **{**args, "steps": k, **change})):
            return Mismatch(message, [shown])
    if not math.isclose(got[0], want[0], rel_tol=LOSS_RTOL):
        return Mismatch("the first loss differs from the replay's: make g = torch.Generator()"
                        ".manual_seed(seed) before the loop, then each step draw the rows, "
                        "then view_a, then view_b, all from g", [shown])
    step = next(i for i, (x, y) in enumerate(zip(got, want))
                if not math.isclose(x, y, rel_tol=LOSS_RTOL))
    return Mismatch(f"the loss at step {step} differs from the replay's ({got[step]:.4f} vs "
                    f"{want[step]:.4f}): one AdamW and one generator, both made before the "
                    "loop, and a zero_grad, backward and step each step", [shown])


def embedding_accuracy(encoder: torch.nn.Module, x_train: Tensor, y_train: Tensor,
                       x_test: Tensor, y_test: Tensor) -> float:
    """1-nearest-neighbour accuracy (cosine) of the held-out images in the encoder's space."""
    with torch.no_grad():
        pred = knn_truth(encoder(x_train), y_train, encoder(x_test), 1)
    return (pred == y_test).float().mean().item()


def check_train_contrastive(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        x_tr, y_tr, x_te, y_te = glyph_split(seed=0)
        encoder, args = tiny_encoder(), LOOP_ARGS
        start = time.perf_counter()
        raw = call(fn, encoder, x_tr.clone(), args["steps"], args["batch_size"], args["lr"],
                   args["temperature"], args["seed"])
        took = time.perf_counter() - start
        losses = _as_losses(raw, args["steps"])
        if took > LOOP_BUDGET_S:
            raise Mismatch(f"{args['steps']} steps took {took:.0f}s (budget "
                           f"{LOOP_BUDGET_S:.0f}s)")
        if all(torch.equal(p, q) for p, q in zip(encoder.parameters(),
                                                 tiny_encoder().parameters())):
            raise Mismatch("the encoder you were given did not change: train it in place "
                           "(its own parameters in the optimizer, not a copy's)")
        mismatch = _replay_mismatch(losses, x_tr)
        if mismatch:
            raise mismatch
        accuracy = embedding_accuracy(encoder, x_tr, y_tr, x_te, y_te)
        if accuracy < ACCURACY_FLOOR:
            raise Mismatch(f"held-out nearest-neighbour accuracy {accuracy:.1%} is below the "
                           f"{ACCURACY_FLOOR:.0%} floor after {args['steps']} steps (the "
                           "untrained encoder gets about 90%): is the loss going down?")
        return [f"the first {REPLAYED_STEPS} losses match the replay",
                f"held-out 1-NN accuracy of the embedding {accuracy:.1%} in {took:.1f}s"]
    return run_check("train_contrastive", body)
