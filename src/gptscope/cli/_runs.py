"""Opening a run folder from a command, saying which weights were read."""

from __future__ import annotations

import sys
from typing import Any


def open_for(command: str, run: str, device: str = "cpu") -> Any:
    """The model of ``run``'s newest good weights; tells the user on stderr (so stdout stays
    the command's result) which weights those are: ``gptscope sample: using ... (step N)``."""
    from gptscope.train.runs import open_run

    model, weights = open_run(run, device=device)
    print(f"gptscope {command}: using {weights.describe()}", file=sys.stderr)
    return model
