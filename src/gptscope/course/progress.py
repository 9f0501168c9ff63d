"""The learner's progress in a local SQLite database: readings, attempts, notes, time.

The database lives in the user's data folder: ``$GPTSCOPE_HOME``, else
``$XDG_DATA_HOME/gptscope``, else ``~/.local/share/gptscope`` (file ``progress.sqlite``).
Every event is timestamped (UTC, ISO 8601). Time spent on a lesson is estimated from its
events: the gaps between consecutive events of that lesson, each capped at 30 minutes (a
longer gap starts a new session), plus the listed minutes of the readings ticked off.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gptscope.course.syllabus import Lesson, Syllabus, load_syllabus

SESSION_GAP_S = 30 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    lesson TEXT NOT NULL, idx INTEGER NOT NULL, at TEXT NOT NULL, PRIMARY KEY (lesson, idx));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, lesson TEXT NOT NULL, exercise TEXT NOT NULL,
    passed INTEGER NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY, lesson TEXT NOT NULL, text TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, lesson TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL);
"""


def data_dir() -> Path:
    """The user's gptscope data folder (see the module docstring)."""
    if os.environ.get("GPTSCOPE_HOME"):
        return Path(os.environ["GPTSCOPE_HOME"])
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "gptscope"
    return Path.home() / ".local" / "share" / "gptscope"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


@dataclass
class LessonStatus:
    """A lesson's progress: readings ticked (indices), exercises passed / tried, minutes."""

    lesson: Lesson
    readings_done: set[int] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)
    minutes: float = 0.0

    @property
    def done(self) -> bool:
        return (len(self.readings_done) == len(self.lesson.readings)
                and self.passed >= set(self.lesson.exercises))

    @property
    def started(self) -> bool:
        return bool(self.readings_done or self.attempted)


