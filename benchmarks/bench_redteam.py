"""Red teaming: the target's greedy replies to a batch of questions of different lengths.

Three ways to answer the same 64 generated instructions with the shipped stories
assistant, each up to 96 new tokens: ours one question at a time (`align.respond`), ours
batched with left padding (`evals.redteam.target.replies`), and Hugging Face's `generate`
on the same weights, left-padded with an attention mask, greedy, in batches of 16 sorted by
length as ours are (it runs every row to the batch's longest reply: it has no per-row stop
at our <|end|> without an eos id, which is set here). Timed in turn in one process; prints
medians and ratios.

    python benchmarks/bench_redteam.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_model import hf_twin  # noqa: E402
from common import interleaved, machine, table  # noqa: E402

import gptscope as gs  # noqa: E402
from gptscope.align.sft import respond  # noqa: E402
from gptscope.data.chat import END, prompt_text  # noqa: E402
from gptscope.data.instructions import generate_instructions  # noqa: E402
from gptscope.evals.redteam.target import REPLY_TOKENS, replies  # noqa: E402


def hf_replies(hf, tokenizer, questions: list[str], end: int, batch: int = 16):
    rows = sorted((tokenizer.encode(prompt_text(q)) for q in questions), key=len)

    def run() -> None:
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            width = max(map(len, chunk))
            ids = torch.tensor([[0] * (width - len(r)) + r for r in chunk])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk])
            with torch.no_grad():
                hf.generate(ids, attention_mask=mask, do_sample=False, eos_token_id=end,
                            pad_token_id=end, max_new_tokens=min(REPLY_TOKENS, 128 - width))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    print(f"machine: {machine()}")
    model = gs.load("stories-assistant").eval()
    hf = hf_twin(model)
    questions = [i.prompt for i in generate_instructions(64, seed=5)]
    end = model.tokenizer.special_tokens[END]
    t = interleaved({"alone": lambda: [respond(model, q, REPLY_TOKENS) for q in questions],
                     "batched": lambda: replies(model, questions),
                     "hf": hf_replies(hf, model.tokenizer, questions, end)},
                    repeats=args.repeats)
    rows = [["64 replies, one at a time (align.respond)", f"{t['alone']:.2f} s", "", ""],
            ["64 replies, batched (evals.redteam.replies)", f"{t['batched']:.2f} s",
             f"{t['hf']:.2f} s", f"{t['hf'] / t['batched']:.2f}x HF, "
             f"{t['alone'] / t['batched']:.1f}x alone"]]
    print(table(rows, ["measure", "gptscope", "transformers (batched)", "ratio"]))


if __name__ == "__main__":
    main()
