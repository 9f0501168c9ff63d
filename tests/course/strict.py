"""The strict form of the mutant test shared by the lesson files that hold their own mutants:
a wrong answer is told its own mistake and no other one on the list."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gptscope.course import check


def assert_named_alone(exercise: str, mutant: Callable, phrase: str,
                       mutants: Iterable[tuple[Callable, str]], ignore: Iterable[str] = ()
                       ) -> None:
    """``mutant`` fails ``exercise``'s check with ``phrase`` in its message, no other phrase
    of ``mutants`` (except those in ``ignore``), and no "more than one known mistake"."""
    result = check(exercise, mutant)
    assert not result.passed and phrase in result.message, f"{mutant.__name__}: {result}"
    others = {p for _, p in mutants if p != phrase and p not in phrase and p not in ignore}
    wrongly = [p for p in others if p in result.message]
    assert not wrongly, f"{mutant.__name__} was also told {wrongly}: {result.message!r}"
    assert "more than one known mistake" not in result.message
