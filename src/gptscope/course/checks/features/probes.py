"""Checks for lesson 10: linear_probe, probe_selectivity, mean_difference_direction.

A probe's accuracy comes from training, so it is judged against what the lesson's reference
probe reaches on the same data and seed (the margins are measured in
``tests/course/test_course_depth_features.py``); what can be checked exactly is: that it
is a share of the test set (a share of the training set says where it was measured), and
that the same seed gives the same number. ``probe_selectivity`` runs with a recording
probe, so its control labels are checked label by label and its arithmetic exactly.
"""

# The variant lambdas are called by compare() in the same case that makes them, so the
# late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.course.checks._answers import dict_answer, tensor_answer
from gptscope.course.checks._common import (
    Mismatch,
    Variants,
    call,
    compare,
    run_cases,
    run_check,
)
from gptscope.course.checks.features._shared import compare_number, number_answer
from gptscope.course.result import CheckResult
from gptscope.course.solutions.lesson10_probes import linear_probe

# -- lesson 10: linear_probe ------------------------------------------------------------------

def planted_probe_data(n: int, d: int, seed: int, signal: bool = True
                       ) -> tuple[Tensor, Tensor]:
    """x [n, d] Gaussian; y [n] the sign of a fixed direction plus noise (or random labels)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    direction = torch.randn(d, generator=torch.Generator().manual_seed(99))
    if signal:
        y = ((x @ direction + 0.3 * torch.randn(n, generator=g)) > 0).long()
    else:
        y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def offset_probe_data(n: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    """A concept whose boundary misses the data's mean: about 12% of the examples are on
    the far side of x . u = 1.2. A probe without a bias must cut through the mean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    u = F.normalize(torch.randn(d, generator=torch.Generator().manual_seed(98)), dim=0)
    return x, ((x @ u + 0.1 * torch.randn(n, generator=g)) > 1.2).long()


