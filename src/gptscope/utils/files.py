"""Reading user files with errors that name the file, the bad byte and the fix.

A bare "'utf-8' codec can't decode byte 0xff in position 7" does not say which of a run's
files is broken; these helpers turn every decode and parse failure into a ValueError that
does.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

_SCAN_CHUNK = 1 << 20  # bytes read at a time when looking for the first non-UTF-8 byte


def not_utf8(path: str | os.PathLike[str], fix: str, offset: int | None = None,
             byte: int | None = None) -> ValueError:
    """The error for a file that is not UTF-8 text; finds the bad byte unless given."""
    if offset is None or byte is None:
        offset, byte = first_non_utf8(path) or (0, 0)
    return ValueError(f"{path} is not UTF-8 text (byte 0x{byte:02x} at offset {offset}); {fix}")


def first_non_utf8(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(file offset, value) of the first byte that breaks UTF-8, or None if the file is clean.

    Streams the file, so it also serves files read line by line (where the decoder's own
    positions are relative to a chunk).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_SCAN_CHUNK)
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                return read - pending + e.start, e.object[e.start]
            if not chunk:
                return None
            read += len(chunk)


def read_text(path: str | os.PathLike[str], fix: str) -> str:
    """The UTF-8 text of ``path``; ``fix`` ends the error when it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        # A whole-file read decodes in one piece, so e.start is the file offset.
        raise not_utf8(path, fix, e.start, e.object[e.start]) from None


def read_json(path: str | os.PathLike[str], fix: str) -> Any:
    """The parsed JSON of ``path``; not UTF-8 or not JSON gives a ValueError naming it."""
    text = read_text(path, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {fix}") from None


def read_json_object(path: str | os.PathLike[str], fix: str) -> dict[str, Any]:
    """Like ``read_json``, for files that must hold a JSON object (a dict)."""
    data = read_json(path, fix)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


def json_text_or_file(text_or_path: str | os.PathLike[str], fix: str) -> tuple[Any, str]:
    """``(data, source)`` from JSON text (starting with ``{``) or a JSON file; ``source``
    names where it came from, for errors about its contents."""
    text = str(text_or_path)
    if not text.lstrip().startswith("{"):
        return read_json(text_or_path, fix), text
    try:
        return json.loads(text), "the JSON text"
    except json.JSONDecodeError as e:
        raise ValueError(f"the JSON text is not valid JSON ({e}); {fix}") from None


def read_string_records(path: str | os.PathLike[str], fields: tuple[str, ...], what: str,
                        empty_fix: str) -> list[tuple[str, ...]]:
    """The ``fields`` of each line of a JSONL file whose objects hold those as strings, in
    order (blank lines skipped). ValueError naming the file and line for a missing file, a
    line that is not JSON or lacks a field, and for a file with no records (``empty_fix``
    says what to do). ``what`` names the file's role, e.g. "preference file"."""
    path = Path(path)
    listed = " and ".join([", ".join(repr(f) for f in fields[:-1]), repr(fields[-1])]) \
        if len(fields) > 1 else repr(fields[0])
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist; write one JSON object with string "
                         f"fields {listed} per line")
    records = []
    for n, line in enumerate(read_text(path, f"a {what} is JSON lines").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n} is not JSON ({e.msg}); fix or remove it") from e
        if not (isinstance(record, dict) and all(isinstance(record.get(f), str)
                                                 for f in fields)):
            raise ValueError(f"{path} line {n} needs string fields {listed}, got "
                             f"{line[:80]!r}")
        records.append(tuple(record[f] for f in fields))
    if not records:
        raise ValueError(f"{what} {path} is empty: it holds no records; {empty_fix}")
    return records
