"""Named, typed training setups: a `ModelConfig` plus a `TrainConfig`, built in code.

``gptscope train --preset NAME`` starts from one of these; command-line flags override
single fields. ``d_vocab`` is filled in from the data (task vocabulary or tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gptscope.config import ModelConfig
from gptscope.train.config import DataSpec, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig


def _bigram() -> Preset:
    return Preset(
        "bigram", "no blocks at all (n_layers=0): next char from the current one; Shakespeare",
        ModelConfig(n_layers=0, d_model=64, n_heads=1, n_ctx=64, positional=None),
        TrainConfig(data=DataSpec(corpus="shakespeare"), lr=1e-2, max_steps=1000,
                    warmup_steps=20, batch_size=32, eval_every=200, weight_decay=0.0),
    )


def _baby_cpu() -> Preset:
    # nanoGPT's README "baby" CPU model on Shakespeare chars (~1.88 val loss in minutes).
    return Preset(
        "baby-cpu", "4 layers, 4 heads, 128 wide, context 64; Shakespeare chars in minutes on CPU",
        ModelConfig(n_layers=4, n_heads=4, d_model=128, n_ctx=64, dropout=0.0),
        TrainConfig(data=DataSpec(corpus="shakespeare"), lr=1e-3, min_lr=1e-4,
                    warmup_steps=100, max_steps=2000, batch_size=12, weight_decay=0.1,
                    betas=(0.9, 0.99), eval_every=250, eval_steps=20, log_every=10),
    )


def _shakespeare_char() -> Preset:
    # nanoGPT's config/train_shakespeare_char.py, as a typed config (GPU-sized).
    return Preset(
        "shakespeare-char", "nanoGPT's Shakespeare char model: 6 layers, 6 heads, 384 wide, "
        "context 256, dropout 0.2 (GPU-sized)",
        ModelConfig(n_layers=6, n_heads=6, d_model=384, n_ctx=256, dropout=0.2),
        TrainConfig(data=DataSpec(corpus="shakespeare"), lr=1e-3, min_lr=1e-4,
                    warmup_steps=100, max_steps=5000, batch_size=64, weight_decay=0.1,
                    betas=(0.9, 0.99), eval_every=250, eval_steps=20, log_every=10),
    )


def _induction_2l() -> Preset:
    # The repeated span has a random length, start and gap, so "copy from k back" cannot
    # work and the previous-token + induction circuit is the solution found. Rotary
    # positions make the previous-token head a single rotation, learned early. Adam's
    # beta2 = 0.999 matters here: with 0.95 the circuit formed later or not within 1000 steps.
    # lr 5e-3, not 3e-3: at 3e-3, 2 of 8 seeds (3337, 4337) had no layer-1 induction head
    # by step 1000; at 5e-3 all of 11 seeds (1337 + 1000k) had one (0.89-0.93, layer-0
    # previous-token 0.83-0.98), measured on one AVX512 CPU; tests/README.md has the spread
    # over CPUs.
    return Preset(
        "induction-2l", "2-layer attention-only model on repeated random tokens: forms "
        "induction heads",
        ModelConfig(n_layers=2, n_heads=4, d_model=64, n_ctx=41, attn_only=True,
                    normalization=None, positional="rotary"),
        TrainConfig(data=DataSpec(task="induction", task_kwargs={"half_len": 20,
                                                                 "n_symbols": 64,
                                                                 "min_len": 8}),
                    lr=5e-3, warmup_steps=20, max_steps=1000, batch_size=32,
                    betas=(0.9, 0.999), weight_decay=0.01, eval_every=50, eval_steps=8),
    )


def _modadd() -> Preset:
    # Nanda, Chan, Lieberum, Smith & Steinhardt 2023, "Progress measures for grokking via
    # mechanistic interpretability" (ICLR; arXiv 2301.05217) and its code: a + b mod p=113,
    # 30% of the 113^2 pairs for training, full batch; 1 layer, d_model 128, 4 heads of 32,
    # d_mlp 512, ReLU, no LayerNorm, learned positions, no attention biases, untied
    # unembedding; AdamW lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 10 steps of linear
    # warmup then constant lr; weights ~ N(0, 1/d_model), i.e. std 1/sqrt(128) (our init
    # further divides W_O and W_out by sqrt(2 n_layers), as GPT-2 does). The paper
    # reports test loss falling sharply in the "cleanup" phase, roughly steps 9.4k-13.3k.
    # Differences: their AdamW also decays biases (ours never does, see optim.py) and
    # their final log-softmax is float64 (ours float32); our input also carries c itself
    # (4 tokens, only the prediction at "=" is scored). Not run to completion here: a
    # full-batch step took ~0.3 s on one shared CPU core, so 25k steps take hours on a CPU.
    return Preset(
        "modadd", "grokking (Nanda et al. 2023): a+b mod 113, 30% train, 1 layer, 4 heads, "
        "d_model 128, d_mlp 512, ReLU, no LN, full batch, AdamW lr 1e-3 wd 1.0 "
        "(25k steps; GPU-sized)",
        ModelConfig(n_layers=1, n_heads=4, d_model=128, d_mlp=512, n_ctx=4, act_fn="relu",
                    normalization=None, attn_bias=False, mlp_bias=True,
                    init_range=128 ** -0.5),
        TrainConfig(data=DataSpec(task="modular_addition",
                                  task_kwargs={"p": 113, "train_fraction": 0.3},
                                  full_batch=True),
                    lr=1e-3, schedule="constant", warmup_steps=10, max_steps=25000,
                    batch_size=4096, weight_decay=1.0, betas=(0.9, 0.98), grad_clip=0.0,
                    eval_every=100, eval_steps=1, log_every=100, ckpt_every=5000),
    )


def _modadd_cpu() -> Preset:
    # modadd's model and optimiser on a smaller table, 59^2 = 3481 pairs with 45% (1566) for
    # training, and lr 3e-3: the wait for grokking shrinks roughly as 1 / (lr * wd) and
    # with a larger train fraction. An earlier variant (p=43, 30% train, std 0.02 init) hit
    # 100% train by step 750 but test stayed ~57% through 14k steps; which change fixed it
    # was not isolated. In a standalone loop, p=53 with 40% train had not grokked by step 900
    # (test 35%, test loss rising), and decaying biases plus a float64 loss (as Nanda et al.)
    # made no visible difference at p=59, 50% train (curves alike to step 300; ~99% by 500).
    # Measured with `gptscope train --preset modadd-cpu --out /tmp/modadd` (seed 1337, one
    # thread on a shared 2-core machine, 3 min 13 s): train exact match 100% at step 75;
    # test 10% at step 75, creeping to 54% by step 725, then 94% at 925, > 95% at 950 and
    # > 99% at 1025 (test loss peaks ~10.8 at step 125). With --seed 0: train 100% at 75,
    # test > 95% at 650 (3 min 28 s). Both runs show a brief "slingshot" dip near step 1400
    # (train and test ~97-98%), recovered to >= 99.9% by step 1500.
    base = _modadd()
    return Preset(
        "modadd-cpu", "modadd scaled for a 2-core laptop: a+b mod 59, 45% train, lr 3e-3; "
        "groks within about 1000 full-batch steps (minutes on one core)",
        base.model,
        base.train.replace(data=DataSpec(task="modular_addition",
                                         task_kwargs={"p": 59, "train_fraction": 0.45},
                                         full_batch=True),
                           lr=3e-3, max_steps=1500, eval_every=25, log_every=25,
                           ckpt_every=500, threads=1),
    )


def _stories() -> Preset:
    return Preset(
        "stories", "small char model on the generated stories corpus (sentiment, IOI labels)",
        ModelConfig(n_layers=4, n_heads=4, d_model=128, n_ctx=128),
        TrainConfig(data=DataSpec(corpus="stories", n_stories=3000), lr=1e-3, min_lr=1e-4,
                    warmup_steps=100, max_steps=2000, batch_size=16, betas=(0.9, 0.99),
                    eval_every=250, eval_steps=10),
    )


def _task_preset(name: str, task: str, description: str, **task_kwargs: object) -> Preset:
    return Preset(
        name, description,
        ModelConfig(n_layers=2, n_heads=4, d_model=64, n_ctx=32),
        TrainConfig(data=DataSpec(task=task, task_kwargs=dict(task_kwargs)), lr=3e-3,
                    warmup_steps=50, max_steps=1500, batch_size=64, weight_decay=0.01,
                    eval_every=100, eval_steps=8),
    )


_PRESETS: dict[str, Callable[[], Preset]] = {
    "bigram": _bigram,
    "baby-cpu": _baby_cpu,
    "shakespeare-char": _shakespeare_char,
    "induction-2l": _induction_2l,
    "modadd": _modadd,
    "modadd-cpu": _modadd_cpu,
    "stories": _stories,
    "reverse": lambda: _task_preset("reverse", "reverse", "reverse a list of 8 digits",
                                    n_items=8, n_symbols=10),
    "copy": lambda: _task_preset("copy", "copy", "copy a list of 8 digits",
                                 n_items=8, n_symbols=10),
    "sort": lambda: _task_preset("sort", "sort", "sort a list of 8 digits",
                                 n_items=8, n_symbols=10),
    "addition": lambda: _task_preset("addition", "addition", "add two 3-digit numbers",
                                     n_digits=3),
}


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return list(_PRESETS)


def get_preset(name: str) -> Preset:
    """A fresh copy of preset ``name`` (mutating it never changes the built-in one)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(_PRESETS)}")
    return _PRESETS[name]()


def describe_presets() -> str:
    """One line per preset, for ``--help``."""
    return "\n".join(f"  {name:17s} {get_preset(name).description}" for name in _PRESETS)
