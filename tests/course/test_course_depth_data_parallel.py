"""Lesson 6c (data parallelism) at depth: each mistake in mutants_data_parallel.py is told its
own message alone, right answers written differently pass, the references agree with cases
worked by hand, and two gloo processes train exactly as one process on the global batch."""

from __future__ import annotations

import time

import pytest
import torch

from gptscope.course import load_syllabus
from gptscope.course.checks import data_parallel as dpc
from gptscope.course.solutions import lesson06c_data_parallel as s06c

from .mutants_data_parallel import MUTANTS, RIGHT_ANSWERS

EXERCISES = ["shard_indices", "average_gradients", "data_parallel_step"]
CASES = [(ex, fn, phrase) for ex, items in MUTANTS.items() for fn, phrase in items]
RIGHT = [(ex, fn) for ex, fns in RIGHT_ANSWERS.items() for fn in fns]


def test_the_syllabus_lists_the_lesson_after_06b_with_enough_mutants():
    syl = load_syllabus()
    ids = [lesson.id for lesson in syl.lessons]
    assert ids.index("06c") == ids.index("06b") + 1
    lesson = syl.lesson("06c")
    assert lesson.exercises == EXERCISES and lesson.module_name == "lesson06c_data_parallel"
    for name in EXERCISES:
        assert len(MUTANTS[name]) >= 4 and len(RIGHT_ANSWERS[name]) >= 2, name


# -- hand-worked cases ------------------------------------------------------------------------

def test_shards_by_hand():
    # n = 10 over 4 ranks: 10 = 4 * 2 + 2, so ranks 0 and 1 get 3, ranks 2 and 3 get 2.
    got = [s06c.shard_indices(10, r, 4).tolist() for r in range(4)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    # Fewer examples than ranks: the last rank gets nothing.
    assert s06c.shard_indices(3, 3, 4).tolist() == []
    assert s06c.shard_indices(3, 0, 4).dtype == torch.int64


def test_average_by_hand_in_two_processes():
    # Rank r's gradient is r + 1 everywhere: the mean over 2 ranks is (1 + 2) / 2 = 1.5 on
    # both; a parameter without a gradient stays without one.
    def target(rank: int, world_size: int) -> list:
        model = torch.nn.Linear(2, 1)
        model.weight.grad = torch.full((1, 2), rank + 1.0)
        s06c.average_gradients(model, world_size)
        return [model.weight.grad.tolist(), model.bias.grad]

    assert dpc.run_ranks(target) == [[[[1.5, 1.5]], None], [[[1.5, 1.5]], None]]


def test_a_child_that_hangs_or_raises_becomes_a_message():
    # A rank that never joins its peer's collective: the peer gives up (gloo's timeout, or
    # the closed connection) and the check says why, well within the group's timeout.
    def lonely(rank: int, world_size: int) -> None:
        if rank == 0:
            torch.distributed.all_reduce(torch.ones(1))

    start = time.perf_counter()
    with pytest.raises(dpc.Mismatch, match="never joined"):
        dpc.run_ranks(lonely)
    assert time.perf_counter() - start < dpc.GROUP_TIMEOUT_S

    def raises(rank: int, world_size: int) -> None:
        raise ValueError("boom")

    with pytest.raises(dpc.Mismatch, match="ValueError: boom"):
        dpc.run_ranks(raises)


def test_simulated_ranks_equal_one_process():
    # The replay behind the check: 2 model copies on half batches, gradients averaged, are
    # one model on the whole batch. float32 sums in another order: 1e-5 is ~100x the gap.
    one_loss, one_params = dpc.simulate(dpc.step_data(), 1)
    two_loss, two_params = dpc.simulate(dpc.step_data(), 2)
    assert torch.allclose(two_loss.mean(1), one_loss[:, 0], rtol=1e-5)
    assert torch.allclose(two_params[0], one_params[0], atol=1e-5)
    assert torch.equal(two_params[0], two_params[1])


def test_two_processes_train_as_one(capsys):
    # 20 AdamW steps with 2 real gloo processes vs one process on the same global batches.
    # Tolerance 1e-5: the only difference is float32 rounding (each rank's mean over half
    # the positions, summed by gloo and halved, instead of one mean over all); it is ~1e-7
    # per step and AdamW's normalised steps keep it from growing over 20 steps.
    curves = s06c.explore_data_parallel()
    assert curves["ranks"].shape == curves["one"].shape == (20,)
    assert (curves["ranks"] - curves["one"]).abs().max().item() < 1e-5
    assert curves["one"][-1] < curves["one"][0] - 0.3  # and it is learning
    assert "largest difference" in capsys.readouterr().out
