"""One Jupyter notebook per lesson, generated from the syllabus and the exercise sources.

Markdown cells come from the syllabus (goals, readings); code cells hold the imports, each
exercise's stub (or, with ``with_solutions``, the reference solution) and a
``gs.course.check(...)`` call that shows a green or red box. The notebook JSON (nbformat 4)
is written directly, so building needs no extra package; running needs Jupyter.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from gptscope.course.exercises import solution_source, stub_source
from gptscope.course.syllabus import Lesson, load_syllabus
from gptscope.utils.atomic import write_text


def _lines(text: str) -> list[str]:
    parts = text.splitlines(keepends=True)
    if parts and parts[-1].endswith("\n"):
        parts[-1] = parts[-1][:-1]
    return parts


def _md(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def _code(text: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": _lines(text)}


def _split(source: str) -> tuple[str, dict[str, str], str]:
    """(imports, {function name: source}, docstring) of a lesson module."""
    tree = ast.parse(source)
    lines = source.splitlines()
    imports = [ast.get_source_segment(source, n) or "" for n in tree.body
               if isinstance(n, (ast.Import, ast.ImportFrom)) and
               not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    funcs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            funcs[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    return "\n".join(imports), funcs, ast.get_docstring(tree) or ""


def lesson_intro(lesson: Lesson) -> str:
    """The markdown header of a lesson: what it builds, goals, readings."""
    out = [f"# Lesson {lesson.id}: {lesson.title}", "",
           f"*Follows:* {load_syllabus().follows(lesson)}", "", lesson.builds, "",
           f"*Readings:* {lesson.reading_time}.", ""]
    if lesson.goals:
        out += ["## Learning goals", ""]
        out += [f"- {g.text} *({load_syllabus().source(g.seed)})*" for g in lesson.goals]
        out.append("")
    if lesson.readings:
        out += ["## Readings", ""]
        for i, r in enumerate(lesson.readings, 1):
            title = f"[{r.title}]({r.link})" if r.link else r.title
            mins = f" ({r.minutes} min)" if r.minutes else ""
            out.append(f"{i}. {r.kind}: {title}{mins}")
        out += ["", f"Tick one off with `gptscope learn read {lesson.id} N`."]
    return "\n".join(out)


def build_notebook(lesson: Lesson, with_solutions: bool = False) -> dict[str, Any]:
    """The notebook of one lesson as a JSON-ready dict (nbformat 4.5)."""
    cells = [_md(lesson_intro(lesson))]
    if lesson.exercises:
        stub_imports, stubs, doc = _split(stub_source(lesson))
        _, solutions, _ = _split(solution_source(lesson))
        setup = ["import torch", "", "import gptscope as gs",
                 "import gptscope.course  # makes gs.course available"]
        if stub_imports:
            setup += ["", stub_imports]
        cells.append(_md(doc))
        cells.append(_code("\n".join(setup)))
        if with_solutions:
            helpers = [src for name, src in solutions.items() if name.startswith("_")]
            if helpers:
                cells.append(_code("\n\n\n".join(helpers)))
        extras = [n for n in stubs if n not in lesson.exercises and not n.startswith("_")]
        # Given tools come before the exercises that may call them; explorations after.
        for name in [n for n in extras if not n.startswith("explore")]:
            cells.append(_md(f"## Given: `{name}`"))
            cells.append(_code(stubs[name]))
        for ex in lesson.exercises:
            src = solutions[ex] if with_solutions else stubs[ex]
            cells.append(_md(f"## Exercise `{ex}`\n\nFill in the function, run the cell, "
                             "then run the check below it."))
            cells.append(_code(src))
            cells.append(_code(f'gs.course.check("{ex}", {ex}, record=True)'))
        for name in [n for n in extras if n.startswith("explore")]:
            cells.append(_md(f"## Given: `{name}`"))
            cells.append(_code(stubs[name]))
            cells.append(_code(
                f"try:\n    shown = {name}()\nexcept NotImplementedError:\n"
                '    shown = print("implement the exercises above first")\nshown'))
    else:
        cells.append(_md(
            "## Your project\n\nScaffold a reproducible experiment folder with\n\n"
            "    gptscope learn new-project my_experiment\n\nthen edit its `config.json`, "
            "run `python my_experiment/run.py`, and write up the question, method and "
            "result in its README."))
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def _with_ids(nb: dict[str, Any], lesson: Lesson) -> dict[str, Any]:
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"l{lesson.id}-{i}"
    return nb


def write_notebooks(out: str | Path, with_solutions: bool = False,
                    lessons: list[str] | None = None) -> list[Path]:
    """Write ``lessonNN_slug.ipynb`` for every lesson (or the given ones) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    syl = load_syllabus()
    chosen = [syl.lesson(k) for k in lessons] if lessons else syl.lessons
    paths = []
    for lesson in chosen:
        nb = _with_ids(build_notebook(lesson, with_solutions), lesson)
        path = out / f"{lesson.module_name}.ipynb"
        write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths
