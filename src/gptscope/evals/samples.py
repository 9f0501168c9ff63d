"""Samples: what an evaluation asks, from code or from a JSONL file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELDS = ("input", "target", "choices", "id", "metadata")


@dataclass(frozen=True)
class Sample:
    """One question. ``input`` the prompt text; ``target`` the right answer (text, or for a
    multiple-choice sample the right choice's text); ``choices`` the answers a choice solver
    weighs; ``id`` names it in logs and errors (its index when not given). A model without
    a tokenizer (a synthetic task's) reads samples whose input and target are tuples of
    token ids."""

    input: str | tuple[int, ...]
    target: str | tuple[int, ...] | None = None
    choices: tuple[str, ...] = ()
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def named(self, index: int) -> str:
        return self.id or f"#{index}"


def make_sample(record: Any, where: str) -> Sample:
    """A Sample from a JSON object; ``where`` (e.g. "tasks.jsonl line 3") names it in errors."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a sample must be a JSON object with an 'input', got "
                         f"{type(record).__name__}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; a sample has "
                         f"{', '.join(FIELDS)}")
    if not isinstance(record.get("input"), str):
        raise ValueError(f"{where}: the field 'input' (the prompt text) is missing or not a "
                         "string")
    target = record.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"{where}: 'target' must be a string, got {target!r:.60}")
    choices = record.get("choices", [])
    if not (isinstance(choices, list) and all(isinstance(c, str) and c for c in choices)):
        raise ValueError(f"{where}: 'choices' must be a list of non-empty strings")
    if choices and target is not None and target not in choices:
        raise ValueError(f"{where}: 'target' {target!r:.40} is not one of its 'choices'")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: 'metadata' must be a JSON object")
    return Sample(record["input"], target, tuple(choices), str(record.get("id", "")), metadata)


def read_samples(path: str | Path) -> list[Sample]:
    """Samples from a JSONL file, one JSON object per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file; pass a JSONL file of samples")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        samples.append(make_sample(record, where))
    if not samples:
        raise ValueError(f"{path} holds no samples: the dataset is empty")
    return samples
