"""The README's tour is the first code a user runs: it must run as printed."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_tour_runs_as_printed(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    tour = blocks[0]
    assert "gs.Transformer(cfg)" in tour and "gs.load(" in tour, "the first block is the tour"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(tour, str(README), "exec"), namespace)
    assert {p.name for p in (tmp_path / "runs" / "x").iterdir()} >= {"config.json",
                                                                     "model.safetensors"}
    out, tokens = namespace["out"], namespace["tokens"]
    assert out.shape == (2, tokens.shape[1] + 20) and (out[:, :20] == tokens).all()
