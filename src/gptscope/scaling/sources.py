"""One way in to a finished study's results, whatever made it: a transformer sweep folder, a
digits CNN folder, a shipped sweep's name or a saved sweep's file.

The report and the fits read rows through `open_results`, which also says what the rows'
width and data mean, so a chart labels a CNN's channels and images as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptscope.scaling.saved import load_saved_sweep, saved_sweeps


@dataclass
class Results:
    """A study's result rows, with what their numbers mean."""

    rows: list[dict[str, Any]]
    title: str  # where they came from, for a page's subtitle
    data_key: str = "tokens"  # the row field that counts D, the data seen
    width_name: str = "d_model"
    data_name: str = "tokens seen"
    flops_note: str = "6N + the attention term, PaLM's count, with the unembedding"
    dropout: float = 0.0


def open_results(source: str | Path) -> Results:
    """The results of a sweep folder (``sweep.json``), a digits folder (``digits.json``), a
    shipped sweep's name (`saved_sweeps`) or a saved sweep's ``.json`` file."""
    from gptscope.scaling import digits
    from gptscope.scaling.sweep import SWEEP_FILE, Sweep, results

    path = Path(source)
    if (path / SWEEP_FILE).is_file():
        sweep = Sweep.open(path)
        return Results(results(sweep), f"{path} · {_corpus(sweep.spec)}, "
                       f"{len(sweep.spec.points)} points", dropout=sweep.spec.dropout)
    if (path / digits.SETTINGS_FILE).is_file():
        rows = digits.results(path)
        data = rows[0]["data"] if rows else "digits"
        return Results(rows, f"{path} · small CNNs on {data}, {len(rows)} points",
                       data_key="images_seen", width_name="channels",
                       data_name="images seen", flops_note="3x the forward's 2 FLOPs per "
                       "multiply-add, less the first convolution's input gradient")
    if str(source) in saved_sweeps() or (path.suffix == ".json" and path.is_file()):
        saved = load_saved_sweep(str(source))
        return Results(saved.rows, f"{saved.name} (shipped) · {_corpus(saved.spec)}, "
                       f"{len(saved.rows)} runs on {saved.machine}", dropout=saved.spec.dropout)
    raise ValueError(f"{source} is not a sweep: give a folder made by `gptscope scaling sweep` "
                     f"or `gptscope scaling digits`, a saved sweep's .json file, or one of the "
                     f"shipped sweeps {saved_sweeps()}")


def _corpus(spec: Any) -> str:
    return spec.task if spec.task is not None else spec.corpus
