"""The project scaffold: a reproducible experiment folder whose run.py runs in seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gptscope.cli import main
from gptscope.course.projects import new_project


def test_scaffold_runs_with_a_tiny_config(tmp_path):
    folder = new_project("tiny", tmp_path)
    assert {p.name for p in folder.iterdir()} == {"config.json", "run.py", "README.md"}
    readme = (folder / "README.md").read_text()
    for heading in ("## Question", "## Method", "## Result"):
        assert heading in readme
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["seed"] == 0
    cfg["train"]["steps"] = 5
    cfg["task"]["n_train"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, str(folder / "run.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_loss"] > 0 and metrics["bigram_loss"] > 0
    assert "held-out loss" in (folder / "report.md").read_text()
    assert (folder / "model" / "config.json").exists()


def test_cli_new_project_refuses_to_overwrite(tmp_path, capsys):
    assert main(["learn", "new-project", "exp", "--dir", str(tmp_path)]) == 0
    assert main(["learn", "new-project", "exp", "--dir", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(ValueError, match="project name"):
        new_project("../evil", tmp_path)
