"""Ground truth, splits and metrics of the synthetic tasks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gptscope.data import (
    TASKS,
    AdditionTask,
    BracketsTask,
    InductionTask,
    ModularAdditionTask,
    make_task,
    masked_targets,
    score,
)

ALL = sorted(TASKS)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def oracle(vocab: int):
    """A model that knows every next token: one-hot logits of tokens[:, t + 1] at t."""

    def model_fn(tokens: torch.Tensor) -> torch.Tensor:
        nxt = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
        return F.one_hot(nxt, vocab).float() * 20

    return model_fn


def random_model(vocab: int, seed: int = 1):
    g = gen(seed)

    def model_fn(tokens: torch.Tensor) -> torch.Tensor:
        return torch.randn(*tokens.shape, vocab, generator=g)

    return model_fn


def test_registry_names() -> None:
    assert set(TASKS) == {
        "copy", "reverse", "sort", "addition", "modular_addition", "induction", "brackets",
        "zipf_lookup",
    }


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known tasks:.*modular_addition"):
        make_task("nope")


def test_unknown_parameter_is_value_error() -> None:
    with pytest.raises(ValueError, match="no parameter.*bogus.*takes"):
        make_task("copy", bogus=3)


@pytest.mark.parametrize(
    "name, kwargs, msg",
    [
        ("modular_addition", {"p": 1}, "p must be"),
        ("modular_addition", {"train_fraction": 0.0}, "train_fraction"),
        ("modular_addition", {"p": 2, "train_fraction": 0.1}, "empty split"),
        ("copy", {"n_items": 0}, "n_items"),
        ("copy", {"n_items": 20, "n_ctx": 16}, "n_ctx"),
        ("brackets", {"length": 7}, "even"),
        ("induction", {"half_len": 20, "n_symbols": 10}, "n_symbols"),
        ("addition", {"n_digits": 0}, "n_digits"),
        ("sort", {"test_every": 1}, "test_every"),
        ("zipf_lookup", {"exponent": 1.0}, "exponent must be > 1"),
        ("zipf_lookup", {"n_facts": 0}, "n_facts >= 1"),
    ],
)
def test_bad_parameters(name: str, kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        make_task(name, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_mask_convention(name: str) -> None:
    task = make_task(name)
    tokens, mask = task.batch(32, "train", gen())
    assert tokens.shape == mask.shape == (32, task.seq_len)
    assert tokens.dtype == torch.long and mask.dtype == torch.bool
    assert 0 <= int(tokens.min()) and int(tokens.max()) < task.vocab_size
    assert not mask[:, -1].any()
    # mask[b, t] scores the prediction of token t + 1: exactly the answer positions shifted left.
    expected = torch.zeros(task.seq_len, dtype=torch.bool)
    if name == "zipf_lookup":  # one value per fact, k1 k2 v: scored at each k2
        expected[1::3] = True
    else:
        answer = task.answer_slice()
        expected[answer.start - 1 : answer.stop - 1] = True
    assert torch.equal(mask, expected.expand_as(mask))
    assert masked_targets(tokens, mask).shape == (int(mask.sum()),)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("split", ["train", "test"])
def test_deterministic_given_seed(name: str, split: str) -> None:
    task = make_task(name)
    a = task.batch(16, split, gen(5))
    b = task.batch(16, split, gen(5))
    c = task.batch(16, split, gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    "name, kwargs, space",
    [
        ("copy", {"n_items": 3, "n_symbols": 4}, 4**3),
        ("reverse", {"n_items": 3, "n_symbols": 4}, 4**3),
        ("sort", {"n_items": 3, "n_symbols": 4}, 4**3),
        ("addition", {"n_digits": 1}, 10 * 10),
        ("induction", {"half_len": 2, "n_symbols": 5}, 5 * 4),
        ("brackets", {"length": 8}, None),
    ],
)
def test_train_and_test_are_disjoint_and_cover(name: str, kwargs: dict, space: int | None) -> None:
    # Small example spaces, sampled densely: both splits are non-empty and never overlap, and
    # together they hold every possible example.
    task = make_task(name, test_every=4, **kwargs)
    train = {tuple(r) for r in task.batch(3000, "train", gen(1))[0].tolist()}
    test = {tuple(r) for r in task.batch(1000, "test", gen(2))[0].tolist()}
    assert train and test
    assert not train & test
    if space is not None:
        assert len(train | test) == space


def test_reverse_copy_sort_answers() -> None:
    for name, check in [
        ("copy", lambda x, y: torch.equal(x, y)),
        ("reverse", lambda x, y: torch.equal(x.flip(1), y)),
        ("sort", lambda x, y: torch.equal(x.sort(1).values, y)),
    ]:
        task = make_task(name, n_items=6, n_symbols=9)
        tokens, _ = task.batch(200, "train", gen())
        x, sep, y = tokens[:, :6], tokens[:, 6], tokens[:, 7:]
        assert (sep == 9).all()
        assert check(x, y), name
    sort = make_task("sort")
    y = sort.batch(100, "test", gen())[0][:, sort.answer_slice()]
    assert (y[:, 1:] >= y[:, :-1]).all()


def test_describe() -> None:
    task = make_task("reverse", n_items=3)
    assert task.describe(torch.tensor([3, 1, 4, 10, 4, 1, 3])) == "3 1 4 > 4 1 3"
    add = AdditionTask(n_digits=2)
    assert add.describe(torch.tensor([4, 7, 10, 3, 5, 11, 2, 8, 0])) == "4 7 + 3 5 = 2 8 0"
    br = BracketsTask(length=2)
    assert br.describe(torch.tensor([0, 1, 2, 3])) == "( ) = yes"


def _number(digits: list[int]) -> int:
    return int("".join(map(str, digits)))


@pytest.mark.parametrize("reverse_answer", [True, False])
def test_addition_is_correct(reverse_answer: bool) -> None:
    task = AdditionTask(n_digits=4, reverse_answer=reverse_answer)
    for row in task.batch(300, "train", gen())[0].tolist():
        a, plus, b, eq, c = row[:4], row[4], row[5:9], row[9], row[10:]
        assert (plus, eq) == (AdditionTask.PLUS, AdditionTask.EQUALS)
        if reverse_answer:
            c = c[::-1]
        assert len(c) == 5 and _number(c) == _number(a) + _number(b)


def test_modular_addition_split_and_answers() -> None:
    task = ModularAdditionTask(p=23, train_fraction=0.3)
    full = task.full_dataset()
    train, test = full["train"][0], full["test"][0]
    assert len(train) == round(0.3 * 23 * 23) and len(train) + len(test) == 23 * 23
    pairs_train = {(a, b) for a, b in train[:, :2].tolist()}
    pairs_test = {(a, b) for a, b in test[:, :2].tolist()}
    assert not pairs_train & pairs_test
    assert pairs_train | pairs_test == {(a, b) for a in range(23) for b in range(23)}
    for tokens in (train, test):
        assert (tokens[:, 2] == 23).all()
        assert torch.equal(tokens[:, 3], (tokens[:, 0] + tokens[:, 1]) % 23)
    # Batches come from their own split only; the split depends on split_seed alone.
    batch = task.batch(500, "test", gen())[0]
    assert {(a, b) for a, b in batch[:, :2].tolist()} <= pairs_test
    again = ModularAdditionTask(p=23, train_fraction=0.3).full_dataset()["train"][0]
    assert torch.equal(again, train)
    other = ModularAdditionTask(p=23, split_seed=1).full_dataset()["train"][0]
    assert not torch.equal(other, train)


def test_induction_ground_truth() -> None:
    task = InductionTask(half_len=8, n_symbols=20)
    tokens, mask = task.batch(100, "train", gen())
    assert (tokens[:, 0] == task.bos).all()
    first, second = tokens[:, 1:9], tokens[:, 9:]
    assert torch.equal(first, second)
    assert all(len(set(r)) == 8 for r in first.tolist())
    # Scored targets are the second copy minus its first token: each follows an earlier copy.
    assert int(mask.sum(1)[0]) == 7
    assert torch.equal(masked_targets(tokens, mask).view(100, 7), second[:, 1:])


def _balanced(brackets: list[int]) -> bool:
    depth = 0
    for b in brackets:
        depth += 1 if b == BracketsTask.OPEN else -1
        if depth < 0:
            return False
    return depth == 0


def test_brackets_labels_and_balance() -> None:
    task = BracketsTask(length=12)
    tokens, _ = task.batch(400, "train", gen())
    labels = tokens[:, -1]
    assert (tokens[:, -2] == BracketsTask.EQUALS).all()
    assert int((labels == BracketsTask.YES).sum()) == 200
    for row in tokens.tolist():
        assert (row[-1] == BracketsTask.YES) == _balanced(row[:12])
    # Some negatives have equal counts, so counting alone does not solve the task.
    no = tokens[labels == BracketsTask.NO, :12]
    equal_counts = (no == BracketsTask.OPEN).sum(1) == 6
    assert 0.2 < float(equal_counts.float().mean()) < 0.9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=2, max_size=20))
def test_is_balanced_matches_reference(brackets: list[int]) -> None:
    got = BracketsTask.is_balanced(torch.tensor([brackets]))
    assert bool(got[0]) == _balanced(brackets)


@pytest.mark.parametrize("name", ALL)
def test_oracle_scores_perfectly(name: str) -> None:
    task = make_task(name)
    result = task.evaluate(oracle(task.vocab_size), 200, gen())
    assert result["exact_match"] == 1.0 and result["token_accuracy"] == 1.0
    assert result["loss"] < 1e-3 and result["n"] == 200


@pytest.mark.parametrize("name", ALL)
def test_random_model_is_near_chance(name: str) -> None:
    task = make_task(name)
    result = task.evaluate(random_model(task.vocab_size), 2000, gen())
    chance = 1 / task.vocab_size
    assert abs(result["token_accuracy"] - chance) < 0.03
    n_answer = int(task.batch(1, "train", gen())[1].sum())  # scored tokens per example
    assert result["exact_match"] <= chance**n_answer + 0.03
    assert result["loss"] > 0.5 * torch.log(torch.tensor(float(task.vocab_size)))


def test_score_rejects_bad_logits() -> None:
    task = make_task("copy")
    tokens, mask = task.batch(4, "train", gen())
    with pytest.raises(ValueError, match="logits must be"):
        score(torch.zeros(4, task.seq_len), tokens, mask)


def test_bad_batch_arguments() -> None:
    task = make_task("copy")
    with pytest.raises(ValueError, match="split"):
        task.batch(4, "validation", gen())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        task.batch(0, "train", gen())


def test_tiny_space_reports_empty_split() -> None:
    # Only 2 possible examples and 1 in 1000 goes to test: the test split is empty here; the
    # sampler must say so rather than loop forever.
    task = make_task("copy", n_items=1, n_symbols=2, test_every=1000)
    with pytest.raises(ValueError, match="nearly\\) empty"):
        task.batch(4, "test", gen())


def test_zipf_lookup_asks_fixed_facts_with_zipf_frequency() -> None:
    task = make_task("zipf_lookup", n_symbols=16, n_facts=4, exponent=1.5, seed=3)
    tokens, _ = task.batch(20000, "train", gen())
    facts = tokens.view(-1, 4, 3)
    keys = facts[..., 0] * 16 + facts[..., 1]
    # a key always has the same value: the facts are fixed by the task's seed
    for key in keys.unique()[:50]:
        assert facts[..., 2][keys == key].unique().numel() == 1
    # frequencies fall with rank as rank^-1.5: the 1st key vs the 4th, 8 times as common
    counts = torch.bincount(keys.ravel(), minlength=256).sort(descending=True).values.double()
    assert counts[0] / counts[3] == pytest.approx(4**1.5, rel=0.1)
    other = make_task("zipf_lookup", n_symbols=16, n_facts=4, exponent=1.5, seed=4)
    assert not torch.equal(other._values, task._values)
    with pytest.raises(ValueError, match="one value per fact"):
        task.answer_slice()
