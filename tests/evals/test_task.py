"""The harness end to end on the stories model: the same records at any batch size, seeded
sampling that repeats, the log folder, and bad input named by sample."""

import json

import pytest

import gptscope as gs
from gptscope.data.stories import classify_sentiment
from gptscope.evals.samples import Sample, read_samples
from gptscope.evals.scorers import choice_match, exact_match, judged
from gptscope.evals.solvers import classify, generate, multiple_choice
from gptscope.evals.task import EvalTask, run_eval
from tests.helpers import random_model


@pytest.fixture(scope="module")
def stories():
    return gs.load(gs.zoo.path("stories")).eval()


def _agreement_samples() -> list[Sample]:
    """Does the verb agree with the subject? One right and one wrong choice each."""
    out = []
    for animal, sing, plur in [("dog", "loves", "love"), ("cat", "hates", "hate"),
                               ("bird", "sees", "see"), ("frog", "finds", "find"),
                               ("duck", "likes", "like")]:
        rest = " the red ball in the park."
        out.append(Sample(f"the {animal}", f" {sing}{rest}", (f" {plur}{rest}", f" {sing}{rest}"),
                          id=f"one-{animal}"))
        out.append(Sample(f"the {animal}s", f" {plur}{rest}", (f" {sing}{rest}", f" {plur}{rest}"),
                          id=f"many-{animal}"))
    return out


def test_multiple_choice_records_are_identical_across_batch_sizes(stories):
    task = EvalTask("agreement", _agreement_samples(), multiple_choice(), choice_match())
    runs = [run_eval(stories, task, batch_size=b).records for b in (1, 3, 16)]
    assert runs[0] == runs[1] == runs[2]
    for record in runs[0]:
        assert record["choice"] == max(range(2), key=lambda i: record["logliks"][i])
    # the stories model knows agreement: a check that the choices are read after the input
    assert sum(r["score"] for r in runs[0]) >= 8


def test_sampled_generation_repeats_with_its_seed(stories):
    samples = [Sample("the dog", id="a"), Sample("mary and", id="b"), Sample("the cats", id="c")]
    task = EvalTask("sampled", samples, generate(30, temperature=1.0, stop="."),
                    judged(classify_sentiment))
    first = run_eval(stories, task, batch_size=1, seed=7).records
    assert run_eval(stories, task, batch_size=16, seed=7).records == first
    assert run_eval(stories, task, seed=8).records != first
    assert all(r["output"].endswith(".") or len(r["output"]) >= 25 for r in first)


def test_log_folder(stories, tmp_path):
    task = EvalTask("labels", [Sample("the dog", " loves the ball.", id="<q>")] * 3,
                    classify([" loves the ball.", " hates the ball."]), exact_match())
    result = run_eval(stories, task, out=tmp_path / "log")
    lines = (tmp_path / "log" / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.records
    summary = json.loads((tmp_path / "log" / "summary.json").read_text())
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"] and summary["n"] == 3
    html = (tmp_path / "log" / "index.html").read_text()
    assert "&lt;q&gt;" in html and "<q>" not in html


def _write(tmp_path, lines):
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("lines, needle", [
    (['{"input": "a"}', '{"target": "b"}'], "line 2: the field 'input'"),
    (['{"input": "a", "target": "c", "choices": ["a", "b"]}'], "line 1: 'target'"),
    (['{"input": "a", "answer": "b"}'], "line 1: unknown field"),
    (['{"input": "a"', ], "line 1: not valid JSON"),
    (["", "  "], "empty"),
])
def test_bad_task_files_name_the_line(tmp_path, lines, needle):
    with pytest.raises(ValueError, match=needle):
        read_samples(_write(tmp_path, lines))


def test_read_samples_round_trip(tmp_path):
    path = _write(tmp_path, ['{"input": "the dog", "target": " x", "choices": [" x", " y"], '
                             '"id": "q1"}'])
    assert read_samples(path) == [Sample("the dog", " x", (" x", " y"), "q1")]


def test_bad_runs_name_the_sample(stories):
    with pytest.raises(ValueError, match="empty"):
        EvalTask("none", [], generate(), exact_match())
    samples = [Sample("the dog", id="first"), Sample("the cat", id="second")]
    task = EvalTask("words", samples, generate(5), lambda s, o: "right")
    with pytest.raises(ValueError, match="sample first: the scorer returned 'right'"):
        run_eval(stories, task)
    with pytest.raises(ValueError, match="sample first: no 'choices'"):
        run_eval(stories, EvalTask("mc", samples, multiple_choice(), choice_match()))
    odd = EvalTask("odd", [Sample("the dog", id="fine"), Sample("the <dog>", id="odd")],
                   generate(5), exact_match())
    with pytest.raises(ValueError, match="sample odd: character '<'"):
        run_eval(stories, odd)
    no_tokenizer = random_model(d_vocab=10, n_ctx=16)
    with pytest.raises(ValueError, match="sample first: this model has no tokenizer"):
        run_eval(no_tokenizer, task)


def test_cli_runs_a_task_file(tmp_path, capsys):
    from gptscope.cli import main

    path = _write(tmp_path, ['{"input": "the dog", "target": " loves the ball.", '
                             '"choices": [" love the ball.", " loves the ball."]}'])
    assert main(["eval", str(gs.zoo.path("stories")), "--task", str(path),
                 "--out", str(tmp_path / "log")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1
    assert (tmp_path / "log" / "index.html").exists()


def test_multiple_choice_summary_reports_calibration(stories):
    import torch

    from gptscope.evals.calibration import brier_score, expected_calibration_error

    result = run_eval(stories, EvalTask("agreement", _agreement_samples(), multiple_choice(),
                                        choice_match()))
    probs = torch.tensor([r["probs"] for r in result.records], dtype=torch.float64)
    labels = torch.tensor([r["choices"].index(r["target"]) for r in result.records])
    conf, pick = probs.max(-1)
    assert pick.tolist() == [r["choice"] for r in result.records]
    assert result.summary["ece"] == expected_calibration_error(conf, pick == labels)
    assert result.summary["brier"] == brier_score(probs, labels)
    generated = run_eval(stories, EvalTask("gen", [Sample("the dog", " x")], generate(3),
                                           exact_match()))
    assert "ece" not in generated.summary
    from gptscope.evals.task import log_page, reliability_chart

    assert "reliability diagram" in log_page(result) and "<svg" in log_page(result)
    assert reliability_chart(generated.records) == ""
