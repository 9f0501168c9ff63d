"""Encoder-decoder runs: train an EncoderDecoder on the copy or translation task of
`gptscope.data.seq2seq` and measure exact match and where its cross-attention looks."""

from gptscope.seq2seq.train import (
    PRESETS,
    Seq2SeqConfig,
    Seq2SeqResult,
    alignment_agreement,
    build_model,
    exact_match,
    train_seq2seq,
    translate,
)

__all__ = ["PRESETS", "Seq2SeqConfig", "Seq2SeqResult", "alignment_agreement", "build_model",
           "exact_match", "train_seq2seq", "translate"]
