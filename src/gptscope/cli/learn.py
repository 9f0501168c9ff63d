"""`gptscope learn ...` (the course) and `gptscope check` (check your exercises)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "learn", help="the course: syllabus, progress, lesson files, notebooks, site",
        description="Without a subcommand: the syllabus with your progress.")
    p.set_defaults(func=_show)
    sub = p.add_subparsers(dest="learn_command", metavar="SUBCOMMAND")

    s = sub.add_parser("start", help="copy a lesson's exercise stubs into your workspace")
    s.add_argument("lesson", help="lesson id (4, 04, 3b) or name (attention)")
    s.add_argument("--dir", default=".", help="workspace folder (default: current)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=_start)

    s = sub.add_parser("read", help="tick off reading N of a lesson")
    s.add_argument("lesson")
    s.add_argument("number", type=int, help="reading number as listed by `gptscope learn`")
    s.set_defaults(func=_read)

    s = sub.add_parser("note", help="add a note to a lesson")
    s.add_argument("lesson")
    s.add_argument("text")
    s.set_defaults(func=_note)

    s = sub.add_parser("export", help="write a Markdown study notebook of your progress")
    s.add_argument("--out", default=None, help="file (default: print to stdout)")
    s.set_defaults(func=_export)

    s = sub.add_parser("solution", help="print a lesson's reference solution")
    s.add_argument("lesson")
    s.set_defaults(func=_solution)

    s = sub.add_parser("notebooks", help="build one Jupyter notebook per lesson")
    s.add_argument("--out", required=True)
    s.add_argument("--with-solutions", action="store_true",
                   help="fill in the reference solutions (to prove the notebooks run)")
    s.add_argument("--lesson", action="append", default=None, help="only these lessons")
    s.set_defaults(func=_notebooks)

    s = sub.add_parser("site", help="render the course and your progress as static HTML")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_site)

    s = sub.add_parser("new-project", help="scaffold a reproducible experiment folder")
    s.add_argument("name")
    s.add_argument("--dir", default=".", help="parent folder (default: current)")
    s.set_defaults(func=_new_project)

    c = subparsers.add_parser(
        "check", help="check your exercises (records attempts in your progress)",
        description="TARGET: a lesson (04), a lesson and exercise (04/attention) or an "
                    "exercise id (attention). Without it: every lesson file in --dir.")
    c.add_argument("target", nargs="?", default=None)
    c.add_argument("--dir", default=".", help="workspace folder (default: current)")
    c.set_defaults(func=_check)


def _show(args: argparse.Namespace) -> int:
    from gptscope.course.progress import Progress

    progress = Progress()
    print(progress.syllabus.title)
    print()
    for st in progress.status():
        lesson = st.lesson
        mark = "x" if st.done else ("~" if st.started else " ")
        ex = f"{len(st.passed)}/{len(lesson.exercises)} exercises" if lesson.exercises else \
            "project"
        print(f"[{mark}] {lesson.id:>3}  {lesson.title}  ({len(st.readings_done)}/"
              f"{len(lesson.readings)} readings, {ex}, {st.minutes:.0f} min)")
        for i, r in enumerate(lesson.readings, 1):
            tick = "x" if i - 1 in st.readings_done else " "
            mins = f" ({r.minutes} min)" if r.minutes else ""
            print(f"        {i}. [{tick}] {r.kind}: {r.title}{mins}")
        for e in lesson.exercises:
            tick = "x" if e in st.passed else ("!" if e in st.attempted else " ")
            print(f"           [{tick}] {e}")
    print()
    print("gptscope learn start LESSON  |  gptscope check LESSON  |  gptscope learn read "
          "LESSON N")
    return 0


def _start(args: argparse.Namespace) -> int:
    from gptscope.course.exercises import start_lesson
    from gptscope.course.progress import Progress
    from gptscope.course.syllabus import load_syllabus

    lesson = load_syllabus().lesson(args.lesson)
    path = Path(args.dir) / f"{lesson.module_name}.py"
    existed = path.exists()
    path = start_lesson(args.lesson, args.dir, overwrite=args.force)
    Progress().mark_started(lesson.id)
    if existed and not args.force:
        print(f"{path} already exists; kept it (use --force to start over)")
    else:
        print(f"wrote {path}: fill in {', '.join(lesson.exercises) or 'your project notes'}")
    if lesson.exercises:
        print(f"then run: gptscope check {lesson.id} --dir {args.dir}")
    return 0


def _read(args: argparse.Namespace) -> int:
    from gptscope.course.progress import Progress

    lesson, idx = Progress().tick_reading(args.lesson, args.number)
    print(f"ticked lesson {lesson.id}, reading {args.number}: {lesson.readings[idx].title}")
    return 0


def _note(args: argparse.Namespace) -> int:
    from gptscope.course.progress import Progress

    lesson = Progress().add_note(args.lesson, args.text)
    print(f"noted on lesson {lesson.id}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gptscope.course.export import export_notebook, study_notebook
    from gptscope.course.progress import Progress

    if args.out:
        print(f"wrote {export_notebook(Progress(), args.out)}")
    else:
        sys.stdout.write(study_notebook(Progress()))
    return 0


def _solution(args: argparse.Namespace) -> int:
    from gptscope.course.exercises import solution_source
    from gptscope.course.syllabus import load_syllabus

    sys.stdout.write(solution_source(load_syllabus().lesson(args.lesson)))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from gptscope.course.notebooks import write_notebooks

    paths = write_notebooks(args.out, with_solutions=args.with_solutions, lessons=args.lesson)
    print(f"wrote {len(paths)} notebooks to {args.out}")
    return 0


def _site(args: argparse.Namespace) -> int:
    from gptscope.course.progress import Progress
    from gptscope.course.site import build_site

    index = build_site(args.out, Progress())
    print(f"wrote {index}")
    return 0


def _new_project(args: argparse.Namespace) -> int:
    from gptscope.course.projects import new_project

    path = new_project(args.name, args.dir)
    print(f"created {path}: edit config.json, then `python {path / 'run.py'}`")
    return 0


def _targets(target: str | None, directory: Path) -> list[tuple[object, str | None]]:
    from gptscope.course.syllabus import load_syllabus

    syl = load_syllabus()
    if target is None:
        found = [(lesson, None) for lesson in syl.lessons if lesson.exercises
                 and (directory / f"{lesson.module_name}.py").exists()]
        if not found:
            raise ValueError(f"no lesson files in {directory}; run `gptscope learn start "
                             "LESSON` first")
        return found
    if "/" in target:
        lesson_key, exercise = target.split("/", 1)
        return [(syl.lesson(lesson_key), exercise)]
    if target in syl.exercises:
        return [(syl.lesson_of(target), target)]
    return [(syl.lesson(target), None)]


def _check(args: argparse.Namespace) -> int:
    from gptscope.course.exercises import check_lesson_file
    from gptscope.course.progress import Progress

    directory = Path(args.dir)
    progress = Progress()
    all_passed = True
    for lesson, exercise in _targets(args.target, directory):
        path = directory / f"{lesson.module_name}.py"
        for result in check_lesson_file(lesson, path, exercise):
            if result.implemented:
                progress.record_attempt(result.exercise, result.passed, result.message)
            print(result)
            all_passed &= result.passed
    return 0 if all_passed else 1
