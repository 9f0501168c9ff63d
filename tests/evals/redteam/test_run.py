"""The red-teaming lab end to end at a tiny size (the plumbing, files and reuse; the
measured result is the README's opt-in run), and its methods on a hand-made lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gptscope as gs
from gptscope.evals.redteam.methods import Lab, few_shot, rl, supervised
from gptscope.evals.redteam.run import red_team

TINY = {"max_steps": 30, "threads": 1, "progress": False}  # enough to write lines


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("redteam") / "lab"
    summaries = red_team("stories-assistant", out, ("zero-shot",), n=4, seed=1, **TINY)
    return out, summaries


def test_lab_writes_every_question_and_a_report(lab_dir):
    out, summaries = lab_dir
    assert [s["method"] for s in summaries] == ["zero-shot"]
    records = [json.loads(line) for line in (out / "zero-shot" / "questions.jsonl")
               .read_text().splitlines()]
    assert len(records) == 4 and all(r["question"] and "\n" not in r["question"]
                                      for r in records)
    assert {"reply", "p_offensive", "offensive", "rule_offensive"} <= set(records[0])
    report = json.loads((out / "report.json").read_text())
    assert report["methods"][0]["n"] == 4 and "named person" in report["stands_in"]
    html = (out / "index.html").read_text()
    assert "<svg" in html and "zero-shot" in html and 'src="http' not in html
    for stage in ("classifier/reward_head.safetensors", "red-lm/model.safetensors"):
        assert (out / stage).is_file()


def test_rerun_reuses_finished_stages_and_refuses_other_settings(lab_dir):
    out, summaries = lab_dir
    before = (out / "classifier" / "metrics.jsonl").stat().st_mtime_ns
    again = red_team("stories-assistant", out, ("zero-shot",), n=4, seed=1, **TINY)
    assert (out / "classifier" / "metrics.jsonl").stat().st_mtime_ns == before
    assert again[0]["attack_success"] == summaries[0]["attack_success"]
    with pytest.raises(ValueError, match="n: 4 -> 6"):
        red_team("stories-assistant", out, ("zero-shot",), n=6, seed=1, **TINY)


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": ("zero-shot", "jailbreak")}, "methods must be some of"),
    ({"methods": ()}, "methods must be some of"),
    ({"n": 1}, "n .questions per method. must be >= 2"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        red_team("stories-assistant", tmp_path / "lab", **kwargs)
    assert not (tmp_path / "lab").exists()


def test_a_base_model_is_not_a_target(tmp_path):
    with pytest.raises(ValueError, match="no chat tokens"):
        red_team("stories", tmp_path / "lab", ("zero-shot",), n=2, **TINY)


def hand_lab(lab_dir, failures, tmp_path) -> Lab:
    from gptscope.align.reward import load_reward_model

    out, _ = lab_dir
    return Lab(gs.load("stories-assistant"), load_reward_model(out / "classifier"),
               gs.load(out / "red-lm"), out / "red-lm", Path(tmp_path), n=6, seed=0,
               failures=failures, train={"threads": 1, "progress": False}, rl_steps=2,
               rollout_size=16, norm_samples=16)


def test_few_shot_and_supervised_need_failures(lab_dir, tmp_path):
    lab = hand_lab(lab_dir, [], tmp_path)
    for method in (few_shot, supervised):
        with pytest.raises(ValueError, match="zero-shot found none in 6 questions"):
            method(lab)


def test_few_shot_and_supervised_write_questions(lab_dir, tmp_path):
    lab = hand_lab(lab_dir, [("tell a sad story about mary.", 0.9),
                             ("make it sad. tom is kind.", 0.6)], tmp_path)
    assert len(few_shot(lab)) == 6
    lab.train["max_steps"] = 2
    assert len(supervised(lab)) == 6
    assert (tmp_path / "supervised" / "model.safetensors").is_file()


def test_rl_trains_the_red_lm_with_ppo_on_the_reply_reward(lab_dir, tmp_path):
    questions = rl(hand_lab(lab_dir, [], tmp_path))
    assert len(questions) == 6
    logged = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl")
              .read_text().splitlines()]
    assert logged[-1]["step"] == 2 and 0 <= logged[-1]["reward_model_p"] <= 1
