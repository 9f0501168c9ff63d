"""Scaffold a reproducible experiment folder for a course project.

``new_project(name)`` writes ``config.json`` (model, task, training: a fixed seed),
``run.py`` (trains a small gptscope model on a synthetic task and writes ``report.md`` and
``metrics.json``) and ``README.md`` (question, method, result). Edit the config, run it,
write up what you found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gptscope.utils.atomic import write_text

DEFAULT_CONFIG = {
    "seed": 0,
    "task": {"name": "alternating", "vocab": 12, "seq_len": 16, "n_train": 2000, "n_test": 200},
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "attn_only": True},
    "train": {"steps": 200, "batch_size": 32, "lr": 0.003, "threads": 1},
}

RUN_PY = '''"""Train a small GPT on a synthetic task, write a report. Usage: python run.py [CONFIG]

Made by `gptscope learn new-project`. Everything random is seeded from config["seed"], so
running it twice gives the same numbers.
"""

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import gptscope as gs

HERE = Path(__file__).resolve().parent


def make_data(task, n, seed):
    """Rows a b a b ...: the next token is the one two back (a bigram model cannot know it)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, task["vocab"], (n,), generator=g)
    b = (a + torch.randint(1, task["vocab"], (n,), generator=g)) % task["vocab"]
    return torch.stack([a, b], 1).repeat(1, task["seq_len"] // 2)


def bigram_loss(train, test, vocab):
    counts = torch.ones(vocab, vocab)
    counts.index_put_((train[:, :-1].flatten(), train[:, 1:].flatten()),
                      torch.ones(train[:, 1:].numel()), accumulate=True)
    logp = (counts / counts.sum(1, keepdim=True)).log()
    return -logp[test[:, :-1].flatten(), test[:, 1:].flatten()].mean().item()


def main(config_path):
    cfg = json.loads(Path(config_path).read_text())
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(cfg["train"].get("threads", 1))  # tiny models run best on one
    task = cfg["task"]
    train = make_data(task, task["n_train"], cfg["seed"])
    test = make_data(task, task["n_test"], cfg["seed"] + 1)
    model_cfg = gs.ModelConfig(d_vocab=task["vocab"], n_ctx=task["seq_len"], seed=cfg["seed"],
                               **cfg["model"])
    model = gs.Transformer(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["train"]["lr"])
    g = torch.Generator().manual_seed(cfg["seed"])
    start = time.perf_counter()
    losses = []
    for _ in range(cfg["train"]["steps"]):
        batch = train[torch.randint(0, len(train), (cfg["train"]["batch_size"],), generator=g)]
        logits = model(batch)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        test_loss = model(test, return_type="loss").item()
    metrics = {"test_loss": test_loss, "bigram_loss": bigram_loss(train, test, task["vocab"]),
               "final_train_loss": losses[-1], "seconds": time.perf_counter() - start,
               "n_params": sum(p.numel() for p in model.parameters())}
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\\n")
    gs.save(model, HERE / "model")
    report = [
        "# Report", "",
        f"- config: `{Path(config_path).name}` (seed {cfg['seed']})",
        f"- parameters: {metrics['n_params']:,}",
        f"- held-out loss: {metrics['test_loss']:.4f} (bigram baseline "
        f"{metrics['bigram_loss']:.4f})",
        f"- training time: {metrics['seconds']:.1f}s for {cfg['train']['steps']} steps", "",
    ]
    (HERE / "report.md").write_text("\\n".join(report))
    print("\\n".join(report))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else HERE / "config.json")
'''

README = """# {name}

A gptscope course project (lesson 14). Reproducible: `python run.py` retrains from
`config.json` with its fixed seed and rewrites `report.md` and `metrics.json`.

## Question

What do you want to find out? (e.g. "Does one attention layer suffice to beat the bigram
baseline on the alternating task, and which head does the work?")

## Method

Model, data, training budget (see `config.json`), and the analysis you run afterwards
(e.g. `gs.interp.head_scores`, activation patching, a probe).

## Result

Paste the numbers from `report.md` and your plots; say what they show and what they do not.

## Next steps
"""


def new_project(name: str, directory: str | Path = ".") -> Path:
    """Create ``directory/name`` with config.json, run.py and README.md; return the folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"project name {name!r}: use letters, digits, '_', '-' or '.'")
    folder = Path(directory) / name
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} exists and is not empty; pick another name")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.json", json.dumps(DEFAULT_CONFIG, indent=2) + "\n")
    write_text(folder / "run.py", RUN_PY)
    write_text(folder / "README.md", README.format(name=name))
    return folder
