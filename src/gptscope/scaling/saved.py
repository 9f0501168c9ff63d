"""Finished sweeps shipped with the package, and the way to make one from your own folders.

A saved sweep is one JSON file: the grid (``SweepSpec``), the machine it ran on, and every
point's result row (the ``done/NAME.json`` records, without the run-folder paths), so the
fits and the course's exercises can use a sweep larger than a laptop trains in a lesson.
Several folders of the same grid with different seeds merge into one saved sweep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gptscope.scaling.grid import SweepSpec
from gptscope.scaling.sweep import Sweep, results
from gptscope.utils.atomic import write_text

SAVED_KIND = "gptscope-saved-sweep"


@dataclass
class SavedSweep:
    """A finished sweep: its grid, where it ran, and one result row per point."""

    name: str
    spec: SweepSpec
    machine: str
    rows: list[dict[str, Any]]


def saved_sweeps() -> list[str]:
    """The names of the sweeps shipped with gptscope."""
    folder = resources.files("gptscope.scaling").joinpath("shipped")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                  if p.name.endswith(".json"))


def load_saved_sweep(name: str) -> SavedSweep:
    """A shipped sweep by name (see `saved_sweeps`), or a saved sweep's file path."""
    if name.endswith(".json"):
        text = Path(name).read_text("utf-8")
    elif name in saved_sweeps():
        text = resources.files("gptscope.scaling").joinpath("shipped", f"{name}.json"
                                                            ).read_text("utf-8")
    else:
        raise ValueError(f"no saved sweep {name!r}; shipped ones are {saved_sweeps()} (or "
                         "pass the path of a .json file written by save_sweep)")
    data = json.loads(text)
    if data.get("kind") != SAVED_KIND:
        raise ValueError(f"{name} is not a saved sweep (kind {data.get('kind')!r})")
    return SavedSweep(data["name"], SweepSpec.from_dict(data["spec"]), data["machine"],
                      data["rows"])


def save_sweep(folders: list[str | Path], out: str | Path, name: str, machine: str
               ) -> SavedSweep:
    """Merge finished sweep folders of one grid (seeds may differ) into one saved file."""
    sweeps = [Sweep.open(f) for f in folders]
    first = sweeps[0].spec.to_dict()
    rows, seeds = [], []
    for sweep in sweeps:
        spec = sweep.spec.to_dict()
        if {k: v for k, v in spec.items() if k != "seeds"} != {
                k: v for k, v in first.items() if k != "seeds"}:
            raise ValueError(f"{sweep.folder} has another grid than {sweeps[0].folder}; "
                             "only seeds may differ between merged sweeps")
        done = results(sweep)
        if len(done) != len(sweep.spec.points):
            raise ValueError(f"{sweep.folder} has {len(done)} of {len(sweep.spec.points)} "
                             "points finished; finish it before saving")
        rows += [{k: v for k, v in r.items() if k != "run"} for r in done]
        seeds += [s for s in sweep.spec.seeds if s not in seeds]
    spec = SweepSpec.from_dict(first | {"seeds": seeds})
    saved = SavedSweep(name, spec, machine, rows)
    write_text(out, json.dumps({"kind": SAVED_KIND, "name": name, "spec": spec.to_dict(),
                                "machine": machine, "rows": rows}, indent=1))
    return saved
