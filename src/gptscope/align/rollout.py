"""Rollouts: batched sampling with the KV cache, and the log-probs PPO needs of them.

A rollout is ``n`` completions of one prompt, each sampled until a stop token or
``max_new_tokens``. The tokens come from `Transformer.generate` (KV cache, one step per new
token for the whole batch); the log-probs of the sampled tokens come from one more forward
pass over the finished sequences, so the "old" log-probs PPO compares against are computed
exactly as the training forward computes the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gptscope.align.losses import token_logprobs


@dataclass
class Rollout:
    """``tokens [n, prompt + new]``; ``mask [n, prompt + new - 1]`` True where the target
    (the next token) is a completion token up to and including its stop token; ``texts``
    the decoded completions (without the prompt)."""

    tokens: Tensor
    mask: Tensor
    prompt_len: int
    texts: list[str]

    @property
    def lengths(self) -> Tensor:
        """Tokens of prompt plus completion per row [n] (what a reward model reads)."""
        return self.prompt_len + self.mask.sum(-1)


def completion_mask(new: Tensor, stop_ids: list[int]) -> Tensor:
    """new [n, new_tokens] -> [n, new_tokens], True up to and including each row's first
    stop token (every token when it has none)."""
    if not stop_ids or new.shape[1] == 0:
        return torch.ones_like(new, dtype=torch.bool)
    is_stop = torch.isin(new, torch.tensor(stop_ids, device=new.device))
    before = is_stop.long().cumsum(-1) - is_stop.long()  # stops strictly before each token
    return before == 0


@torch.no_grad()
def sample_rollout(model: Any, prompt: str | list[int], n: int, max_new_tokens: int,
                   generator: torch.Generator, stop_ids: list[int] | None = None,
                   temperature: float = 1.0) -> Rollout:
    """``n`` completions of ``prompt`` (text, or token ids) sampled from ``model``; the
    seed of the sampler is drawn from ``generator``, so a saved generator state repeats
    the rollout exactly."""
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if not ids:
        raise ValueError("the rollout prompt encodes to no tokens; give at least one "
                         "(an unconditional sample of the stories starts from '\\n')")
    if len(ids) + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) "
                         f"exceeds n_ctx={model.cfg.n_ctx}; lower max_new_tokens")
    seed = int(torch.randint(2**62, (1,), generator=generator))
    prompt_ids = torch.tensor([ids] * n, device=model.device)
    was_training = model.training
    model.eval()
    out = model.generate(prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature,
                         seed=seed, stop_tokens=stop_ids or None, on_overflow="error")
    model.train(was_training)
    new = out[:, len(ids):]
    keep = completion_mask(new, stop_ids or [])
    mask = torch.cat([torch.zeros(n, len(ids) - 1, dtype=torch.bool, device=out.device),
                      keep], dim=1)
    decode = model.tokenizer.decode if model.tokenizer is not None else str
    texts = [decode(row[k].tolist()) for row, k in zip(new, keep, strict=True)]
    return Rollout(out, mask, len(ids), texts)


def sequence_token_logprobs(model: Any, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probs [n, pos - 1] of each next token of ``tokens`` [n, pos] and the logits
    [n, pos - 1, d_vocab] they came from (with gradient if the caller allows it)."""
    logits = model(tokens[:, :-1])
    return token_logprobs(logits, tokens[:, 1:]), logits
