"""The syllabus as data: lessons in order, their readings, goals and exercises.

One JSON file (``syllabus.json``, next to this module) feeds the CLI, the notebooks and the
site. Readings' titles, links and minutes come from the seed syllabi; ``None`` where a seed
names a reading without a link or a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Reading:
    """One reading or video: ``kind`` is conceptual, technical or optional."""

    title: str
    link: str | None
    minutes: int | None
    kind: str
    seed: str


@dataclass(frozen=True)
class Goal:
    """A learning goal, with the seed it comes from."""

    text: str
    seed: str


@dataclass(frozen=True)
class Lesson:
    """A lesson: ``id`` is "01" ... "14" (and "03b", "03c", "05b", "05c", "06b", "06c", "06d",
    "13b"); ``slug`` names its workspace file."""

    id: str
    slug: str
    title: str
    follows: list[str]
    builds: str
    readings: list[Reading]
    goals: list[Goal]
    exercises: list[str]
    topics: list[str] = field(default_factory=list)

    @property
    def module_name(self) -> str:
        """The learner's file (without .py), e.g. ``lesson04_attention``."""
        return f"lesson{self.id}_{self.slug}"

    @property
    def reading_minutes(self) -> int:
        return sum(r.minutes or 0 for r in self.readings)

    @property
    def reading_time(self) -> str:
        """How long the readings take, as a learner reads it; the seeds leave some times
        out, and an unknown time is said, not shown as 0."""
        if not self.readings:
            return "no readings"
        unknown = sum(r.minutes is None for r in self.readings)
        if unknown == len(self.readings):
            return f"{len(self.readings)} readings, times not given"
        if unknown:
            return f"at least {self.reading_minutes} min of reading ({unknown} not timed)"
        return f"{self.reading_minutes} min of reading"


@dataclass(frozen=True)
class Syllabus:
    title: str
    seeds: dict[str, str]
    lessons: list[Lesson]

    def source(self, ref: str) -> str:
        """A seed reference as a learner reads it: "000 week 4" -> the seed's name, "week
        4" (the ids are the syllabus's own bookkeeping)."""
        key, _, rest = ref.partition(" ")
        name = self.seeds.get(key)
        if name is None:
            return ref
        return f"{name}: {rest}" if rest else name

    def follows(self, lesson: Lesson) -> str:
        """What ``lesson`` follows in the seeds, by name."""
        return "; ".join(self.source(ref) for ref in lesson.follows)

    def lesson(self, key: str | int) -> Lesson:
        """A lesson by id ("4", "04", "3b"), slug ("attention") or module name."""
        k = str(key).strip().lower()
        if k.startswith("lesson"):
            k = k[len("lesson"):].split("_", 1)[0]
        for lesson in self.lessons:
            if k in (lesson.id, lesson.id.lstrip("0"), lesson.slug, lesson.module_name):
                return lesson
        known = ", ".join(lesson.id for lesson in self.lessons)
        raise ValueError(f"no lesson {key!r}; lessons are {known} (or their names, e.g. "
                         "'attention')")

    def lesson_of(self, exercise: str) -> Lesson:
        """The lesson an exercise belongs to."""
        for lesson in self.lessons:
            if exercise in lesson.exercises:
                return lesson
        raise ValueError(f"no exercise {exercise!r}; see `gptscope learn` for the list")

    @property
    def exercises(self) -> list[str]:
        return [e for lesson in self.lessons for e in lesson.exercises]


@lru_cache(maxsize=1)
def load_syllabus() -> Syllabus:
    """The course syllabus, read from the package's ``syllabus.json``."""
    text = resources.files("gptscope.course").joinpath("syllabus.json").read_text("utf-8")
    data = json.loads(text)
    lessons = [
        Lesson(
            id=d["id"], slug=d["slug"], title=d["title"], follows=list(d["follows"]),
            builds=d["builds"],
            readings=[Reading(r["title"], r["link"], r["minutes"], r["kind"], r["seed"])
                      for r in d["readings"]],
            goals=[Goal(g["text"], g["seed"]) for g in d["goals"]],
            exercises=list(d["exercises"]), topics=list(d.get("topics", [])),
        )
        for d in data["lessons"]
    ]
    return Syllabus(title=data["title"], seeds=dict(data["seeds"]), lessons=lessons)
