"""Checks for lesson 7's decoding and tokenizer exercises (filled in by the lesson's work)."""
