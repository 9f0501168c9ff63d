"""The structural diagnosis: each transformation is named only when it reproduces the
learner's output, and an unexplained difference is located."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.course.checks._common import Mismatch, compare
from gptscope.course.checks._diagnose import explain, locate, name_factor
from gptscope.model import functional as gf

WANT = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
AXES = ("batch", "pos", "d_model")


def _explain(got: torch.Tensor, want: torch.Tensor = WANT) -> str | None:
    return explain(got, want, atol=1e-6, rtol=1e-5, axes=AXES)


@pytest.mark.parametrize("got,phrase", [
    (-WANT, "the sign is flipped"),
    (WANT / math.sqrt(8), "times 0.3536 = 1/sqrt(8)"),
    (WANT * 4, "times 4"),
    (WANT + 0.25, "plus a constant (0.25)"),
    (WANT + WANT.amax(-1, keepdim=True), "the same along axis 2 (d_model)"),
    (WANT - WANT.mean(0, keepdim=True), "the same along axis 0 (batch)"),
    (WANT.transpose(0, 1), "axes are swapped"),
    (WANT.transpose(1, 2).contiguous(), "axis 1 (pos) holds what belongs in axis 2 (d_model)"),
    (torch.cat([WANT[:, :1], WANT[:, :-1]], 1), "shifted by one along axis 1 (pos)"),
])
def test_each_transformation_is_named(got, phrase):
    found = _explain(got)
    assert found is not None and phrase in found, found


def test_a_per_row_scale_is_named():
    want = WANT.abs() + 0.1
    got = want / want.sum(0, keepdim=True)  # normalised along the wrong axis
    assert "scaled by a factor that is the same along axis 0 (batch)" in _explain(got, want)


def test_noise_and_single_numbers_are_not_explained():
    noise = WANT + 1e-2 * torch.randn(WANT.shape, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64)
    assert _explain(noise) is None
    # a factor fitted to one number explains any number: no evidence, no name
    assert _explain(torch.tensor(2.0), torch.tensor(1.0)) is None


def test_masks_inverted_and_moved_by_a_diagonal():
    want = gf.causal_mask(4, 6)
    assert "inverted" in explain(~want, want, 0, 0)
    strict = torch.ones(4, 6, dtype=torch.bool).tril(1)
    assert "diagonal 1, the right one is on diagonal 2" in explain(strict, want, 0, 0)
    assert "axes are swapped" in explain(want.T.contiguous(), want, 0, 0)


def test_locate_names_the_slice_and_the_first_entry():
    got = WANT.clone()
    got[1, 2] += 1.0
    lines = locate(got, WANT, 1e-6, 1e-5, AXES)
    assert "only index 1 of axis 0 (batch) differ (1 of 3)" in lines
    assert "only index 2 of axis 1 (pos) differ (1 of 4)" in lines
    assert any(line.startswith("first difference at index [1, 2, 0]") for line in lines)


def test_name_factor_recognises_the_usual_scales():
    assert name_factor(1 / math.sqrt(8)) == "0.3536 = 1/sqrt(8)"
    assert name_factor(1 / math.sqrt(64)) == "0.125 = 1/8"  # the simpler name wins
    assert name_factor(8.0) == "8"
    assert name_factor(0.37) == "0.37"


def test_compare_prefers_a_known_mistake_and_reports_ambiguity():
    known = {"divided by d_head instead of sqrt(d_head)": lambda: WANT / 2}
    with pytest.raises(Mismatch, match="instead of sqrt"):
        compare(WANT / 2, WANT, "case", known)
    both = {"mistake A": lambda: WANT * 3, "mistake B": lambda: WANT * 3}
    with pytest.raises(Mismatch, match="more than one known mistake: mistake A; or mistake B"):
        compare(WANT * 3, WANT, "case", both)
    # a variant this case cannot tell from the right answer is never named
    with pytest.raises(Mismatch, match="sign is flipped"):
        compare(-WANT, WANT, "case", {"same as right": lambda: WANT})


@pytest.mark.parametrize("got,phrase", [
    ([[True, False]], "returned a list, not a tensor"),
    (1.5, "returned a float, expected a tensor"),
    (None, "did you forget the `return`"),
    (torch.ones(3, 4, 5, dtype=torch.long), "expected floating point values"),
])
def test_compare_rejects_wrong_kinds_before_values(got, phrase):
    with pytest.raises(Mismatch, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        compare(got, WANT, "case")


def test_int_ids_where_floats_would_be_wrong():
    with pytest.raises(Mismatch, match="expected integers"):
        compare(torch.tensor([1.0, 2.0]), torch.tensor([1, 2]), "case")


def _cases(answer, right, mistakes, sizes=(3, 5, 2)):
    """A check over three cases of the given sizes: the answer and the mistakes are
    functions of the case's input vector."""
    from gptscope.course.checks._common import run_cases

    def one_case(n: int) -> str:
        x = torch.arange(1, n + 1, dtype=torch.float64)
        compare(answer(x), right(x), f"n={n}",
                {m: (lambda f=f: f(x)) for m, f in mistakes.items()})
        return f"n={n}"
    return lambda: run_cases(sizes, one_case)


def test_verdict_names_the_mistake_that_explains_most_cases():
    from gptscope.course.checks._common import Mismatch

    # "B" matches only where x has 5 entries; "A" matches everywhere: A is named
    mistakes = {"A": lambda x: 2 * x, "B": lambda x: 2 * x if len(x) == 5 else -x}
    with pytest.raises(Mismatch, match="^A$"):
        _cases(lambda x: 2 * x, lambda x: x, mistakes)()


def test_verdict_keeps_a_refuted_name_as_a_clue_and_shows_the_smallest_case():
    from gptscope.course.checks._common import Mismatch

    def answer(x):  # equals mistake "A" only on n=5; on n=3 and n=2 it is neither
        return 2 * x if len(x) == 5 else x + 0.5 * x ** 2

    with pytest.raises(Mismatch) as failure:
        _cases(answer, lambda x: x, {"A": lambda x: 2 * x})()
    assert failure.value.message.startswith("n=2: your answer differs")
    assert any("(n=5)" in d and d.endswith(": A") for d in failure.value.details)


def test_a_crash_on_a_later_case_keeps_the_verdict_on_the_earlier_ones():
    from gptscope.course.checks._common import Mismatch, call

    def answer(x):
        if len(x) == 5:
            raise KeyError("oops")
        return -x

    with pytest.raises(Mismatch, match="sign is flipped"):
        _cases(lambda x: call(answer, x), lambda x: x, {})()
