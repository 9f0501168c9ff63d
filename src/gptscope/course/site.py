"""The course as a static site: syllabus, lessons and the learner's progress, offline.

Every page is one self-contained HTML file (the ``gptscope.viz`` page shell plus inline CSS
and a few lines of JS: no network). ``index.html`` lists the lessons with progress bars;
``lessonNN_slug.html`` shows a lesson's goals, readings (ticked or not), exercises (passed,
tried, not started) and notes.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from gptscope.course.exercises import solution_module
from gptscope.course.progress import LessonStatus, Progress
from gptscope.course.syllabus import Lesson
from gptscope.utils.atomic import write_text
from gptscope.viz.html import page

_CSS = """
.course-bar{background:#eee;border-radius:4px;height:8px;width:160px;display:inline-block;
 vertical-align:middle;overflow:hidden}
.course-bar>span{display:block;height:100%;background:#1a7f37;width:0}
.course-lessons{list-style:none;padding:0}
.course-lessons li{padding:6px 0;border-bottom:1px solid #eee}
.course-done{color:#1a7f37}.course-tried{color:#b54708}.course-todo{color:#667085}
.course-meta{color:#667085;font-size:90%}
.course-filter{margin:8px 0}
"""

_JS = """
(function(){
  function ready(){
    var bars = document.querySelectorAll('.course-bar');
    bars.forEach(function(bar){
      var frac = parseFloat(bar.getAttribute('data-frac') || '0');
      var fill = bar.querySelector('span');
      if (fill) fill.style.width = Math.round(100 * Math.max(0, Math.min(1, frac))) + '%';
    });
    var box = document.getElementById('course-hide-done');
    if (box) box.addEventListener('change', function(){
      document.querySelectorAll('.course-lessons li[data-done="1"]').forEach(function(li){
        li.style.display = box.checked ? 'none' : '';
      });
    });
    document.body.setAttribute('data-course-ready', String(bars.length));
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', ready);
  else ready();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _page(title: str, body: str) -> str:
    extra = f"<style>{_CSS}</style>\n"
    doc = page(title, body + f"\n<script>{_JS}</script>")
    return doc.replace("</head>", extra + "</head>", 1)


def _fraction(st: LessonStatus) -> float:
    total = len(st.lesson.readings) + len(st.lesson.exercises)
    if not total:
        return 0.0
    return (len(st.readings_done) + len(st.passed & set(st.lesson.exercises))) / total


def _lesson_file(st: LessonStatus) -> str:
    return f"{st.lesson.module_name}.html"


def _index(progress: Progress, statuses: list[LessonStatus]) -> str:
    syl = progress.syllabus
    n_ex = len(syl.exercises)
    n_pass = sum(len(s.passed) for s in statuses)
    items = []
    for st in statuses:
        lesson = st.lesson
        frac = _fraction(st)
        cls = "course-done" if st.done else ("course-tried" if st.started else "course-todo")
        items.append(
            f'<li data-done="{int(st.done)}"><a href="{_e(_lesson_file(st))}">'
            f"Lesson {_e(lesson.id)}: {_e(lesson.title)}</a> "
            f'<span class="course-bar" data-frac="{frac:.3f}"><span></span></span> '
            f'<span class="{cls}">{len(st.readings_done)}/{len(lesson.readings)} readings, '
            f"{len(st.passed)}/{len(lesson.exercises)} exercises</span>"
            f'<div class="course-meta">{_e(lesson.builds)} '
            f"({_e(lesson.reading_time)}; about {st.minutes:.0f} min spent)</div>"
            "</li>")
    seeds = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in syl.seeds.items())
    body = (
        f"<h1>{_e(syl.title)}</h1>"
        f"<p>{n_pass} of {n_ex} exercises passed. Work in your own files: "
        "<code>gptscope learn start LESSON</code>, then <code>gptscope check LESSON</code>.</p>"
        '<label class="course-filter"><input type="checkbox" id="course-hide-done"> hide '
        "finished lessons</label>"
        f'<ul class="course-lessons">{"".join(items)}</ul>'
        f"<h2>Sources</h2><ul>{seeds}</ul>"
        f'<script type="application/json" id="course-data">'
        f"{json.dumps({'passed': n_pass, 'exercises': n_ex})}</script>"
    )
    return _page(syl.title, body)


def _summary(lesson: Lesson, exercise: str) -> str:
    """The first line of the exercise's docstring: what the learner builds."""
    doc = getattr(solution_module(lesson), exercise).__doc__ or ""
    return doc.strip().split("\n", 1)[0]


def _lesson_page(progress: Progress, st: LessonStatus) -> str:
    lesson, syl = st.lesson, progress.syllabus
    parts = ['<p><a href="index.html">&larr; all lessons</a></p>',
             f"<h1>Lesson {_e(lesson.id)}: {_e(lesson.title)}</h1>",
             f'<p class="course-meta">Follows: {_e(syl.follows(lesson))}</p>',
             f"<p>{_e(lesson.builds)}</p>",
             f'<p><span class="course-bar" data-frac="{_fraction(st):.3f}"><span></span></span>'
             f" about {st.minutes:.0f} min spent</p>"]
    if lesson.goals:
        parts.append("<h2>Learning goals</h2><ul>" + "".join(
            f"<li>{_e(g.text)} <span class='course-meta'>({_e(syl.source(g.seed))})</span></li>"
            for g in lesson.goals) + "</ul>")
    if lesson.readings:
        rows = []
        for i, r in enumerate(lesson.readings):
            tick = "&#9745;" if i in st.readings_done else "&#9744;"
            title = (f'<a href="{_e(r.link)}">{_e(r.title)}</a>' if r.link else _e(r.title))
            mins = f" ({r.minutes} min)" if r.minutes else ""
            rows.append(f"<li>{tick} <span class='course-meta'>{_e(r.kind)}</span> "
                        f"{title}{mins}</li>")
        parts.append(f"<h2>Readings</h2><p class='course-meta'>{_e(lesson.reading_time)}</p>"
                     "<ol>" + "".join(rows) + "</ol>"
                     f"<p class='course-meta'>Tick one off: <code>gptscope learn read "
                     f"{_e(lesson.id)} N</code></p>")
    if lesson.exercises:
        rows = []
        for ex in lesson.exercises:
            if ex in st.passed:
                state = "<span class='course-done'>passed</span>"
            elif ex in st.attempted:
                state = "<span class='course-tried'>tried</span>"
            else:
                state = "<span class='course-todo'>not started</span>"
            rows.append(f"<li><code>{_e(ex)}</code>: {state}<br><span class='course-meta'>"
                        f"{_e(_summary(lesson, ex))}</span></li>")
        parts.append("<h2>Exercises</h2><p class='course-meta'>Each is checked: <code>"
                     f"gptscope check {_e(lesson.id)}</code></p><ul>" + "".join(rows) + "</ul>")
    notes = progress.notes(lesson.id)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li><span class='course-meta'>{_e(at[:16].replace('T', ' '))}</span> "
            f"{_e(text)}</li>" for _, text, at in notes) + "</ul>")
    return _page(f"Lesson {lesson.id}: {lesson.title}", "\n".join(parts))


def build_site(out: str | Path, progress: Progress | None = None) -> Path:
    """Write the site into ``out``; return the path of ``index.html``."""
    progress = progress or Progress()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    statuses = progress.status()
    for st in statuses:
        write_text(out / _lesson_file(st), _lesson_page(progress, st))
    index = out / "index.html"
    write_text(index, _index(progress, statuses))
    return index
