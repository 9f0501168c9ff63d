"""The course: syllabus, exercises with checks that name mistakes, progress, notebooks, site.

Fourteen lessons (plus 3b, 3c, 5b, 5c, 6b, 6c, 6d and 13b) follow the seed syllabi; each lesson's
exercises are functions the learner writes and the course checks against gptscope's own
implementation, naming the likely mistake when an answer is wrong ("scores not divided by
sqrt(d_head)").

In a notebook::

    import gptscope as gs
    import gptscope.course  # makes gs.course available

    gs.course.check("softmax", my_softmax)       # a green or red box; .passed, .message

From the shell::

    gptscope learn                      # syllabus with your progress
    gptscope learn start 4 --dir work   # work/lesson04_attention.py: stubs to fill in
    gptscope check 4 --dir work         # check them (attempts are recorded)
    gptscope learn read 4 1             # tick off a reading
    gptscope learn note 4 "text"        # keep a note
    gptscope learn export --out notes.md
    gptscope learn notebooks --out nb   # one Jupyter notebook per lesson
    gptscope learn site --out site      # static HTML of the course and your progress
    gptscope learn new-project NAME     # a reproducible experiment folder (lesson 14)
"""

from gptscope.course.exercises import check, start_lesson, stub_source
from gptscope.course.result import CheckResult
from gptscope.course.syllabus import Lesson, Reading, Syllabus, load_syllabus

__all__ = ["CheckResult", "Lesson", "Reading", "Syllabus", "check", "load_syllabus",
           "start_lesson", "stub_source"]
