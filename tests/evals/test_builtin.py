"""Built-in tasks: every synthetic task's samples are exactly its scored tokens, shipped
models answer them, and the stories agreement task and its shift."""

import json

import pytest
import torch

import gptscope as gs
from gptscope.data.tasks import TASKS, make_task
from gptscope.evals.builtin import SEED, builtin_task, synthetic_task
from gptscope.evals.task import run_eval


@pytest.mark.parametrize("name", sorted(TASKS))
def test_synthetic_samples_are_the_scored_tokens(name):
    task = make_task(name)
    samples = synthetic_task(task, 12).samples
    tokens, mask = task.batch(12, "test", torch.Generator().manual_seed(SEED))
    assert sum(len(s.target) for s in samples) == int(mask.sum())
    for sample in samples:
        row = int(sample.id.split("-")[-1].split(".")[0])
        whole = sample.input + sample.target
        assert list(whole) == tokens[row, :len(whole)].tolist()
        # every target token is one the task scores: mask[t] scores token t + 1
        assert mask[row, len(sample.input) - 1:len(whole) - 1].all()


def test_a_model_without_tokenizer_answers_its_task():
    model = gs.load(gs.zoo.path("modadd-grokked"))
    assert model.tokenizer is None
    train = json.loads((gs.zoo.path("modadd-grokked") / "train_config.json").read_text())
    task = make_task("modular_addition", **train["data"]["task_kwargs"])
    result = run_eval(model, synthetic_task(task, 100))
    assert result.summary["mean"] > 0.95  # the grokked model generalises to the test split
    first = result.records[0]
    a, b, _eq = first["input"]
    assert first["target"] == [(a + b) % task.p]


def test_cli_reads_the_runs_task_parameters(capsys):
    from gptscope.cli import main

    assert main(["eval", "induction-2l", "--task", "induction", "--n", "20"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "induction" and summary["n"] == 20
    assert summary["mean"] > 0.5  # greedy: the whole second copy right, 78% of 100 measured


def test_agreement_and_its_shift():
    stories = gs.load(gs.zoo.path("stories")).eval()
    plain = run_eval(stories, builtin_task("stories-agreement", 60)).summary["mean"]
    shifted = run_eval(stories, builtin_task("stories-agreement-shifted", 60)).summary["mean"]
    # measured on 200: 0.995 and 0.910
    assert plain > 0.95 and shifted < plain
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        builtin_task("nope")


@pytest.mark.parametrize("name", sorted(set(TASKS) - {"modular_addition"}))
def test_longer_splits_are_longer_with_the_same_vocabulary(name):
    from gptscope.evals.builtin import longer

    task = make_task(name)
    shifted = longer(task)
    assert shifted.seq_len > task.seq_len and shifted.vocab_size == task.vocab_size
    samples = builtin_task(f"{name}-longer", 4).samples
    assert max(len(s.input) + len(s.target) for s in samples) == shifted.seq_len


def test_shift_errors_are_clear():
    from tests.helpers import random_model

    with pytest.raises(ValueError, match="modular_addition has no longer form"):
        builtin_task("modular_addition-longer")
    small = random_model(d_vocab=11, n_ctx=20)  # copy's 17 tokens fit, copy-longer's 25 not
    assert run_eval(small, builtin_task("copy", 3)).summary["n"] == 3
    with pytest.raises(ValueError, match="sample copy-0: input .* exceed the model's n_ctx=20"):
        run_eval(small, builtin_task("copy-longer", 3))
