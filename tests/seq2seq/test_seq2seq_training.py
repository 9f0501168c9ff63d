"""Encoder-decoders trained on the copy and translation tasks: held-out exact match, and a
cross-attention head that follows the known word alignment (learned bounds)."""

from dataclasses import replace

import pytest
import torch
from bounds import check, seed

from gptscope.data.seq2seq import EOS, TranslationTask
from gptscope.seq2seq import (
    PRESETS,
    Seq2SeqConfig,
    alignment_agreement,
    exact_match,
    train_seq2seq,
    translate,
)


@pytest.mark.learned
def test_copy_is_learned_exactly_on_held_out_sequences():
    run = train_seq2seq(replace(PRESETS["copy-tiny"], steps=150, seed=seed(0)))
    # measured over 30 runs: 0.868 to 0.98 (an untrained model: 0)
    check("seq2seq.copy_tiny_exact_match", exact_match(run.model, run.task.test), ">", 0.6)
    # measured over 30 runs: 0.0236 to 0.0281
    check("seq2seq.copy_tiny_final_loss", sum(run.losses[-10:]) / 10, "<", 0.2)


@pytest.mark.learned
def test_translation_is_learned_and_a_cross_attention_head_follows_the_alignment():
    run = train_seq2seq(replace(PRESETS["translation-tiny"], steps=200, seed=seed(0)))
    test = run.task.test
    # (the diagonal, a head reading source position = target position, scores 0.226)
    # measured over 30 runs: 1 to 1
    check("seq2seq.translation_tiny_exact_match", exact_match(run.model, test), ">", 0.8)
    agree = alignment_agreement(run.model, test)  # [layer, head]
    # Where the word order differs (the target's verb comes last), the diagonal would be
    # wrong: the best head must beat it by far.
    diagonal = (test.align[:, 1:] == torch.arange(test.align.shape[1] - 1)).sum() / \
        (test.align[:, 1:] >= 0).sum()
    # measured over 30 runs: 0.948 to 1
    check("seq2seq.translation_tiny_best_head_alignment", agree.max(), ">", 0.75)
    # measured over 30 runs: 0.723 to 0.787
    check("seq2seq.translation_alignment_margin_over_diagonal", agree.max() - diagonal, ">",
          0.3)


def test_translate_decodes_to_eos_and_exact_match_counts_whole_sentences():
    task = TranslationTask(n_test=20)
    run = train_seq2seq(Seq2SeqConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=16, steps=1),
                        task)
    out = translate(run.model, task.test)
    assert out.shape == task.test.tgt.shape and (out[:, 0] == 1).all()
    # An untrained model almost never stops on the right words: exact match is ~0, and a
    # model replaced by an oracle scores 1.
    assert exact_match(run.model, task.test) < 0.5

    class Oracle(torch.nn.Module):
        def generate(self, src, n, bos, eos, src_mask):
            rows = (task.test.src == src[:, None]).all(-1).float().argmax(1)
            return task.test.tgt[rows, :n + 1].masked_fill(task.test.tgt[rows, :n + 1] == 0,
                                                           EOS)

    assert exact_match(Oracle(), task.test) == 1.0
    with pytest.raises(ValueError, match="unknown preset"):
        train_seq2seq("nope")
