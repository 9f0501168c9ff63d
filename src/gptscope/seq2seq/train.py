"""Training an EncoderDecoder on a source -> target task, and measuring what it learned.

A short loop of its own rather than ``train/trainer.py:Trainer``: the trainer builds one
``Transformer`` from one ModelConfig and saves, checkpoints and resumes exactly that, while an
encoder-decoder is two models fed two sequences. These runs take seconds, so they need no
checkpoints or resume; the loop reuses the trainer's learning-rate schedule
(``scheduled_lr``) and the model's own loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gptscope.data.seq2seq import EOS, SEQ2SEQ_TASKS, Seq2SeqSplit, Seq2SeqTask
from gptscope.model.encoder_decoder import EncoderDecoder, pair_configs
from gptscope.train.schedule import scheduled_lr
from gptscope.utils.fields import checked, validate_fields


@dataclass
class Seq2SeqConfig:
    """One encoder-decoder run: the task, the model's size and the optimisation."""

    task: str = checked("translation", choices=tuple(SEQ2SEQ_TASKS))
    task_args: dict = field(default_factory=dict)  # e.g. {"max_len": 6} for copy
    n_layers: int = checked(2, ge=1)
    d_model: int = checked(64, ge=1)
    n_heads: int = checked(4, ge=1)
    d_mlp: int = checked(128, ge=1)
    steps: int = checked(600, ge=1)
    batch_size: int = checked(64, ge=1)
    lr: float = checked(3e-3, gt=0)
    warmup_steps: int = checked(50, ge=0)
    seed: int = checked(0, ge=0)

    def __post_init__(self) -> None:
        validate_fields(self)


# Measured on one CPU core (docs/encoder_decoder.md has the numbers).
PRESETS: dict[str, Seq2SeqConfig] = {
    "copy-small": Seq2SeqConfig(task="copy", steps=700),
    "translation-small": Seq2SeqConfig(task="translation", steps=500),
    # For tests and the lesson: seconds, not a minute.
    "copy-tiny": Seq2SeqConfig(task="copy", task_args={"max_len": 5, "n_train": 4000},
                               n_layers=1, d_model=32, n_heads=2, d_mlp=64, steps=250),
    "translation-tiny": Seq2SeqConfig(task="translation", n_layers=1, d_model=32, n_heads=2,
                                      d_mlp=64, steps=300),
}


@dataclass
class Seq2SeqResult:
    """A trained model, its task, the training loss per step and the seconds it took."""

    model: EncoderDecoder
    task: Seq2SeqTask
    losses: list[float]
    seconds: float


def build_model(cfg: Seq2SeqConfig, task: Seq2SeqTask) -> EncoderDecoder:
    """An untrained EncoderDecoder sized by ``cfg`` for ``task``'s vocabulary and lengths."""
    enc, dec = pair_configs(task.vocab_size, task.vocab_size, task.src_len, task.tgt_len,
                            n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                            d_mlp=cfg.d_mlp, act_fn="relu", seed=cfg.seed)
    return EncoderDecoder.from_configs(enc, dec)


def train_seq2seq(cfg: Seq2SeqConfig | str, task: Seq2SeqTask | None = None) -> Seq2SeqResult:
    """Train an EncoderDecoder with AdamW on teacher-forced next-token loss (target padding
    ignored). ``cfg``: a Seq2SeqConfig or a preset name (``PRESETS``)."""
    if isinstance(cfg, str):
        if cfg not in PRESETS:
            raise ValueError(f"unknown preset {cfg!r}; pick one of {sorted(PRESETS)}")
        cfg = PRESETS[cfg]
    task = task or SEQ2SEQ_TASKS[cfg.task](**cfg.task_args, seed=cfg.seed)
    model = build_model(cfg, task).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    start = time.perf_counter()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(step, lr=cfg.lr, final_lr=cfg.lr / 10,
                                       warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                                       schedule="cosine")
        b = task.batch(cfg.batch_size, g)
        loss = model(b.src, b.tgt, src_mask=b.src_mask, tgt_mask=b.tgt_mask, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return Seq2SeqResult(model.eval(), task, losses, time.perf_counter() - start)


@torch.no_grad()
def translate(model: EncoderDecoder, data: Seq2SeqSplit, batch_size: int = 512) -> Tensor:
    """Greedy outputs for every source in ``data``: [n, tgt_pos] (BOS first, EOS repeated
    after the end, as long as the targets)."""
    outs = []
    n_new = data.tgt.shape[1] - 1
    for i in range(0, len(data), batch_size):
        rows = data.rows(torch.arange(i, min(i + batch_size, len(data))))
        out = model.generate(rows.src, n_new, bos=int(data.tgt[0, 0]), eos=EOS,
                             src_mask=rows.src_mask)
        pad = torch.full((out.shape[0], n_new + 1 - out.shape[1]), EOS, dtype=out.dtype)
        outs.append(torch.cat([out, pad], dim=1))
    return torch.cat(outs)


def exact_match(model: EncoderDecoder, data: Seq2SeqSplit) -> float:
    """Fraction of examples whose greedy translation equals the target word for word,
    EOS included (what follows EOS is ignored)."""
    out = translate(model, data)
    real = data.tgt_mask.bool()
    same = (out == data.tgt) | ~real
    return float(same.all(dim=1).float().mean())


@torch.no_grad()
def alignment_agreement(model: EncoderDecoder, data: Seq2SeqSplit) -> Tensor:
    """How often each cross-attention head looks where the ground truth says: [layer, head].

    At target position t the decoder predicts word t + 1, so a head agrees there when the
    argmax of its pattern over the source is ``data.align[:, t + 1]``. Counted over every
    position whose next token is a word (not EOS or padding), teacher-forced.
    """
    names = [f"decoder.blocks.{layer}.cross_attn.hook_pattern"
             for layer in range(model.decoder.cfg.n_layers)]
    _, cache = model.run_with_cache(data.src, data.tgt, src_mask=data.src_mask,
                                    tgt_mask=data.tgt_mask, names_filter=names)
    want = data.align[:, 1:]  # [n, tgt_pos - 1]: the source word behind the next token
    keep = want >= 0
    scores = []
    for name in names:
        looked = cache[name][:, :, :-1].argmax(-1)  # [n, head, tgt_pos - 1]
        hit = (looked == want[:, None]) & keep[:, None]
        scores.append(hit.sum(dim=(0, 2)).float() / keep.sum())
    return torch.stack(scores)
