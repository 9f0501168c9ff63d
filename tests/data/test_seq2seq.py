"""The seq2seq tasks' ground truth: targets, alignments, disjoint deterministic splits."""

import pytest
import torch

from gptscope.data.seq2seq import (
    ADJECTIVES,
    BOS,
    EOS,
    NOUNS,
    PAD,
    VERBS,
    CopySeqTask,
    TranslationTask,
    _render,
)


def _rows(split):
    return {tuple(r) for r in split.src.tolist()}


def test_copy_targets_are_the_source_and_align_diagonally():
    task = CopySeqTask(max_len=6, n_train=300, n_test=50, seed=3)
    for split in (task.train, task.test):
        n = split.src_mask.sum(1)
        for i in range(len(split)):
            k = int(n[i])
            assert split.tgt[i, 0] == BOS and split.tgt[i, k + 1] == EOS
            assert torch.equal(split.tgt[i, 1:k + 1], split.src[i, :k])
            assert split.align[i, 1:k + 1].tolist() == list(range(k))
            assert (split.src[i, k:] == PAD).all() and (split.align[i, k + 1:] == -1).all()
    assert not _rows(task.train) & _rows(task.test)
    again = CopySeqTask(max_len=6, n_train=300, n_test=50, seed=3)
    assert torch.equal(again.train.src, task.train.src)
    with pytest.raises(ValueError, match="more than half"):
        CopySeqTask(n_symbols=2, max_len=3, n_train=100)


def test_translation_follows_the_grammar_and_its_alignment():
    task = TranslationTask(n_test=100, seed=1)
    assert len(task.train) + len(task.test) == 5 * 8 * 6 * 5 * 8
    assert not _rows(task.train) & _rows(task.test)
    table = {**NOUNS, **ADJECTIVES, **VERBS}
    diagonal = 0
    for i in range(len(task.test)):
        src = task.decode(task.test.src[i]).split()
        tgt = task.decode(task.test.tgt[i]).split()
        align = task.test.align[i, 1:len(tgt) + 1].tolist()
        # Each target word translates the source word the alignment points at.
        assert [table[src[j]] for j in align] == tgt
        assert sorted(align) == list(range(len(src)))  # a permutation: every word once
        assert tgt[-1] in VERBS.values() and src[0] not in VERBS  # the verb moves last
        diagonal += align == sorted(align)
    assert diagonal == 0  # never the identity: the verb always moves
    # Worked by hand: "big cat sees dog" -> "kat gros hund mira"; the target's words sit at
    # source positions 1 (cat), 0 (big), 3 (dog), 2 (sees).
    assert _render("big", "cat", "sees", None, "dog") == (
        ["big", "cat", "sees", "dog"], ["kat", "gros", "hund", "mira"], [1, 0, 3, 2])
