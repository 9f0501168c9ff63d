"""Wrong and right answers to the new exercises of lessons 7 and 8.

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

MUTANTS: dict[str, list] = {}
RIGHT_ANSWERS: dict[str, list] = {}
