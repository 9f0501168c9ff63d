"""Lessons 7 and 8's decoding, tokenizer and attribution exercises at depth: each known
mistake is told its own message and no other, right answers written in other ways pass,
the references agree with small cases worked by hand and with the library, and the stubs
say "not implemented"."""

from __future__ import annotations

import math

import pytest
import torch

from gptscope.course import load_syllabus
from gptscope.course.checks import attribution, real_models
from gptscope.course.checks.interp import interp_model
from gptscope.course.solutions import lesson07_real_models as s07
from gptscope.course.solutions import lesson08_logit_lens as s08
from gptscope.interp.attribution import dla
from gptscope.interp.neurons import top_activating_examples

from .mutants_real_models import MUTANTS, RIGHT_ANSWERS

SYLLABUS = load_syllabus()
NEW = {"07": ["kv_cache_attention", "beam_search", "bpe_pair_counts"],
       "08": ["direct_logit_attribution", "top_activating_examples"]}
EXERCISES = [ex for names in NEW.values() for ex in names]
MUTANT_CASES = [(ex, fn, phrase) for ex in EXERCISES for fn, phrase in MUTANTS[ex]]
RIGHT_CASES = [(ex, fn) for ex in EXERCISES for fn in RIGHT_ANSWERS[ex]]


def test_the_lessons_list_the_exercises_with_mutants_and_right_answers():
    for lesson, names in NEW.items():
        assert SYLLABUS.lesson(lesson).exercises[-len(names):] == names
    for ex in EXERCISES:
        assert len(MUTANTS[ex]) >= 5, ex
        assert len(RIGHT_ANSWERS[ex]) >= 2, ex


def test_every_named_mistake_has_a_mutant():
    messages = [v for module in (real_models, attribution) for k, v in vars(module).items()
                if k.isupper() and isinstance(v, str)]
    phrases = [p for ex in EXERCISES for _, p in MUTANTS[ex]]
    missing = [m for m in messages if not any(p in m for p in phrases)]
    assert not missing, missing


# -- the references, by hand ------------------------------------------------------------------

def test_kv_cache_attention_by_hand():
    # d_head 1, one cached position (k 0, v 1), two new: q [ln 3, 0], k [1, 7], v [5, 9].
    # Query 0 sits at absolute position 1: scores (0, ln 3) over keys 0-1, weights (1/4,
    # 3/4), z = 1/4 + 15/4 = 4. Query 1 (position 2) has q = 0: equal scores over all three
    # keys, z = (1 + 5 + 9) / 3 = 5. The cache grows to k (0, 1, 7), v (1, 5, 9).
    def t(*xs):
        return torch.tensor(xs, dtype=torch.float64).view(1, 1, -1, 1)
    z, (k_all, v_all) = s07.kv_cache_attention(t(math.log(3), 0.0), t(1.0, 7.0), t(5.0, 9.0),
                                               (t(0.0), t(1.0)))
    assert torch.allclose(z.flatten(), torch.tensor([4.0, 5.0], dtype=torch.float64))
    assert k_all.flatten().tolist() == [0.0, 1.0, 7.0]
    assert v_all.flatten().tolist() == [1.0, 5.0, 9.0]


def test_beam_search_by_hand():
    # After [10]: 11 has p 0.5, 3 has 0.4; after [10, 11] the best is 0 (0.3); after
    # [10, 3], 7 (0.9). Greedy takes 11 then 0: 0.5 * 0.3 = 0.15. A beam of 2 also keeps
    # [10, 3] and finds 0.4 * 0.9 = 0.36, so it returns [10, 3, 7] with score log 0.36.
    lm = real_models._TableLM(12, 0, table={(10,): {11: 0.5, 3: 0.4}, (10, 3): {7: 0.9},
                                            (10, 11): {0: 0.3}})
    seq, score = s07.beam_search(lm, [10], 2, 2)
    assert seq == [10, 3, 7] and score == pytest.approx(math.log(0.36))
    seq, score = s07.beam_search(lm, [10], 1, 2)
    assert seq == [10, 11, 0] and score == pytest.approx(math.log(0.15))
    assert real_models.reference_beam(lm, [10], 2, 2, None) == s07.beam_search(lm, [10], 2, 2)


def test_bpe_pair_counts_by_hand():
    # (10, 11) twice in the first sequence; (11, 10) once there and once in the second;
    # (257, 257) twice, overlapping. No (11, 11) or (10, 257): those would span sequences.
    got = s07.bpe_pair_counts([[10, 11, 10, 11], [11, 10], [257, 257, 257], [12]])
    assert got == {(10, 11): 2, (11, 10): 2, (257, 257): 2}
    assert s07.bpe_pair_counts([]) == {}


def test_dla_components_add_up_to_the_logit_difference():
    # The frozen-scale split is exact: components + biases (b_O, ln_final.b, b_U) equal the
    # model's own logit[correct] - logit[incorrect] at the position read.
    model = interp_model(4, 2)
    tokens = torch.randint(0, 20, (3, 6), generator=torch.Generator().manual_seed(4))
    correct, incorrect = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    parts = s08.direct_logit_attribution(model, tokens, correct, incorrect, pos=2)
    total = parts["embed"] + parts["heads"].sum((1, 2)) + parts["mlp"].sum(1)
    with torch.no_grad():
        logits = model(tokens)[:, 2]
    diff = logits.gather(1, correct[:, None]) - logits.gather(1, incorrect[:, None])
    bias = dla(model, tokens, correct, incorrect, 2).bias_per_example
    assert torch.allclose(total + bias, diff.flatten(), atol=1e-4)
    flipped = s08.direct_logit_attribution(model, tokens, incorrect, correct, pos=2)
    assert torch.allclose(flipped["heads"], -parts["heads"], atol=1e-6)


class _FixedActivations:
    """Stands in for a model whose layer 0 neuron 0 fires ``acts`` [batch, pos]."""

    def __init__(self, acts):
        self.acts = torch.tensor(acts)

    def run_with_cache(self, tokens):
        return None, {"blocks.0.mlp.hook_post": self.acts[..., None]}


def test_top_activating_examples_by_hand():
    # Activations [[0.1, 0.9, 0.3], [0.9, 0.2, 0.5]]: the top 3 are the two 0.9s, the
    # earlier (batch 0, position 1) first, then (1, 0), then 0.5 at (1, 2).
    model = _FixedActivations([[0.1, 0.9, 0.3], [0.9, 0.2, 0.5]])
    values, where = s08.top_activating_examples(model, torch.zeros(2, 3).long(), 0, 0, 3)
    assert torch.allclose(values, torch.tensor([0.9, 0.9, 0.5]))
    assert where.tolist() == [[0, 1], [1, 0], [1, 2]]


def test_the_top_k_reference_agrees_with_the_library_without_ties():
    model = interp_model(0, 2)
    tokens = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = torch.arange(4)  # equal first tokens would tie at position 0
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    values, where = attribution._ranked(cache["blocks.1.mlp.hook_post"][..., 5], 6)
    found = top_activating_examples(model, tokens, "blocks.1.mlp.hook_post", unit=5, k=6)
    # The library reads the hook on its fused path: the same values to float32 rounding.
    assert torch.allclose(values, torch.tensor([ex.value for ex in found]), atol=1e-5)
    assert where.tolist() == [[ex.seq, ex.pos] for ex in found]