def three_class_probe_data(n: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    """Three classes, each the argmax of a fixed linear score plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    scores = x @ torch.randn(d, 3, generator=torch.Generator().manual_seed(97))
    return x, (scores + 0.3 * torch.randn(n, 3, generator=g)).argmax(-1)


@dataclass
class ProbeCase:
    label: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    def args(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.train_x.clone(), self.train_y.clone(), self.test_x.clone(),
                self.test_y.clone())


def _split(label: str, x: Tensor, y: Tensor, n_train: int) -> ProbeCase:
    return ProbeCase(label, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@functools.lru_cache(maxsize=1)
def probe_cases() -> dict[str, ProbeCase]:
    three = _split("three classes, 12 dimensions", *three_class_probe_data(600, 12, 2), 400)
    only_2 = three.test_y == 2
    return {
        "binary": _split("a planted binary concept, 16 dimensions",
                         *planted_probe_data(600, 16, seed=0), 400),
        "random": _split("random labels, 64 dimensions and 40 training examples",
                         *planted_probe_data(140, 64, seed=1, signal=False), 40),
        "offset": _split("a concept whose boundary misses the mean (12% positive)",
                         *offset_probe_data(500, 8, seed=3), 300),
        "three": three,
        "class 2": ProbeCase("three classes, tested on class-2 examples only", three.train_x,
                             three.train_y, three.test_x[only_2], three.test_y[only_2]),
    }


def probe_without_bias(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor
                       ) -> float:
    """The reference probe with its bias left out: the mistake the offset case catches."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    W = torch.zeros(xs.shape[1], int(max(train_y.max(), test_y.max())) + 1, requires_grad=True)
    opt = torch.optim.Adam([W], lr=0.05, weight_decay=1e-3)
    for _ in range(200):
        loss = F.cross_entropy(xs @ W, train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((xt @ W).argmax(-1) == test_y).float().mean().item()


@functools.lru_cache(maxsize=1)
def probe_reference() -> dict[str, float]:
    """What the lesson's reference probe (and the no-bias mistake) reach on each case."""
    with torch.enable_grad():
        found = {name: linear_probe(*c.args()) for name, c in probe_cases().items()}
        random = probe_cases()["random"]
        found["random, on its training set"] = linear_probe(
            random.train_x, random.train_y, random.train_x, random.train_y)
        found["offset, without a bias"] = probe_without_bias(*probe_cases()["offset"].args())
    return found


PROBE_PERCENT = ("you returned a percentage: return the accuracy as a fraction in [0, 1] "
                 "(0.9, not 90)")
PROBE_NOT_SHARE = ("is not a share of the test examples (k / n_test): return the accuracy, "
                   "(predictions == test_y).float().mean(), not a loss or a probability")
PROBE_BACKWARDS = ("your probe does worse than guessing on a balanced two-class concept: it "
                   "learned it backwards. Minimise the cross-entropy (is the loss's sign "
                   "flipped, or the gradient added?) and predict with argmax")
PROBE_MAJORITY = ("no better than always predicting the majority class: is the probe trained "
                  "(loss.backward(), optimizer.step(), more than a few steps)?")
PROBE_TRAIN_DATA = ("you measured accuracy on training data (examples the probe was trained "
                    "on): train on train_x only and report accuracy on the held-out test set")
PROBE_SEED = ("two calls with the same seed gave different accuracies: seed everything "
              "random in the probe (torch.manual_seed(seed) before initialising it)")
PROBE_NO_BIAS = ("your probe misses a concept whose boundary does not pass through the "
                 "data's mean, as a probe without a bias does: add b [n_classes] to the logits "
                 "(x @ W + b)")
PROBE_ONE_LOGIT = ("your probe never predicts class 2 of three: it needs one logit per class, "
                   "W [d, n_classes] with n_classes = 1 + the largest label, trained with "
                   "cross-entropy and read with argmax (a single sigmoid logit gives two classes)")
PROBE_WEAK = "held-out accuracy well below what a logistic probe reaches on this data"


def _probe_accuracy(fn: Callable[..., Any], case: ProbeCase, **kwargs: Any) -> float:
    acc = number_answer(call(fn, *case.args(), **kwargs), "linear_probe's result")
    n = len(case.test_y)
    details = [f"case: {case.label}, {n} test examples"]
    if 0 <= acc <= 1 and abs(acc * n - round(acc * n)) < 1e-3:
        return acc
    if 1 < acc <= 100 and abs(acc / 100 * n - round(acc / 100 * n)) < 1e-3:
        raise Mismatch(PROBE_PERCENT, details)
    n_train = len(case.train_y)
    if 0 <= acc <= 1 and abs(acc * n_train - round(acc * n_train)) < 1e-3:
        raise Mismatch(f"{acc:.4g} is a share of the {n_train} training examples, not of the "
                       f"{n} test examples: {PROBE_TRAIN_DATA}", details)
    raise Mismatch(f"linear_probe returned {acc:.4g}, which {PROBE_NOT_SHARE}", details)


def _weak(acc: float, want: float, case: ProbeCase, hint: str) -> Mismatch:
    return Mismatch(f"{case.label}: {PROBE_WEAK} ({acc:.2f}, the reference reaches "
                    f"{want:.2f}): {hint}", [f"case: {case.label}"])


# A right answer trained differently lands within a few points of the reference; every
# named mistake lands far below (the margins are measured in the depth tests).
PROBE_SLACK = 0.08


def check_linear_probe(fn: Callable[..., Any]) -> CheckResult:
    def body() -> list[str]:
        cases, ref = probe_cases(), probe_reference()
        binary = cases["binary"]
        acc = _probe_accuracy(fn, binary)
        share = binary.test_y.float().mean().item()
        majority = max(share, 1 - share)
        if acc < 0.4:
            raise Mismatch(PROBE_BACKWARDS, [f"case: {binary.label}, accuracy {acc:.2f}"])
        if acc <= majority + 0.02:
            raise Mismatch(f"accuracy {acc:.2f} is {PROBE_MAJORITY}",
                           [f"case: {binary.label}, majority class {majority:.2f}"])
        if acc < ref["binary"] - PROBE_SLACK:
            raise _weak(acc, ref["binary"], binary, "train longer (steps), check the "
                        "learning rate, or standardise the inputs")
        random = cases["random"]
        control = _probe_accuracy(fn, random)
        if control > 0.75 and ref["random, on its training set"] > 0.9:
            raise Mismatch(f"the probe scores {control:.2f} on random labels: "
                           f"{PROBE_TRAIN_DATA}", [f"case: {random.label}"])
        if _probe_accuracy(fn, random) != control:
            raise Mismatch(PROBE_SEED, [f"case: {random.label}, seed=0 twice"])
        offset = cases["offset"]
        shifted = _probe_accuracy(fn, offset)
        if shifted < ref["offset"] - PROBE_SLACK:
            if abs(shifted - ref["offset, without a bias"]) <= 0.07:
                raise Mismatch(PROBE_NO_BIAS, [f"case: {offset.label}, accuracy "
                                               f"{shifted:.2f}"])
            raise _weak(shifted, ref["offset"], offset, "train longer or check the bias")
        if _probe_accuracy(fn, cases["class 2"]) < 0.2:
            raise Mismatch(PROBE_ONE_LOGIT, [f"case: {cases['class 2'].label}"])
        three = _probe_accuracy(fn, cases["three"])
        if three < ref["three"] - PROBE_SLACK:
            raise _weak(three, ref["three"], cases["three"], "a probe needs one logit per "
                        "class (W [d, n_classes]), cross-entropy on class ids, and argmax")
        return [f"{binary.label}: test accuracy {acc:.2f} (reference {ref['binary']:.2f})",
                f"{random.label} (control): {control:.2f}, the same again with the same seed",
                f"{offset.label}: {shifted:.2f} (reference {ref['offset']:.2f})",
                f"{cases['three'].label}: {three:.2f} (reference {ref['three']:.2f})"]
    return run_check("linear_probe", body)


# -- lesson 10: probe_selectivity -------------------------------------------------------------

@dataclass
class SelectivityCase:
    label: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    train_types: Tensor
    test_types: Tensor

    def args(self) -> tuple[Tensor, ...]:
        return tuple(t.clone() for t in (self.train_x, self.train_y, self.test_x, self.test_y,
                                          self.train_types, self.test_types))


LABEL_SHARES = torch.tensor([0.6, 0.3, 0.1])


def selectivity_case(label: str, seed: int, labels_follow_type: bool) -> SelectivityCase:
    """160 token types with ids far from 0..n: 150 occur three times in the training set and
    once in the test set, 10 only in the training set. Labels take three classes in shares
    0.6 / 0.3 / 0.1, per example, or one per type (as a part of speech would)."""
    g = torch.Generator().manual_seed(seed)
    type_ids = 1000 + 7 * torch.randperm(160, generator=g)
    train_types = type_ids.repeat(3)[torch.randperm(480, generator=g)]
    test_types = type_ids[:150][torch.randperm(150, generator=g)]
    if labels_follow_type:
        label_of = dict(zip(type_ids.tolist(), torch.multinomial(
            LABEL_SHARES, 160, replacement=True, generator=g).tolist()))
        train_y = torch.tensor([label_of[t] for t in train_types.tolist()])
        test_y = torch.tensor([label_of[t] for t in test_types.tolist()])
    else:
        train_y = torch.multinomial(LABEL_SHARES, 480, replacement=True, generator=g)
        test_y = torch.multinomial(LABEL_SHARES, 150, replacement=True, generator=g)
    return SelectivityCase(label, torch.randn(480, 4, generator=g), train_y,
                           torch.randn(150, 4, generator=g), test_y, train_types, test_types)


@dataclass
class ProbeCall:
    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any


class RecordingProbe:
    """Stands in for ``linear_probe``: records what it is trained on, and scores the real
    labels REAL and anything else CONTROL, so the result says which call was which."""

    REAL, CONTROL = 0.875, 0.625

    def __init__(self, case: SelectivityCase) -> None:
        self.case = case
        self.calls: list[ProbeCall] = []

    def __call__(self, train_x: Any, train_y: Any, test_x: Any, test_y: Any,
                 steps: int = 200, seed: int = 0) -> float:
        for what, value in (("train labels", train_y), ("test labels", test_y)):
            if not isinstance(value, Tensor):
                raise Mismatch(f"probe was given {what} that are a {type(value).__name__}, "
                               "not a tensor: pass int64 tensors of class ids")
        self.calls.append(ProbeCall(train_x, train_y, test_x, test_y))
        return self.REAL if self.is_real(self.calls[-1]) else self.CONTROL

    def is_real(self, c: ProbeCall) -> bool:
        return _same(c.train_y, self.case.train_y) and _same(c.test_y, self.case.test_y)


def _same(a: Any, b: Tensor) -> bool:
    return isinstance(a, Tensor) and a.shape == b.shape and bool((a.detach().cpu() == b).all())


SEL_NO_CALL = ("probe_selectivity never called probe: train with the probe you are given (the "
               "`probe` argument), not linear_probe by name")
SEL_CALLS = "call probe twice, once on the real labels and once on the control labels"
SEL_NO_REAL = "no probe call used the real labels (train_y, test_y) for the real task"
SEL_BOTH_REAL = ("the control labels equal the real ones: give each type the label of a "
                 "randomly picked example, not a label from that type's own examples")
SEL_TRAIN_EVAL = ("probe was given the training set as its test set: pass (train_x, labels, "
                  "test_x, labels), so accuracy is measured on held-out examples")
SEL_INPUTS = ("probe's arguments are (train_x, train labels, test_x, test labels), in that "
              "order, with the activations you were given")
SEL_CONTROL_DTYPE = "the control labels must be int64 class ids, like train_y"
SEL_CONTROL_SHAPE = "the control labels must have one label per example"
SEL_CONTROL_VALUES = ("the control labels contain a value that is none of the real classes: "
                      "give each type the label of a randomly picked example")
SEL_PER_EXAMPLE = ("examples of one type got different control labels: the control task "
                   "gives each *type* one label (labels shuffled per example are no control "
                   "task: no probe can learn them, so any probe would look selective)")
SEL_SPLIT = ("a type's control label in the test set differs from its label in the training "
             "set: draw one label per type for both sets together, so a probe that memorised "
             "the type can use it at test time")
SEL_UNIFORM = ("each type's control label was drawn uniformly over the classes; take the label "
               "of a randomly picked example, so control labels keep the real labels' shares")
SEL_SHARES = ("the control labels' shares over the types are far from the real labels' shares: "
              "give each type the label of a randomly picked example")
SEL_SEED_RANDOM = ("two calls with seed=0 drew different control labels: draw them with "
                   "torch.Generator().manual_seed(seed)")
SEL_SEED_IGNORED = "seed=0 and seed=1 drew the same control labels: use the seed you are given"
SEL_SIGN = "selectivity is accuracy - control_accuracy; yours is the reverse"
SEL_SWAPPED = ("accuracy and control_accuracy are swapped: accuracy is the probe's score on the "
               "real labels")
SEL_RATIO = "selectivity is the difference accuracy - control_accuracy, not their ratio"


def _calls(recorder: RecordingProbe, case: SelectivityCase) -> tuple[ProbeCall, ProbeCall]:
    """(the real-label call, the control call), once the calls are as the contract says."""
    calls = recorder.calls
    details = [f"case: {case.label}"]
    if not calls:
        raise Mismatch(SEL_NO_CALL, details)
    for c in calls:
        if _same(c.test_x, case.train_x):
            raise Mismatch(SEL_TRAIN_EVAL, details)
        if not (_same(c.train_x, case.train_x) and _same(c.test_x, case.test_x)):
            raise Mismatch(SEL_INPUTS, details)
    real = [c for c in calls if recorder.is_real(c)]
    if len(calls) == 2 and len(real) == 2:
        raise Mismatch(SEL_BOTH_REAL, details)
    if len(calls) != 2:
        times = "once" if len(calls) == 1 else f"{len(calls)} times"
        raise Mismatch(f"{SEL_CALLS}; you called it {times}", details)
    if not real:
        raise Mismatch(SEL_NO_REAL, details)
    return real[0], next(c for c in calls if c is not real[0])


def _control_labels(control: ProbeCall, case: SelectivityCase) -> Tensor:
    """The control labels of train and test, concatenated, once each is int64 [n]."""
    details = [f"case: {case.label}"]
    for got, want in ((control.train_y, case.train_y), (control.test_y, case.test_y)):
        if got.shape != want.shape:
            raise Mismatch(f"{SEL_CONTROL_SHAPE}: got shape {list(got.shape)}, expected "
                           f"{list(want.shape)}", details)
        if got.dtype != torch.int64:
            raise Mismatch(f"{SEL_CONTROL_DTYPE}; they are {got.dtype}", details)
    labels = torch.cat([control.train_y.detach().cpu(), control.test_y.detach().cpu()])
    if not torch.isin(labels, torch.cat([case.train_y, case.test_y])).all():
        raise Mismatch(SEL_CONTROL_VALUES, details)
    return labels


def _one_label_per_type(labels: Tensor, case: SelectivityCase) -> Tensor:
    """Each type's control label [n_types], once each type has a single one."""
    n_train = len(case.train_y)
    details = [f"case: {case.label}"]
    for part, types in ((labels[:n_train], case.train_types), (labels[n_train:],
                                                               case.test_types)):
        _, index = types.unique(return_inverse=True)
        lowest = torch.full((int(index.max()) + 1,), 99).scatter_reduce(0, index, part, "amin")
        if (lowest[index] != part).any():
            raise Mismatch(SEL_PER_EXAMPLE, details)
    types = torch.cat([case.train_types, case.test_types])
    distinct, index = types.unique(return_inverse=True)
    per_type = torch.zeros(len(distinct), dtype=torch.long).scatter(0, index, labels)
    if (per_type[index] != labels).any():
        raise Mismatch(SEL_SPLIT, details)
    return per_type


def _check_shares(per_type: Tensor, case: SelectivityCase) -> None:
    real = torch.cat([case.train_y, case.test_y])
    classes = real.unique()
    want = torch.stack([(real == c).float().mean() for c in classes])
    got = torch.stack([(per_type == c).float().mean() for c in classes])
    off = 0.5 * (got - want).abs().sum().item()
    if off > 0.15:
        uniform = 0.5 * (got - 1 / len(classes)).abs().sum().item()
        shares = ", ".join(f"{v:.2f}" for v in got.tolist())
        message = SEL_UNIFORM if uniform < off / 2 else SEL_SHARES
        raise Mismatch(message, [f"case: {case.label}", f"shares of the classes over the "
                                 f"types: {shares}; the real labels' are "
                                 + ", ".join(f"{v:.2f}" for v in want.tolist())])


def _selectivity_result(found: Any, case: SelectivityCase) -> None:
    result = dict_answer(found, ("accuracy", "control_accuracy", "selectivity"),
                         "probe_selectivity")
    real, control = RecordingProbe.REAL, RecordingProbe.CONTROL
    got = {k: number_answer(result[k], f"probe_selectivity(...)[{k!r}]") for k in
           ("accuracy", "control_accuracy", "selectivity")}
    details = [f"case: {case.label}", f"the probe scored {real} on the real labels and "
               f"{control} on the control labels"]
    if got["accuracy"] == control and got["control_accuracy"] == real:
        raise Mismatch(SEL_SWAPPED, details)
    compare_number(got["accuracy"], real, case.label, {}, "accuracy")
    compare_number(got["control_accuracy"], control, case.label, {}, "control_accuracy")
    compare_number(got["selectivity"], real - control, case.label, {
        SEL_SIGN: lambda: torch.tensor(control - real, dtype=torch.float64),
        SEL_RATIO: lambda: torch.tensor(real / control, dtype=torch.float64),
    }, "selectivity")


def _selectivity_run(fn: Callable[..., Any], case: SelectivityCase, seed: int
                     ) -> tuple[Any, Tensor]:
    """The learner's result and control labels [n_train + n_test] for one seed."""
    recorder = RecordingProbe(case)
    found = call(fn, *case.args(), seed=seed, probe=recorder)
    return found, _control_labels(_calls(recorder, case)[1], case)


def check_probe_selectivity(fn: Callable[..., Any]) -> CheckResult:
    def one_case(case: SelectivityCase) -> str:
        found, labels = _selectivity_run(fn, case, seed=0)
        _check_shares(_one_label_per_type(labels, case), case)
        _selectivity_result(found, case)
        again = _selectivity_run(fn, case, seed=0)[1]
        if not torch.equal(again, labels):
            raise Mismatch(SEL_SEED_RANDOM, [f"case: {case.label}"])
        if torch.equal(_selectivity_run(fn, case, seed=1)[1], labels):
            raise Mismatch(SEL_SEED_IGNORED, [f"case: {case.label}"])
        return case.label

    cases = [selectivity_case("labels fixed by the token type (a part of speech, say), 160 "
                              "types", 11, True),
             selectivity_case("labels drawn per example, 160 token types", 10, False)]
    return run_check("probe_selectivity", lambda: run_cases(cases, one_case))


# -- lesson 10: mean_difference_direction -----------------------------------------------------

@dataclass
class MeanDiffCase:
    label: str
    acts: Tensor
    labels: Tensor


def mean_diff_cases() -> list[MeanDiffCase]:
    def case(label: str, n_pos: int, n_neg: int, d: int, seed: int, offset: float = 0.0,
             dtype: torch.dtype = torch.float32) -> MeanDiffCase:
        g = torch.Generator().manual_seed(seed)
        labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).long()
        labels = labels[torch.randperm(n_pos + n_neg, generator=g)]
        shift = torch.randn(d, generator=g, dtype=torch.float64)
        acts = torch.randn(n_pos + n_neg, d, generator=g, dtype=torch.float64)
        acts = acts + labels[:, None] * shift + offset
        return MeanDiffCase(label, acts.to(dtype), labels)

    return [
        case("8 and 8 examples, d=8", 8, 8, 8, 41),
        case("30 examples with the concept, 10 without, d=6", 30, 10, 6, 40),
        case("activations far from 0 (offset 20), 12 and 25 examples", 12, 25, 5, 42, 20.0),
        case("float64, 5 and 9 examples, d=16", 5, 9, 16, 43, dtype=torch.float64),
        case("one example of each class", 1, 1, 4, 44),
        case("d=1", 6, 3, 1, 45),
    ]


def _unit(v: Tensor) -> Tensor:
    return v / v.norm()


def _unit_or_none(v: Tensor | None) -> Tensor | None:
    """A mistake's direction, or None where it has none (its difference is 0 on this case,
    so float rounding alone decides what an answer making it returns)."""
    return None if v is None or v.norm() < 1e-9 * (1 + v.abs().max()) else _unit(v)


MD_SIGN = "the direction points the wrong way: mean(label 1) - mean(label 0), not the reverse"
MD_NOT_UNIT = "divide the difference of the means by its L2 norm, so the direction has norm 1"
MD_SUMS = ("you subtracted the classes' sums: take each class's mean (with unequal class sizes "
           "the bigger class's sum dominates)")
MD_INDEXED = ("you indexed acts with the labels themselves (acts[labels] picks rows 0 and 1 "
              "over and over); select the rows of a class with a bool mask, acts[labels == 1]")
MD_WRONG_AXIS = ("you averaged over the wrong axis: each class's mean is over its examples "
                 "(dim 0), giving a vector [d]")
MD_OTHER_NORM = ("divide by the L2 norm (diff.norm()), not by the sum of absolute values or "
                 "the largest entry")
MD_SQUARED_NORM = "divide by the norm itself, not by the squared norm"
MD_KEPT_DIM = "return a vector [d], not [1, d]: take the means with dim=0 and no keepdim"
MD_OVERALL = ("you subtracted the overall mean and did not normalise: mean(label 1) - "
              "mean(label 0), divided by its norm")


def mean_diff_variants(c: MeanDiffCase) -> Variants:
    acts, labels = c.acts.double(), c.labels
    pos, neg = acts[labels == 1], acts[labels == 0]
    diff = pos.mean(0) - neg.mean(0)
    across = pos.mean(-1) - neg.mean(-1) if len(pos) == len(neg) else None
    return [
        (MD_SIGN, lambda: -_unit(diff)),
        (MD_NOT_UNIT, lambda: diff),
        (MD_NOT_UNIT, lambda: -diff),
        (MD_SUMS, lambda: _unit_or_none(pos.sum(0) - neg.sum(0))),
        (MD_INDEXED, lambda: _unit_or_none(acts[labels].mean(0) - acts[1 - labels].mean(0))),
        (MD_WRONG_AXIS, lambda: _unit_or_none(across)),
        (MD_WRONG_AXIS, lambda: across),
        (MD_OTHER_NORM, lambda: diff / diff.abs().sum()),
        (MD_OTHER_NORM, lambda: diff / diff.abs().max()),
        (MD_SQUARED_NORM, lambda: diff / diff.pow(2).sum()),
        (MD_KEPT_DIM, lambda: _unit(diff)[None]),
        (MD_OVERALL, lambda: pos.mean(0) - acts.mean(0)),
    ]


def check_mean_difference_direction(fn: Callable[..., Any]) -> CheckResult:
    def one_case(c: MeanDiffCase) -> str:
        got = tensor_answer(call(fn, c.acts.clone(), c.labels.clone()),
                            "mean_difference_direction's result")
        pos, neg = c.acts.double()[c.labels == 1], c.acts.double()[c.labels == 0]
        compare(got, _unit(pos.mean(0) - neg.mean(0)), c.label, mean_diff_variants(c),
                "the direction", atol=1e-5, axes=("d",))
        return c.label

    return run_check("mean_difference_direction",
                     lambda: run_cases(mean_diff_cases(), one_case))
