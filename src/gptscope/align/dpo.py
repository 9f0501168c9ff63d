"""Direct preference optimisation (and IPO) from preference pairs, the reference frozen.

Offline DPO needs no reward model and no sampling during training: for each pair (prompt,
chosen, rejected) it raises the policy's log-ratio to the reference on the chosen completion
against the rejected one (`dpo_loss`). The reference's log-probs never change, so they are
computed once per set of pairs. Like PPO it is a data object the trainer trains on.

Online (iterative) DPO splits the run into ``rounds``: each round after the first ranks
fresh samples of the policy as it then is, so the pairs follow the policy instead of
describing the starting model only (Xiong et al. 2024, "Iterative preference learning").
Each round's pairs are kept in the run folder (``dpo_rounds/round_K.jsonl``), so a resumed
run trains on exactly the pairs the killed one did.

Pairs come from a JSONL file of ``{"prompt", "chosen", "rejected"}`` (a rating page's
export, see ``gptscope.align.rate``) or are made by ranking the base model's own samples
with a reward model (`rank_samples`), the setting the issue's DPO-vs-PPO comparison uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptscope.align.losses import DPO_KINDS, dpo_loss, token_logprobs
from gptscope.align.reward import pad_right

Pair = tuple[str, str, str]  # (prompt, chosen, rejected)


def read_preferences(path: str | Path) -> list[Pair]:
    """The pairs of a JSONL preference file; ValueError naming the line for a bad one."""
    from gptscope.utils.files import read_string_records

    return read_string_records(path, ("prompt", "chosen", "rejected"), "preference file",
                               "rate some samples (gptscope align rate) or rank them "
                               "(--reward RM_RUN)")  # type: ignore[return-value]


@dataclass
class EncodedPairs:
    """Both sides of every pair: tokens [n, pos] right-padded, masks [n, pos - 1] True
    where the next token is a completion token, and the reference's sums [n]."""

    chosen: Tensor
    chosen_mask: Tensor
    rejected: Tensor
    rejected_mask: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None


def _encode_side(tokenizer: Any, prompts: list[str], completions: list[str]
                 ) -> tuple[Tensor, Tensor]:
    rows, starts = [], []
    for p, c in zip(prompts, completions, strict=True):
        head = tokenizer.encode(p)
        rows.append(head + tokenizer.encode(c))
        starts.append(len(head))
    tokens, lengths = pad_right(rows, 0)
    pos = torch.arange(tokens.shape[1] - 1)
    # target t is token t + 1: a completion token when start <= t + 1 < length
    mask = (pos[None] + 1 >= torch.tensor(starts)[:, None]) & (pos[None] + 1 < lengths[:, None])
    return tokens, mask


def encode_pairs(tokenizer: Any, pairs: list[Pair]) -> EncodedPairs:
    prompts = [p for p, _, _ in pairs]
    if any(not tokenizer.encode(p) for p in prompts):
        raise ValueError("a preference pair has an empty prompt; give each at least one "
                         "token (for unconditional samples of the stories, '\\n')")
    chosen, chosen_mask = _encode_side(tokenizer, prompts, [c for _, c, _ in pairs])
    rejected, rejected_mask = _encode_side(tokenizer, prompts, [r for _, _, r in pairs])
    return EncodedPairs(chosen, chosen_mask, rejected, rejected_mask)


def completion_logprobs(model: nn.Module, tokens: Tensor, mask: Tensor) -> Tensor:
    """[n] sums of log p(next token) over the targets ``mask`` [n, pos - 1] marks in
    ``tokens`` [n, pos]. Only those positions are unembedded (``logits_at``): the
    prompt's and the padding's logits, most of a step's work at a large vocabulary, are
    never computed."""
    keep = mask.bool().to(tokens.device)
    logits = model(tokens[:, :-1], logits_at=keep)  # [kept, d_vocab]
    logprobs = token_logprobs(logits, tokens[:, 1:][keep])  # [kept]
    rows = keep.nonzero()[:, 0]
    return logprobs.new_zeros(len(tokens)).index_add(0, rows, logprobs)


