"""A learner's round trip through the CLI: start, fill in, check, progress, export."""

from __future__ import annotations

import sqlite3

import pytest

from gptscope.cli import main
from gptscope.course import load_syllabus
from gptscope.course.exercises import solution_source


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_workspace_round_trip(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["learn", "start", "2", "--dir", str(ws)]) == 0
    path = ws / "lesson02_softmax.py"
    assert "raise NotImplementedError" in path.read_text()

    # Unimplemented: fails, and is not counted as an attempt.
    assert main(["check", "02", "--dir", str(ws)]) == 1
    assert "not implemented" in capsys.readouterr().out

    # A classic mistake is named and recorded.
    path.write_text(path.read_text().replace(
        '    raise NotImplementedError  # your code here',
        '    return x.exp() / x.exp().sum(dim, keepdim=True)', 1))
    assert main(["check", "02/softmax", "--dir", str(ws)]) == 1
    assert "overflows for inputs of 1000" in capsys.readouterr().out

    # The correct answer passes.
    path.write_text(solution_source(load_syllabus().lesson("02")))
    assert main(["check", "02", "--dir", str(ws)]) == 0
    out = capsys.readouterr().out
    assert out.count("[PASS]") == 3
    assert main(["check", "softmax", "--dir", str(ws)]) == 0

    assert main(["learn", "read", "02", "3"]) == 0
    assert main(["learn", "note", "02", "subtracting the max keeps exp finite"]) == 0
    capsys.readouterr()

    db = sqlite3.connect(tmp_path / "home" / "progress.sqlite")
    rows = db.execute("SELECT exercise, passed, at FROM attempts ORDER BY id").fetchall()
    assert [(e, p) for e, p, _ in rows] == [("softmax", 0), ("softmax", 1), ("log_softmax", 1),
                                            ("cross_entropy", 1), ("softmax", 1)]
    assert all(at.endswith("+00:00") for _, _, at in rows)
    assert db.execute("SELECT lesson, idx FROM readings").fetchall() == [("02", 2)]

    assert main(["learn"]) == 0
    show = capsys.readouterr().out
    assert "3/3 exercises" in show and "1/4 readings" in show

    out_file = tmp_path / "notebook.md"
    assert main(["learn", "export", "--out", str(out_file)]) == 0
    md = out_file.read_text()
    assert "## Lesson 02: Softmax" in md
    assert "- [x] `softmax` (3 attempts" in md
    assert "- [x] [Softmax Explained](https://youtu.be/ytbYRIN0N4g" in md
    assert "subtracting the max keeps exp finite" in md
    assert "Session 1:" in md


def test_start_keeps_existing_work(tmp_path, capsys):
    ws = tmp_path / "ws"
    main(["learn", "start", "attention", "--dir", str(ws)])
    path = ws / "lesson04_attention.py"
    path.write_text("# my work\n")
    main(["learn", "start", "04", "--dir", str(ws)])
    assert path.read_text() == "# my work\n"
    assert "kept it" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["check", "04", "--dir", str(tmp_path)]) == 2
    assert "gptscope learn start" in capsys.readouterr().err
    assert main(["learn", "read", "02", "9"]) == 2
    assert main(["learn", "start", "99", "--dir", str(tmp_path)]) == 2


def test_solution_prints_reference(capsys):
    assert main(["learn", "solution", "02"]) == 0
    assert "amax" in capsys.readouterr().out


def test_check_without_target_checks_every_lesson_file(tmp_path, capsys):
    ws = tmp_path / "ws"
    main(["learn", "start", "03", "--dir", str(ws)])
    (ws / "lesson03_positions.py").write_text(solution_source(load_syllabus().lesson("03")))
    main(["learn", "start", "3b", "--dir", str(ws)])
    assert main(["check", "--dir", str(ws)]) == 1  # 3b is still a stub
    out = capsys.readouterr().out
    assert "[PASS] sinusoidal_positions" in out
    assert "[FAIL] expected_calibration_error: not implemented" in out


def test_cli_builds_notebooks_and_site(tmp_path, capsys):
    assert main(["learn", "notebooks", "--out", str(tmp_path / "nb"), "--lesson", "02",
                 "--with-solutions"]) == 0
    nb = (tmp_path / "nb" / "lesson02_softmax.ipynb").read_text()
    assert "amax" in nb and 'gs.course.check(\\"softmax\\", softmax, record=True)' in nb
    assert main(["learn", "site", "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "lesson03b_evaluation.html").exists()
