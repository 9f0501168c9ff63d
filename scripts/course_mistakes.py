"""Measure the course's checks on the mistake suite: how many wrong answers fail, how many
of those are named (a known mistake or a structural one) rather than only located, and
whether every right answer written another way passes.

    python scripts/course_mistakes.py            # a table per exercise and the totals
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gptscope.course import check  # noqa: E402
from tests.course.mutants import MUTANTS  # noqa: E402
from tests.course.mutants_assistant import RIGHT_ANSWERS as ASSISTANT_RIGHT  # noqa: E402
from tests.course.mutants_scaling import RIGHT_ANSWERS as SCALING_RIGHT  # noqa: E402
from tests.course.right_answers import RIGHT  # noqa: E402

# A failure only located: the message says where the answer differs, not what the mistake is.
LOCATED = ("differs from the right answer", "holds nan or inf", " has shape ")


def main() -> None:
    totals: Counter[str] = Counter()
    print(f"{'exercise':28} {'mistakes':>8} {'caught':>7} {'named':>6} {'right':>6} {'pass':>5}")
    for exercise, items in MUTANTS.items():
        caught = named = 0
        for fn, _ in items:
            result = check(exercise, fn)
            if not result.passed:
                caught += 1
                named += not any(part in result.message for part in LOCATED)
        rights = [*RIGHT.get(exercise, []), *ASSISTANT_RIGHT.get(exercise, []),
                  *SCALING_RIGHT.get(exercise, [])]
        passing = sum(check(exercise, fn).passed for fn in rights)
        totals.update(mistakes=len(items), caught=caught, named=named, right=len(rights),
                      passing=passing)
        print(f"{exercise:28} {len(items):8} {caught:7} {named:6} {len(rights):6} {passing:5}")
    t = totals
    print(f"\n{t['caught']} of {t['mistakes']} mistakes caught "
          f"({t['caught'] / t['mistakes']:.1%}); {t['named']} of those named "
          f"({t['named'] / max(t['caught'], 1):.1%}), the rest shown with the failing case; "
          f"{t['passing']} of {t['right']} right answers written another way pass")


if __name__ == "__main__":
    main()