def _both_sides(chosen: Tensor, chosen_mask: Tensor, rejected: Tensor, rejected_mask: Tensor
                ) -> tuple[Tensor, Tensor]:
    """Chosen and rejected rows [n, pos] padded to one width and stacked [2n, pos], with
    their masks [2n, pos - 1], so one forward serves both."""
    width = max(chosen.shape[1], rejected.shape[1])

    def wide(t: Tensor, w: int) -> Tensor:
        return F.pad(t, (0, w - t.shape[1]))

    return (torch.cat([wide(chosen, width), wide(rejected, width)]),
            torch.cat([wide(chosen_mask, width - 1), wide(rejected_mask, width - 1)]))


@torch.no_grad()
def _sums(model: nn.Module, tokens: Tensor, mask: Tensor, size: int = 64) -> Tensor:
    return torch.cat([completion_logprobs(model, tokens[i:i + size].to(model.device),
                                          mask[i:i + size]).cpu()
                      for i in range(0, len(tokens), size)])


ROUNDS_DIR = "dpo_rounds"
Resample = Callable[[nn.Module, int], list[Pair]]  # (policy, round) -> that round's pairs


class DPOData:
    """Preference pairs as the trainer's data (``gptscope.train.data``'s protocol).

    With ``resample`` and ``round_steps``, every ``round_steps`` steps the training pairs
    are replaced by ``resample(policy, round)`` (online DPO), kept under ``rounds_dir``;
    the held-out pairs stay those of round 0.
    """

    def __init__(self, pairs: list[Pair], reference: nn.Module, beta: float = 0.1,
                 kind: str = "sigmoid", val_fraction: float = 0.1,
                 evaluate_samples: Any = None, sft_weight: float = 0.0,
                 resample: Resample | None = None, round_steps: int = 0,
                 rounds_dir: Path | None = None) -> None:
        if resample is not None and (round_steps < 1 or rounds_dir is None):
            raise ValueError(f"online DPO needs round_steps >= 1 and a rounds_dir, got "
                             f"round_steps={round_steps}, rounds_dir={rounds_dir}")
        if kind not in DPO_KINDS:
            raise ValueError(f"kind must be one of {DPO_KINDS}, got {kind!r}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}; DPO's usual values are 0.1-0.5")
        if sft_weight < 0:
            raise ValueError(f"sft_weight must be >= 0, got {sft_weight}")
        self.reference, self.beta, self.kind = reference.eval(), beta, kind
        self.sft_weight = sft_weight
        self.tokenizer = reference.tokenizer
        n_val = max(1, round(len(pairs) * val_fraction)) if len(pairs) > 1 else 0
        self.train = self._with_reference(encode_pairs(self.tokenizer, pairs[n_val:]))
        self.val = self._with_reference(encode_pairs(self.tokenizer, pairs[:n_val])) \
            if n_val else None
        self.evaluate_samples = evaluate_samples  # optional callable(model) -> dict
        self._stats: dict[str, list[float]] = {}
        self.resample, self.round_steps, self.rounds_dir = resample, round_steps, rounds_dir
        self.policy: nn.Module | None = None
        self._step = self._round = 0

    vocab_size = property(lambda self: self.tokenizer.vocab_size)
    seq_len = property(lambda self: max(self.train.chosen.shape[1],
                                        self.train.rejected.shape[1]))

    def _with_reference(self, enc: EncodedPairs) -> EncodedPairs:
        enc.ref_chosen = _sums(self.reference, enc.chosen, enc.chosen_mask)
        enc.ref_rejected = _sums(self.reference, enc.rejected, enc.rejected_mask)
        return enc

    def bind(self, model: nn.Module) -> nn.Module:
        self.policy = model  # what online rounds sample from
        return model

    def start(self, step: int) -> None:
        """Training starts (or resumes) at ``step``; the next batch of an online run takes
        up that step's round."""
        self._step = step

    def _use_round(self, k: int) -> None:
        """Train on round ``k``'s pairs: read from its file when a run already made them
        (a resume), else ranked from the policy now and written there."""
        from gptscope.align.rate import write_preferences
        from gptscope.train.distributed import env_dist_info

        assert self.resample is not None and self.rounds_dir is not None
        path = self.rounds_dir / f"round_{k}.jsonl"
        if path.is_file():
            pairs = read_preferences(path)
        else:
            pairs = self.resample(self.policy, k)
            if env_dist_info().is_main:
                keys = ("prompt", "chosen", "rejected")
                write_preferences([dict(zip(keys, p, strict=True)) for p in pairs], path)
        self.train = self._with_reference(encode_pairs(self.tokenizer, pairs))
        self._round = k

    def metrics(self) -> dict[str, float]:
        record = {k: sum(v) / len(v) for k, v in self._stats.items() if v}
        self._stats.clear()
        if self.resample is not None:
            record["round"] = float(self._round)
        return record

    def train_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        if self.resample is not None and self._step // self.round_steps != self._round:
            self._use_round(self._step // self.round_steps)
        self._step += 1
        t = self.train
        i = torch.randint(len(t.chosen), (n,), generator=generator)
        return (t.chosen[i], t.chosen_mask[i], t.rejected[i], t.rejected_mask[i],
                t.ref_chosen[i], t.ref_rejected[i])

    def count(self, batch: tuple[Tensor, ...]) -> int:
        return len(batch[0])

    def _loss(self, net: nn.Module, micro: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """The DPO loss, plus ``sft_weight`` times the chosen completions' mean token
        cross-entropy (RPO, Pang et al. 2024: it keeps DPO from lowering the likelihood of
        both completions, which here garbles the words)."""
        c, cm, r, rm, ref_c, ref_r = micro
        sums = completion_logprobs(net, *_both_sides(c, cm, r, rm))  # [2n]
        pc, pr = sums[:len(c)], sums[len(c):]
        loss, chosen, rejected = dpo_loss(pc, pr, ref_c, ref_r, self.beta, self.kind)
        if self.sft_weight:  # the chosen tokens' mean log-prob is their sum over the count
            loss = loss + self.sft_weight * -pc.sum() / cm.sum().clamp(min=1)
        return loss, chosen, rejected

    def loss_sum(self, net: nn.Module, micro: tuple[Tensor, ...], autocast: Any) -> Tensor:
        with autocast():
            loss, chosen, rejected = self._loss(net, micro)
        self._stats.setdefault("reward_margin", []).append(float((chosen - rejected).mean()))
        self._stats.setdefault("reward_accuracy", []).append(
            float((chosen > rejected).float().mean()))
        return loss * len(micro[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out DPO loss and implicit-reward accuracy; plus the samples' judge, reward
        and KL when ``evaluate_samples`` is given."""
        model.eval()
        out: dict[str, float] = {}
        if self.val is not None:
            v = self.val
            loss, chosen, rejected = self._loss(model, (v.chosen, v.chosen_mask, v.rejected,
                                                        v.rejected_mask, v.ref_chosen,
                                                        v.ref_rejected))
            out = {"val_dpo_loss": float(loss),
                   "val_reward_accuracy": float((chosen > rejected).float().mean())}
        if self.evaluate_samples is not None:
            out.update({k: v for k, v in self.evaluate_samples(model).items()
                        if isinstance(v, float)})
        return out


@torch.no_grad()
def rank_samples(policy: Any, reward_model: Any, n_pairs: int, prompt: str = "\n",
                 max_new_tokens: int = 64, stop_ids: list[int] | None = None,
                 seed: int = 0, group: int = 4) -> list[Pair]:
    """``n_pairs`` preference pairs from ``policy``'s own samples: of each ``group``
    completions of ``prompt``, the one the reward model scores highest is chosen and the
    lowest rejected (best-of-n against worst-of-n; groups whose ends tie are skipped)."""
    from gptscope.align.measure import reward_scores
    from gptscope.align.rollout import sample_rollout

    if group < 2:
        raise ValueError(f"group must be >= 2 completions to rank, got {group}")
    gen = torch.Generator().manual_seed(seed)
    pairs: list[Pair] = []
    per_draw = 64 * group
    while len(pairs) < n_pairs:
        rollout = sample_rollout(policy, prompt, per_draw, max_new_tokens, gen, stop_ids)
        scores = reward_scores(reward_model, rollout, "raw").view(-1, group)
        best, worst = scores.argmax(-1).tolist(), scores.argmin(-1).tolist()
        for g, (hi, lo) in enumerate(zip(best, worst, strict=True)):
            chosen, rejected = rollout.texts[g * group + hi], rollout.texts[g * group + lo]
            if scores[g, hi] > scores[g, lo] and chosen != rejected:
                pairs.append((prompt, chosen, rejected))
    return pairs[:n_pairs]


# Measured on the stories model (docs/alignment.md).
DPO_DEFAULTS: dict[str, Any] = {"lr": 3e-5, "min_lr": 3e-6, "warmup_steps": 10,
                                "max_steps": 400, "batch_size": 32, "eval_every": 50,
                                "log_every": 10, "weight_decay": 0.0}
DPO_OPTIONS = "dpo_config.json"


def run_dpo(policy_run: str | Path, out: str | Path, pairs: list[Pair] | None = None,
            reward_run: str | Path | None = None, n_pairs: int = 2048, beta: float = 0.1,
            kind: str = "sigmoid", prompt: str = "\n", max_new_tokens: int = 64,
            stop: tuple[str, ...] = (".",), group: int = 8, sft_weight: float = 0.0,
            rounds: int = 1, resume: bool = False, overwrite: bool = False,
            **overrides: Any) -> Any:
    """DPO (or IPO) of ``policy_run`` into ``out`` on ``pairs``, or on ``n_pairs`` of its
    own samples ranked by the reward model of ``reward_run`` (best against worst of each
    ``group``); ``sft_weight`` adds the chosen completions' cross-entropy (RPO).
    ``rounds`` > 1 (with a reward model) is online DPO: the run's steps split into that
    many rounds, each on ``n_pairs`` fresh samples of the policy as it is when the round
    starts. Evaluations sample the policy and report the judge, the reward model's score
    (when given) and the KL."""
    from gptscope.align.measure import policy_stats
    from gptscope.align.options import align_train_config, check_options, write_options
    from gptscope.align.ppo import check_same_vocabulary, stop_ids
    from gptscope.align.reward import load_reward_model
    from gptscope.train.init import open_base
    from gptscope.train.trainer import Trainer

    if (pairs is None) == (reward_run is None):
        raise ValueError("DPO needs preference pairs (--pairs FILE) or a reward model to rank "
                         "samples with (--reward RM_RUN), exactly one of them")
    if not (isinstance(rounds, int) and rounds >= 1) or (rounds > 1 and reward_run is None):
        raise ValueError(f"rounds must be an int >= 1, and > 1 only with a reward model to "
                         f"rank fresh samples (--reward RM_RUN), got rounds={rounds!r}")
    cfg = align_train_config(policy_run, DPO_DEFAULTS, overrides)
    if rounds > cfg.max_steps:
        raise ValueError(f"rounds={rounds} exceeds max_steps={cfg.max_steps}; a round needs "
                         "at least one step")
    # Saved, so a resume that changes max_steps cannot move the rounds' boundaries.
    round_steps = -(-cfg.max_steps // rounds) if rounds > 1 else None
    options = {"beta": beta, "kind": kind, "n_pairs": n_pairs, "prompt": prompt,
               "max_new_tokens": max_new_tokens, "stop": list(stop), "group": group,
               "sft_weight": sft_weight, "rounds": rounds, "round_steps": round_steps,
               "ranked_by": None if reward_run is None else str(reward_run),
               "own_pairs": pairs is not None}
    check_options(out, DPO_OPTIONS, options, resume)
    reference = open_base(policy_run)
    reward = load_reward_model(reward_run) if reward_run is not None else None
    if reward is not None:
        check_same_vocabulary(reference.tokenizer, reward.tokenizer)
    stops = stop_ids(reference.tokenizer, stop)

    def ranked(policy: Any, k: int) -> list[Pair]:
        return rank_samples(policy, reward, n_pairs, prompt, max_new_tokens, stops,
                            seed=cfg.seed + k, group=group)

    if pairs is None:
        pairs = ranked(reference, 0)
    online = {"resample": ranked, "round_steps": round_steps,
              "rounds_dir": Path(out) / ROUNDS_DIR} if rounds > 1 else {}
    data = DPOData(pairs, reference, beta, kind, sft_weight=sft_weight,
                   evaluate_samples=lambda m: policy_stats(
                       m, reference, reward, 128, prompt, max_new_tokens, stops,
                       seed=cfg.seed + 1), **online)
    trainer = Trainer(None, cfg, out, resume=resume, overwrite=overwrite, data=data)
    if trainer.is_main:
        write_options(out, DPO_OPTIONS, options)
    return trainer.fit()
