"""CheckResult: what a check says about a learner's answer."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """The outcome of checking one exercise.

    passed: every case matched the reference. message: one line; on failure it names the
    likely mistake. details: the cases tried (or the first failing one), for the curious.
    """

    exercise: str
    passed: bool
    message: str
    details: list[str] = field(default_factory=list)
    implemented: bool = True

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        lines = [f"[{mark}] {self.exercise}: {self.message}"]
        lines += [f"    {d}" for d in self.details]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color, bg = ("#1a7f37", "#e6f4ea") if self.passed else ("#b42318", "#fdecea")
        mark = "&#10004; passed" if self.passed else "&#10008; not yet"
        details = "".join(f"<li>{html.escape(d)}</li>" for d in self.details)
        return (
            f'<div style="border:2px solid {color};background:{bg};padding:8px 12px;'
            f'border-radius:6px;font-family:sans-serif">'
            f"<b style='color:{color}'>{html.escape(self.exercise)}: {mark}</b>"
            f"<div>{html.escape(self.message)}</div>"
            + (f"<ul style='margin:4px 0'>{details}</ul>" if details else "")
            + "</div>"
        )
