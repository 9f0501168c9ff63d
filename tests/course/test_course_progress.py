"""Progress bookkeeping: data folder, time spent, sessions; the course's small data sets."""

from __future__ import annotations

import sqlite3

import torch

from gptscope.course import datasets
from gptscope.course.progress import Progress, data_dir


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("GPTSCOPE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "gptscope"
    monkeypatch.setenv("GPTSCOPE_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home"
    monkeypatch.delenv("GPTSCOPE_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert str(data_dir()).endswith(".local/share/gptscope")


def test_time_spent_and_sessions(tmp_path):
    p = Progress(tmp_path / "p.sqlite")
    db = sqlite3.connect(p.path)
    for at in ("2026-01-05T10:00:00+00:00", "2026-01-05T10:10:00+00:00",
               "2026-01-05T13:00:00+00:00"):  # a 10-minute stretch, then a new session
        db.execute("INSERT INTO events (lesson, kind, at) VALUES ('04', 'attempt', ?)", (at,))
    db.execute("INSERT INTO readings VALUES ('04', 0, '2026-01-05T10:00:00+00:00')")
    db.commit()
    st = {s.lesson.id: s for s in p.status()}["04"]
    # 10 min + 30 min (capped gap) + the 10 listed minutes of reading 1.
    assert round(st.minutes) == 50
    sessions = p.sessions()
    assert len(sessions) == 2 and sessions[0][2] == ["04"]
    assert not st.done and st.started


def test_glyphs_are_deterministic_and_learnable():
    x1, y1 = datasets.glyphs(50, seed=3)
    x2, y2 = datasets.glyphs(50, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (50, 64) and 0 <= x1.min() and x1.max() <= 1
    x, y, source = datasets.digits()
    assert x.shape[1] == 64 and len(x) == len(y) and x.max() <= 1
    assert source in ("scikit-learn digits", "gptscope glyphs (scikit-learn not installed)")


def test_scaling_sweep_follows_its_power_law():
    n, loss = datasets.scaling_sweep(noise=0.0)
    assert torch.allclose(loss, 40 * n ** -0.3)
