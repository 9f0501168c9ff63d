"""The chat template, and prompt/response pairs as token rows with a response-only mask.

A conversation turn is rendered as ``<|user|>{prompt}<|assistant|>{response}<|end|>``. The
three role markers are special tokens (one id each, never split, never produced by text),
added to a base model's tokenizer with ids after its own, so the base model's ids keep
their meaning. The loss counts the response and the closing ``<|end|>`` only: the prompt is
context, and ``<|end|>`` is how the assistant learns to stop.

Rows for training are ``(inputs, targets, mask)`` as everywhere in the trainer: targets are
the tokens shifted by one and ``mask[t]`` says whether ``targets[t]`` is a response token.
Packing puts several whole examples in one row of ``seq_len + 1`` tokens (fewer padded
positions, so more learning per step); attention then also sees the earlier examples of the
row, as in TRL's packing without position resets, which does no harm here because each
example begins with its own ``<|user|>``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (USER, ASSISTANT, END)


def prompt_text(prompt: str) -> str:
    """What the model reads before it answers: ``<|user|>{prompt}<|assistant|>``."""
    return f"{USER}{prompt}{ASSISTANT}"


def chat_text(prompt: str, response: str) -> str:
    """One whole turn, as trained on."""
    return f"{prompt_text(prompt)}{response}{END}"


def chat_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` with the role markers as special tokens (itself when it has them)."""
    return tokenizer.with_special_tokens(CHAT_TOKENS)


@dataclass(frozen=True)
class Encoded:
    """One example: ``ids`` of the whole turn and ``response [len(ids)]``, True at the
    response's tokens and the closing ``<|end|>``."""

    ids: list[int]
    response: list[bool]


def encode_pair(tokenizer: Any, prompt: str, response: str) -> Encoded:
    """Tokenize one turn; the prompt and response are encoded apart, so no token straddles
    them (a BPE merge across the boundary would blur which tokens are the answer)."""
    head = tokenizer.encode(prompt_text(prompt), allowed_special=set(CHAT_TOKENS[:2]))
    tail = tokenizer.encode(response, allowed_special="none")
    tail = tail + [tokenizer.special_tokens[END]]
    return Encoded(head + tail, [False] * len(head) + [True] * len(tail))


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(prompt, response) pairs from a JSONL file of ``{"prompt": ..., "response": ...}``."""
    from gptscope.utils.files import read_string_records

    return read_string_records(path, ("prompt", "response"), "chat data",
                               "add at least one prompt/response pair, or use "
                               "stories-instructions")  # type: ignore[return-value]


def _check_fits(examples: Sequence[Encoded], seq_len: int) -> None:
    longest = max(examples, key=lambda e: len(e.ids))
    if len(longest.ids) > seq_len + 1:
        raise ValueError(f"an example has {len(longest.ids)} tokens but rows hold "
                         f"n_ctx + 1 = {seq_len + 1}; shorten it or use a model with a longer "
                         "context")


def pack(examples: Sequence[Encoded], seq_len: int, pad_id: int, packing: bool = True,
         seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Examples -> (inputs, targets, mask), each [rows, seq_len].

    With ``packing``, whole examples (in an order shuffled by ``seed``) fill each row of
    seq_len + 1 tokens until the next would not fit; without, one example per row. The rest
    of a row is ``pad_id`` with mask False.
    """
    if not examples:
        raise ValueError("no examples to pack")
    _check_fits(examples, seq_len)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[tuple[list[int], list[bool]]] = []
    for i in order:
        ex = examples[i]
        if packing and rows and len(rows[-1][0]) + len(ex.ids) <= seq_len + 1:
            rows[-1][0].extend(ex.ids)
            rows[-1][1].extend(ex.response)
        else:
            rows.append((list(ex.ids), list(ex.response)))
    ids = torch.full((len(rows), seq_len + 1), pad_id, dtype=torch.long)
    scored = torch.zeros((len(rows), seq_len + 1), dtype=torch.bool)
    for r, (row_ids, row_mask) in enumerate(rows):
        ids[r, :len(row_ids)] = torch.tensor(row_ids)
        scored[r, :len(row_mask)] = torch.tensor(row_mask)
    return ids[:, :-1], ids[:, 1:], scored[:, 1:]
