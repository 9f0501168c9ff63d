"""A Markdown study notebook of the learner's progress: sessions, readings, exercises, notes.

Modelled on study notebooks kept by learners (seeds 002 and 003): a line per session, then
per lesson the readings ticked off as a checklist, the exercises and the notes.
"""

from __future__ import annotations

from pathlib import Path

from gptscope.course.progress import Progress
from gptscope.utils.atomic import write_text


def _link(title: str, link: str | None) -> str:
    return f"[{title}]({link})" if link else title


def study_notebook(progress: Progress) -> str:
    """The study notebook as Markdown text."""
    syl = progress.syllabus
    lines = [f"# Study notebook: {syl.title}", ""]
    sessions = progress.sessions()
    statuses = progress.status()
    n_passed = sum(len(s.passed) for s in statuses)
    lines += [f"{n_passed} of {len(syl.exercises)} exercises passed; "
              f"{sum(len(s.readings_done) for s in statuses)} readings ticked off.", ""]
    lines += ["## Sessions", ""]
    if not sessions:
        lines.append("No sessions yet.")
    for i, (start, end, lessons) in enumerate(sessions, 1):
        minutes = (end - start).total_seconds() / 60
        titles = ", ".join(f"lesson {lid} ({syl.lesson(lid).title})" for lid in lessons)
        lines.append(f"- Session {i}: {start:%Y-%m-%d %H:%M} UTC, {minutes:.0f} min: {titles}")
    lines.append("")
    notes = progress.notes()
    attempts = progress.attempts()
    for st in statuses:
        lesson = st.lesson
        lesson_notes = [n for n in notes if n[0] == lesson.id]
        if not (st.started or lesson_notes):
            continue
        lines += [f"## Lesson {lesson.id}: {lesson.title}", "",
                  f"Time spent: about {st.minutes:.0f} min.", ""]
        if lesson.readings:
            lines += ["### Readings", ""]
            for i, r in enumerate(lesson.readings):
                mark = "x" if i in st.readings_done else " "
                mins = f" ({r.minutes} min)" if r.minutes else ""
                lines.append(f"- [{mark}] {_link(r.title, r.link)}{mins}")
            lines.append("")
        if lesson.exercises:
            lines += ["### Exercises", ""]
            for ex in lesson.exercises:
                tries = [a for a in attempts if a[1] == ex]
                mark = "x" if ex in st.passed else " "
                if tries:
                    last = tries[-1]
                    info = (f" ({len(tries)} attempt{'s' if len(tries) > 1 else ''}; last "
                            f"{last[4]}: {last[3]})")
                else:
                    info = ""
                lines.append(f"- [{mark}] `{ex}`{info}")
            lines.append("")
        if lesson_notes:
            lines += ["### Notes", ""]
            lines += [f"- {at[:16].replace('T', ' ')}: {text}" for _, text, at in lesson_notes]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_notebook(progress: Progress, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, study_notebook(progress))
    return out
