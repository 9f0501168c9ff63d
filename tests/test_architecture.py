"""Project-wide checks: imports point down the layers of ARCHITECTURE.md, and the code is ruff
clean."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gptscope"

# Lower numbers sit lower; a module may import its own layer and the ones below.
LAYERS = {
    "utils": 0, "config": 0,
    "model": 1, "tokenizers": 1,
    "io": 2, "zoo": 2,
    "data": 3,
    "train": 4,
    "interp": 5, "steering": 5, "sae": 5, "scaling": 5, "vision": 5,
    "seq2seq": 5,
    "viz": 6, "report": 6, "align": 6,
    "evals": 7,
    "course": 8,
    "cli": 9, "__main__": 9, "__init__": 9,
}


def _layer_of(parts: list[str]) -> str:
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [n for n in found if n.startswith("gptscope.")]


def test_every_package_has_a_layer():
    tops = {p.name.removesuffix(".py") for p in SRC.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert tops <= set(LAYERS), f"assign a layer to {sorted(tops - set(LAYERS))}"


def test_imports_point_down():
    wrong = []
    for path in SRC.rglob("*.py"):
        here = _layer_of(list(path.relative_to(SRC).parts))
        for name in _imports(path):
            there = name.split(".")[1]
            if LAYERS.get(there, -1) > LAYERS[here]:
                wrong.append(f"{path.relative_to(SRC)} imports {name}")
    assert not wrong, "lower layers must not import higher ones:\n" + "\n".join(wrong)


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff")
                    .exists(), reason="ruff is a dev dependency; install .[dev]")
def test_ruff_clean():
    ruff = Path(sys.executable).parent / "ruff"
    root = SRC.parents[1]
    out = subprocess.run([str(ruff) if ruff.exists() else "ruff", "check", "src", "tests",
                          "benchmarks", "scripts"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
