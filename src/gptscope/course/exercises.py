"""Exercises: check a function, make a lesson's stubs, import a learner's workspace file.

The reference solutions (``gptscope.course.solutions``) are the one source of every
exercise's signature and docstring; a stub is the solution with each exercise's body
replaced by ``raise NotImplementedError``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from gptscope.course.checks import CHECKS
from gptscope.course.result import CheckResult
from gptscope.course.syllabus import Lesson, load_syllabus
from gptscope.utils.atomic import write_text


def check(exercise: str, fn: Callable[..., Any], record: bool = False) -> CheckResult:
    """Check ``fn`` as the answer to ``exercise`` (e.g. ``check("softmax", my_softmax)``).

    ``record=True`` also logs the attempt in the learner's progress database (as
    ``gptscope check`` does); unimplemented stubs are not logged.
    """
    if exercise not in CHECKS:
        known = ", ".join(sorted(CHECKS))
        raise ValueError(f"no exercise {exercise!r}; exercises are: {known}")
    result = CHECKS[exercise](fn)
    if record and result.implemented:
        from gptscope.course.progress import Progress

        Progress().record_attempt(exercise, result.passed, result.message)
    return result


def solution_source(lesson: Lesson) -> str:
    """The reference solution file of a lesson, as text."""
    return resources.files("gptscope.course.solutions").joinpath(
        f"{lesson.module_name}.py").read_text("utf-8")


def solution_module(lesson: Lesson) -> ModuleType:
    return importlib.import_module(f"gptscope.course.solutions.{lesson.module_name}")


def stub_source(lesson: Lesson) -> str:
    """The learner's starting file: the solution with each exercise's body removed.

    Private helpers (``_name``) of the solution are dropped; other code is kept as given.
    """
    source = solution_source(lesson)
    tree = ast.parse(source)
    lines = source.splitlines()
    cut: list[tuple[int, int, list[str] | None]] = []  # (start, end) 1-based, replacement
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno])
        end = node.end_lineno or node.lineno
        # Blank lines after a dropped helper go too, so spacing stays PEP 8.
        if node.name.startswith("_"):
            while end < len(lines) and not lines[end].strip():
                end += 1
            cut.append((start, end, []))
        elif node.name in lesson.exercises:
            body0 = node.body[0]
            has_doc = isinstance(body0, ast.Expr) and isinstance(
                getattr(body0, "value", None), ast.Constant) and isinstance(
                body0.value.value, str)
            keep_until = body0.end_lineno if has_doc else node.body[0].lineno - 1
            indent = " " * (node.col_offset + 4)
            cut.append((keep_until + 1, end,
                        [f"{indent}raise NotImplementedError  # your code here"]))
    for start, end, repl in sorted(cut, reverse=True):
        lines[start - 1:end] = repl or []
    # The solution's imports stay: the learner will want torch, F and math too.
    return "\n".join(lines).rstrip("\n") + "\n"


def start_lesson(lesson_key: str, directory: str | Path, overwrite: bool = False) -> Path:
    """Copy a lesson's stubs into ``directory``; return the file (kept if it exists)."""
    lesson = load_syllabus().lesson(lesson_key)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{lesson.module_name}.py"
    if path.exists() and not overwrite:
        return path
    write_text(path, stub_source(lesson))
    return path


def load_learner_module(path: str | Path) -> ModuleType:
    """Import the learner's file fresh (edits since the last import are picked up)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; run `gptscope learn start LESSON` first")
    name = f"_gptscope_learner_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ValueError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    return module


def check_lesson_file(lesson: Lesson, path: str | Path,
                      exercise: str | None = None) -> list[CheckResult]:
    """Check the exercises (or one) of ``lesson`` in the learner's file at ``path``."""
    module = load_learner_module(path)
    names = [exercise] if exercise else lesson.exercises
    results = []
    for name in names:
        if name not in lesson.exercises:
            raise ValueError(f"lesson {lesson.id} has no exercise {name!r}; it has "
                             f"{', '.join(lesson.exercises)}")
        fn = getattr(module, name, None)
        if fn is None:
            results.append(CheckResult(name, False, f"{Path(path).name} defines no function "
                                       f"{name!r}", implemented=False))
            continue
        results.append(check(name, fn))
    return results