class Progress:
    """Read and write progress. ``Progress()`` opens the default database."""

    def __init__(self, path: str | Path | None = None,
                 syllabus: Syllabus | None = None) -> None:
        self.path = Path(path) if path else data_dir() / "progress.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.syllabus = syllabus or load_syllabus()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction (committed on success, then closed).

        sqlite errors (a corrupt or unwritable file) become a ValueError naming the file and
        the fix, so the CLI reports them on one line instead of a traceback.
        """
        try:
            db = sqlite3.connect(self.path)
            try:
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.Error as e:
            raise ValueError(
                f"the progress database {self.path} cannot be used ({type(e).__name__}: {e}); "
                f"if it is corrupt, move it aside (mv {self.path} {self.path}.broken) to start "
                "afresh, or set GPTSCOPE_HOME to another folder"
            ) from e

    def _event(self, db: sqlite3.Connection, lesson: str, kind: str, at: str) -> None:
        db.execute("INSERT INTO events (lesson, kind, at) VALUES (?, ?, ?)", (lesson, kind, at))

    # -- writing ---------------------------------------------------------------------------

    def tick_reading(self, lesson_key: str, number: int) -> tuple[Lesson, int]:
        """Mark reading ``number`` (1-based, as `gptscope learn` lists them) as read."""
        lesson = self.syllabus.lesson(lesson_key)
        if not 1 <= number <= len(lesson.readings):
            raise ValueError(f"lesson {lesson.id} has readings 1..{len(lesson.readings)}, "
                             f"not {number}" if lesson.readings else
                             f"lesson {lesson.id} has no readings")
        at = _now()
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO readings VALUES (?, ?, ?)",
                       (lesson.id, number - 1, at))
            self._event(db, lesson.id, "reading", at)
        return lesson, number - 1

    def record_attempt(self, exercise: str, passed: bool, message: str) -> None:
        lesson = self.syllabus.lesson_of(exercise)
        at = _now()
        with self._connect() as db:
            db.execute("INSERT INTO attempts (lesson, exercise, passed, message, at) "
                       "VALUES (?, ?, ?, ?, ?)", (lesson.id, exercise, int(passed), message, at))
            self._event(db, lesson.id, "attempt", at)

    def add_note(self, lesson_key: str, text: str) -> Lesson:
        lesson = self.syllabus.lesson(lesson_key)
        at = _now()
        with self._connect() as db:
            db.execute("INSERT INTO notes (lesson, text, at) VALUES (?, ?, ?)",
                       (lesson.id, text, at))
            self._event(db, lesson.id, "note", at)
        return lesson

    def mark_started(self, lesson_key: str) -> None:
        lesson = self.syllabus.lesson(lesson_key)
        with self._connect() as db:
            self._event(db, lesson.id, "start", _now())

    # -- reading ---------------------------------------------------------------------------

    def attempts(self, lesson_id: str | None = None) -> list[tuple[str, str, bool, str, str]]:
        """(lesson, exercise, passed, message, at), oldest first."""
        q = "SELECT lesson, exercise, passed, message, at FROM attempts"
        args: tuple = ()
        if lesson_id:
            q, args = q + " WHERE lesson = ?", (lesson_id,)
        with self._connect() as db:
            rows = db.execute(q + " ORDER BY id", args).fetchall()
        return [(a, b, bool(c), d, e) for a, b, c, d, e in rows]

    def notes(self, lesson_id: str | None = None) -> list[tuple[str, str, str]]:
        """(lesson, text, at), oldest first."""
        q = "SELECT lesson, text, at FROM notes"
        args: tuple = ()
        if lesson_id:
            q, args = q + " WHERE lesson = ?", (lesson_id,)
        with self._connect() as db:
            return db.execute(q + " ORDER BY id", args).fetchall()

    def readings(self) -> dict[str, dict[int, str]]:
        """lesson -> {reading index: when ticked}."""
        out: dict[str, dict[int, str]] = {}
        with self._connect() as db:
            for lesson, idx, at in db.execute("SELECT lesson, idx, at FROM readings"):
                out.setdefault(lesson, {})[idx] = at
        return out

    def events(self) -> list[tuple[str, str, str]]:
        """(lesson, kind, at), oldest first."""
        with self._connect() as db:
            return db.execute("SELECT lesson, kind, at FROM events ORDER BY id").fetchall()

    def sessions(self) -> list[tuple[datetime, datetime, list[str]]]:
        """Work sessions: runs of events with gaps under 30 minutes: (start, end, lessons)."""
        out: list[tuple[datetime, datetime, list[str]]] = []
        for lesson, _, at in self.events():
            t = _parse(at)
            if out and (t - out[-1][1]).total_seconds() <= SESSION_GAP_S:
                start, _, lessons = out[-1]
                out[-1] = (start, t, lessons + ([lesson] if lesson not in lessons else []))
            else:
                out.append((t, t, [lesson]))
        return out

    def status(self) -> list[LessonStatus]:
        """Every lesson's status, in syllabus order."""
        by_id = {lesson.id: LessonStatus(lesson) for lesson in self.syllabus.lessons}
        for lesson_id, done in self.readings().items():
            if lesson_id in by_id:
                by_id[lesson_id].readings_done = set(done)
        for lesson_id, exercise, passed, _, _ in self.attempts():
            if lesson_id in by_id:
                by_id[lesson_id].attempted.add(exercise)
                if passed:
                    by_id[lesson_id].passed.add(exercise)
        last: dict[str, datetime] = {}
        for lesson_id, _, at in self.events():
            t = _parse(at)
            if lesson_id in last and lesson_id in by_id:
                gap = (t - last[lesson_id]).total_seconds()
                by_id[lesson_id].minutes += min(gap, SESSION_GAP_S) / 60
            last[lesson_id] = t
        for st in by_id.values():
            st.minutes += sum(st.lesson.readings[i].minutes or 0 for i in st.readings_done
                              if i < len(st.lesson.readings))
        return [by_id[lesson.id] for lesson in self.syllabus.lessons]
