"""One DPO optimizer step: gptscope's trainer against TRL's DPOTrainer, same model and batch.

Both sides train a GPT-2-shaped model with the same random weights (a gptscope
`Transformer`, exported to a transformers `GPT2LMHeadModel` with `bench_model.hf_twin`) on
the same preference pairs (prompt, chosen, rejected; every completion ends with the EOS
token, so TRL adds none), with the same beta, sigmoid loss, fused AdamW, lr, clipping, no
gradient accumulation, fp32 on the CPU. Timed in turn in one process (medians):

- gptscope: `Trainer.train_step()` on a `DPOData`, whose reference log-probs are computed
  once, when the data is built;
- TRL, reference log-probs precomputed (`precompute_ref_log_probs=True`), and TRL as it
  comes (a reference forward in every step). A TRL step is the body of transformers'
  training loop: fetch the batch from the trainer's dataloader, `trainer.training_step`,
  gradient clipping, optimizer and scheduler step, `zero_grad`. `--train-loop` also times
  the steps inside `trainer.train()` itself (from one step's end to the next), a check
  that the hand-driven step leaves nothing out.

Trainer construction, tokenization and the reference precomputation are outside the
timings on both sides. Before timing, the first two steps of each are compared: the
losses (at step 1 the policy is the reference, so every side gives ln 2 there; step 2 comes
after one identical update), the pre-clipping gradient norms and the reference log-probs.

TRL is not in the dev extra, so it runs from an environment of its own:

    python -m venv env && env/bin/pip install torch==2.13.0 && env/bin/pip install trl transformers
    PYTHONPATH=src env/bin/python benchmarks/bench_dpo.py --repeats 5 [--model small] [--train-loop]

Nothing is downloaded: the weights are random and the tokenizer is built locally.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_model import hf_twin  # noqa: E402
from common import interleaved, machine, table  # noqa: E402

import gptscope as gs  # noqa: E402
from gptscope.align.dpo import DPOData, Pair  # noqa: E402

EOS = "<|endoftext|>"
MODELS = {  # GPT-2's vocabulary and context in both; "small" is nanoGPT's 6 x 384 body
    "gpt2": dict(n_layers=12, d_model=768, n_heads=12),
    "small": dict(n_layers=6, d_model=384, n_heads=6),
}


@dataclass
class Setup:
    """What both sides share: the shape, the pairs, and the optimisation settings."""

    model: str = "gpt2"
    pairs: int = 8
    prompt_len: int = 16
    completion_len: int = 48  # tokens, the EOS token included
    beta: float = 0.1
    lr: float = 1e-6  # TRL's default; 1e-4 all but zeroes the loss in one step here
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0


# -- the tokenizer and the pairs -----------------------------------------------------------

def word_tokenizer(vocab_size: int):
    """A word-level Hugging Face tokenizer: "t0" ... "t{n-2}" are ids 0 ... n-2 and EOS
    is id n-1, as in GPT-2. Text written in these words encodes to exactly the ids it
    spells, on both sides; EOS is a special token, so "t5<|endoftext|>" splits before it."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {f"t{i}": i for i in range(vocab_size - 1)}
    vocab[EOS] = vocab_size - 1
    tok = Tokenizer(WordLevel(vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([EOS])
    return tok


class SharedTokenizer:
    """The same `tokenizers.Tokenizer` object as gptscope's data reads a tokenizer
    (``encode``, ``decode``, ``vocab_size``, ``save``), so both sides split text alike."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.eos_token_id = tok.token_to_id(EOS)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids))

    def save(self, path: Any) -> None:
        self.tok.save(str(path))


def make_pairs(s: Setup, vocab_size: int) -> list[Pair]:
    """Random token words: a prompt, and two completions that end with EOS. Each
    completion starts with a space, so prompt + completion is one string of words."""
    gen = torch.Generator().manual_seed(s.seed)

    def words(n: int) -> str:
        ids = torch.randint(0, vocab_size - 1, (n,), generator=gen).tolist()
        return " ".join(f"t{i}" for i in ids)

    body = s.completion_len - 1
    return [(words(s.prompt_len), f" {words(body)}{EOS}", f" {words(body)}{EOS}")
            for _ in range(s.pairs)]


# -- gptscope ------------------------------------------------------------------------------

class WholeSetDPOData(DPOData):
    """DPOData whose every batch is its whole train set, in order. DPOData draws pairs with
    replacement, so a batch of 8 drawn from 8 pairs would repeat some, while TRL's batch
    holds each pair once; the loss check needs the same pairs on both sides."""

    def train_batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        t = self.train
        return (t.chosen, t.chosen_mask, t.rejected, t.rejected_mask, t.ref_chosen,
                t.ref_rejected)


def gptscope_trainer(s: Setup, reference: gs.Transformer, pairs: list[Pair], out: str
                     ) -> Any:
    """gptscope's trainer on the pairs, its policy starting from the reference's weights."""
    from gptscope.train import TrainConfig
    from gptscope.train.trainer import Trainer

    # DPOData keeps its first pair(s) for validation: give it a copy of the first, so the
    # train set is exactly the pairs TRL trains on.
    data = WholeSetDPOData([pairs[0], *pairs], reference, beta=s.beta, kind="sigmoid")
    cfg = TrainConfig(lr=s.lr, schedule="constant", warmup_steps=0, max_steps=10_000,
                      batch_size=s.pairs, grad_accum=1, weight_decay=0.0, betas=s.betas,
                      eps=s.eps, grad_clip=s.grad_clip, eval_every=0, device="cpu",
                      bf16=False, compile=False, progress=False, seed=s.seed)
    trainer = Trainer(reference.cfg, cfg, out, data=data)
    trainer.model.load_state_dict(reference.state_dict())  # in place: the optimizer keeps it
    return trainer


def gptscope_step(trainer: Any) -> Callable[[], tuple[float, float]]:
    def step() -> tuple[float, float]:
        loss, norm, _ = trainer.train_step()
        return loss, norm
    return step


# -- TRL -----------------------------------------------------------------------------------

def trl_trainer(s: Setup, reference: gs.Transformer, hf_tok: Any, pairs: list[Pair],
                out: str, precompute: bool) -> Any:
    """TRL's DPOTrainer on the same pairs and settings, its policy a fresh HF twin of the
    reference. Without precomputation its reference is another twin (TRL would otherwise
    reload the policy from its config's path, a temporary folder long gone)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    # TRL turns activation checkpointing on by default; gptscope keeps the activations.
    # transformers 5 renamed gradient_checkpointing (the old name still works, and warns).
    fields = DPOConfig.__dataclass_fields__
    no_checkpointing = {"activation_checkpointing" if "activation_checkpointing" in fields
                        else "gradient_checkpointing": False}
    args = DPOConfig(
        output_dir=out, report_to="none", save_strategy="no", disable_tqdm=True,
        use_cpu=True, bf16=False, fp16=False, **no_checkpointing,
        per_device_train_batch_size=s.pairs, gradient_accumulation_steps=1,
        learning_rate=s.lr, lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch_fused", weight_decay=0.0, adam_beta1=s.betas[0],
        adam_beta2=s.betas[1], adam_epsilon=s.eps, max_grad_norm=s.grad_clip,
        beta=s.beta, loss_type=["sigmoid"], max_length=None,
        precompute_ref_log_probs=precompute, seed=s.seed, dataloader_num_workers=0,
    )
    data = Dataset.from_dict({"prompt": [p for p, _, _ in pairs],
                              "chosen": [c for _, c, _ in pairs],
                              "rejected": [r for _, _, r in pairs]})
    ref_model = None if precompute else hf_twin(reference)
    trainer = DPOTrainer(model=hf_twin(reference), ref_model=ref_model, args=args,
                         train_dataset=data, processing_class=hf_tok)
    # What train() sets up before its first step (transformers' _prepare_for_training):
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.model_wrapped, trainer.optimizer = trainer.accelerator.prepare(
        trainer.model, trainer.optimizer)
    trainer.current_gradient_accumulation_steps = 1  # set per step by the training loop
    return trainer


def trl_step(trainer: Any) -> Callable[[], tuple[float, float]]:
    """One optimizer step as transformers' `_run_epoch` takes it, less logging and callbacks."""
    loader = trainer.get_train_dataloader()  # one batch per epoch: all pairs, shuffled
    model = trainer.model_wrapped
    clip = trainer.args.max_grad_norm

    def step() -> tuple[float, float]:
        batch = next(iter(loader))
        loss = trainer.training_step(model, batch)
        norm = trainer.accelerator.clip_grad_norm_(model.parameters(), clip)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()
        return float(loss), float(norm)
    return step


def trl_ref_logps(trainer: Any) -> torch.Tensor:
    """TRL's precomputed reference log-probs, [chosen..., rejected...] in pair order (its
    dataset keeps the order it was given; the precomputation does not shuffle)."""
    data = trainer.train_dataset
    return torch.tensor(list(data["ref_chosen_logps"]) + list(data["ref_rejected_logps"]))


def same_tokens(ours: Any, trl: Any) -> bool:
    """Whether TRL tokenized every pair into exactly the rows gptscope trains on (no BOS,
    no second EOS, no truncation; the completions are of one length, so no padding)."""
    t = ours.data.train
    for i, row in enumerate(trl.train_dataset):
        if (row["prompt_ids"] + row["chosen_ids"] != t.chosen[i].tolist()
                or row["prompt_ids"] + row["rejected_ids"] != t.rejected[i].tolist()):
            return False
    return True


def trl_train_loop(trainer: Any, steps: int) -> float:
    """Median seconds between consecutive step ends inside `trainer.train()` itself: all
    the loop does per step (batch, step, logging, callbacks), none of its setup. Run
    after the interleaved timings, on its own."""
    from transformers import PrinterCallback, TrainerCallback

    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())

    trainer.remove_callback(PrinterCallback)  # it prints the run's summary
    trainer.add_callback(StepClock())
    trainer.args.max_steps = steps + 1
    trainer.train()
    return statistics.median(b - a for a, b in zip(ends, ends[1:]))


# -- the benchmark -------------------------------------------------------------------------

def first_steps(steps: dict[str, Callable[[], tuple[float, float]]]
                ) -> dict[str, list[tuple[float, float]]]:
    """(loss, grad norm) of the first two steps of each side; also the timing's warm-up."""
    return {name: [step(), step()] for name, step in steps.items()}


def agreement_rows(checks: dict[str, list[tuple[float, float]]], ref_diff: float,
                   tokens_match: bool) -> list[list[str]]:
    ours = checks["gptscope"]
    rows = []
    for name in ("trl_pre", "trl"):
        theirs = checks[name]
        dl = max(abs(a[0] - b[0]) for a, b in zip(ours, theirs, strict=True))
        dn = max(abs(a[1] - b[1]) / b[1] for a, b in zip(ours, theirs, strict=True))
        label = "TRL, reference precomputed" if name == "trl_pre" else "TRL, reference each step"
        rows.append([f"  loss, steps 1 / 2 (vs {label})",
                     f"{ours[0][0]:.6f} / {ours[1][0]:.6f}",
                     f"{theirs[0][0]:.6f} / {theirs[1][0]:.6f}",
                     f"max |diff| {dl:.1e}; grad norm rel. diff {dn:.1e}"])
    rows.append(["  reference log-prob sums (every completion)", "", "",
                 f"max |gptscope - TRL| {ref_diff:.1e} nats; same tokens: {tokens_match}"])
    return rows


def bench(s: Setup, repeats: int, train_loop: bool) -> list[list[str]]:
    cfg = gs.ModelConfig(**MODELS[s.model], d_vocab=50257, n_ctx=1024, tie_embeddings=True,
                         seed=s.seed)
    from transformers import PreTrainedTokenizerFast

    tok = word_tokenizer(cfg.d_vocab)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    pairs = make_pairs(s, cfg.d_vocab)
    reference = gs.Transformer(cfg).eval()
    reference.tokenizer = SharedTokenizer(tok)

    with contextlib.ExitStack() as stack:
        folder = lambda: stack.enter_context(tempfile.TemporaryDirectory())  # noqa: E731
        ours = gptscope_trainer(s, reference, pairs, folder())
        stack.callback(ours.close)
        pre = trl_trainer(s, reference, hf_tok, pairs, folder(), precompute=True)
        live = trl_trainer(s, reference, hf_tok, pairs, folder(), precompute=False)
        ref_ours = torch.cat([ours.data.train.ref_chosen, ours.data.train.ref_rejected])
        ref_diff = float((ref_ours - trl_ref_logps(pre)).abs().max())
        tokens_match = same_tokens(ours, pre)
        steps = {"gptscope": gptscope_step(ours), "trl_pre": trl_step(pre),
                 "trl": trl_step(live)}
        checks = first_steps(steps)
        t = interleaved(steps, repeats=repeats, warmup=0)
        loop = trl_train_loop(pre, max(repeats, 2)) if train_loop else None

    shape = (f"{cfg.n_layers}L, {cfg.d_model} wide, vocab {cfg.d_vocab}; {s.pairs} pairs, "
             f"{s.prompt_len} + {s.completion_len} tokens")
    rows = [[f"DPO step, seconds ({shape})", f"{t['gptscope']:.3f}", "", ""],
            ["  TRL DPOTrainer, reference log-probs precomputed", "", f"{t['trl_pre']:.3f}",
             f"{t['trl_pre'] / t['gptscope']:.2f}x (target >= 1.2x)"],
            ["  TRL DPOTrainer as it comes (reference forward each step)", "",
             f"{t['trl']:.3f}", f"{t['trl'] / t['gptscope']:.2f}x (target >= 1.2x)"]]
    if loop is not None:
        rows.append(["  TRL trainer.train() per step, precomputed (not interleaved)", "",
                     f"{loop:.3f}", f"{loop / t['gptscope']:.2f}x; checks the step above"])
    return rows + agreement_rows(checks, ref_diff, tokens_match)


def quiet_libraries() -> None:
    """No progress bars from datasets' maps or transformers' weight loading, and no notes
    from transformers (such as the pad token it copies from the tokenizer)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt2",
                        help="gpt2: 12 layers x 768 (GPT-2 small); small: 6 x 384")
    parser.add_argument("--train-loop", action="store_true",
                        help="also time the steps of TRL's own trainer.train() loop")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is built locally
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # renamed arguments, in TRL
    quiet_libraries()
    print(f"machine: {machine()}")
    rows = bench(Setup(model=args.model), args.repeats, args.train_loop)
    print(table(rows, ["measure", "gptscope", "TRL", "TRL / gptscope"]))


if __name__ == "__main__":
    main()
