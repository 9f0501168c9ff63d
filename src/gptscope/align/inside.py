"""Look inside what alignment changed: the base and the tuned model on the same inputs.

`compare_models(base, tuned)` measures four things, the last three at every point along the
residual stream (point k is the stream after k blocks: 0 = the embeddings, n_layers = what
the unembedding reads):

1. **weight changes** ``||W_tuned - W_base|| / ||W_base||`` per parameter, per component
   (embeddings, each layer's attention, MLP and norms, the unembedding) and per block; when
   the tuning grew the vocabulary (chat tokens after the old ids), only the old ids' rows;
2. **a sentiment probe** (`interp.probe_layers`, linear; the same recipe, texts and split
   for both models): held-out stories, each token from the end of a sentence's first sentiment word
   to its full stop labelled with the sentence's sentiment (positive or negative sentences
   only): where along the stream the sentiment is linearly readable, and whether it moved;
3. **the logit-lens sentiment**: logsumexp of the positive words' first-token logits minus
   that of the negative words' (first tokens both lists share dropped), reading each point
   through ``ln_final`` and the unembedding (`interp.resid.accumulated_resid`, as the logit
   lens does), at the last position of neutral prompts that end where the next word carries
   the sentiment ("the dog " before the verb, "the dog sees the " before the adjective);
4. **is the tuning a learned steering vector?** The cosine between the tuning's mean change
   to the residual stream on those prompts (tuned - base, averaged over prompts and
   positions) and the base model's sentiment steering vector at that point
   (`SteeringVector.from_pairs` on `sentiment_pairs` cut after "<verb> the ", where the
   stories model tracks sentiment; see tests/steering/test_steering_stories.py). Two
   references: the expected |cos| of random directions in d_model dimensions
   (`random_cosine`), and the mean |cos| between the change and differences of two random
   base activations at that point (residual streams are not isotropic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptscope.data.stories import (
    ANIMALS,
    NAMES,
    NEGATIVE_WORDS,
    NEUTRAL_VERBS,
    POSITIVE_WORDS,
    Story,
    generate_stories,
    sentiment_pairs,
)
from gptscope.interp.probes import probe_layers
from gptscope.interp.resid import accumulated_resid
from gptscope.model.cache import ActivationCache
from gptscope.model.hooks import act_name
from gptscope.steering import SteeringVector

# The stories corpus trains on generate_stories(n, seed=0); the probe reads other stories.
HELD_OUT_SEED = 4242
_WORD = re.compile(r"[a-z]+")
# The columns of `AlignmentDiff.point_rows`.
POINT_HEADER = ("point", "probe base", "probe tuned", "lens base", "lens tuned",
                "cos(change, vector)", "|cos| act. diff.", "|change|", "|vector|",
                "change / vector")


@dataclass
class AlignmentDiff:
    """What tuning changed, base vs tuned on the same inputs (lists are JSON-ready floats).

    labels, hooks: the residual points ``[n_points = n_layers + 1]`` ("embed", "after L0",
    ...; ``resid_pre`` of each layer, then the last ``resid_post``). weight_change: relative
    change per component ("embed", "L0 attn", "L0 mlp", "L0 norm", ..., "unembed");
    block_change ``[n_layers]`` per whole block; param_change per parameter (inf where a
    zero base weight moved). The rest is per point and empty when ``sentiment`` is False:
    probe_base / probe_tuned (test accuracy; probe_chance = majority share of the test set),
    lens_base / lens_tuned (nats, > 0 leans positive), cosine (NaN where the change or the
    steering vector is zero), random_cos (one number), activation_cos, change_norm,
    steer_norm and steer_coef (the change along the vector, in vectors: change.v / |v|^2).
    """

    labels: list[str]
    hooks: list[str]
    weight_change: dict[str, float]
    block_change: list[float]
    param_change: dict[str, float]
    sentiment: bool = False
    probe_base: list[float] = field(default_factory=list)
    probe_tuned: list[float] = field(default_factory=list)
    probe_chance: float = float("nan")
    n_probe_examples: int = 0
    lens_base: list[float] = field(default_factory=list)
    lens_tuned: list[float] = field(default_factory=list)
    cosine: list[float] = field(default_factory=list)
    random_cos: float = float("nan")
    activation_cos: list[float] = field(default_factory=list)
    change_norm: list[float] = field(default_factory=list)
    steer_norm: list[float] = field(default_factory=list)
    steer_coef: list[float] = field(default_factory=list)
    n_prompts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def point_rows(self) -> list[list[str]]:
        """One row per residual point: label, probe base/tuned, lens base/tuned, cosine,
        activation-difference |cos|, |change|, |vector|, change along the vector."""
        cols = ((self.probe_base, ".3f"), (self.probe_tuned, ".3f"), (self.lens_base, "+.3f"),
                (self.lens_tuned, "+.3f"), (self.cosine, "+.3f"), (self.activation_cos, ".3f"),
                (self.change_norm, ".3f"), (self.steer_norm, ".3f"), (self.steer_coef, "+.3f"))
        return [[label, *("n/a" if math.isnan(c[i]) else format(c[i], spec) for c, spec in cols)]
                for i, label in enumerate(self.labels)]

    def summary(self) -> str:
        """A plain-text table of every number."""
        lines = ["weight change: " + ", ".join(f"{k} {v:.4f}"
                                               for k, v in self.weight_change.items())]
        if self.sentiment:
            rows = [list(POINT_HEADER), *self.point_rows()]
            widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
            lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
            lines.append(f"probe chance {self.probe_chance:.3f} ({self.n_probe_examples} "
                         f"examples); random |cos| in d_model dims {self.random_cos:.3f}")
        return "\n".join(lines)


# -- the residual points ------------------------------------------------------------------


def residual_points(model: Any) -> list[str]:
    """The hooks of the stream after 0..n_layers blocks: ``[n_layers + 1]`` names (the
    points `accumulated_resid` and the logit lens read)."""
    n = model.cfg.n_layers
    return [act_name("resid_pre", i) for i in range(n)] + [act_name("resid_post", n - 1)]


def point_labels(n_layers: int) -> list[str]:
    return ["embed"] + [f"after L{i}" for i in range(n_layers)]


# -- 1. weight changes --------------------------------------------------------------------


def component(name: str) -> str:
    """The component a parameter belongs to: "embed", "L{i} attn|mlp|norm" or "unembed"."""
    if name.startswith("blocks."):
        _, layer, part = name.split(".", 2)
        kind = part.split(".")[0]
        return f"L{layer} {kind if kind in ('attn', 'mlp') else 'norm'}"
    if name.startswith(("ln_final", "unembed", "mlm_head")):
        return "unembed"
    return "embed"


def _shared(base: Tensor, tuned: Tensor, base_vocab: int, name: str) -> Tensor:
    """``tuned`` cut to ``base``'s shape along the vocabulary axis (the old ids' rows)."""
    if base.shape == tuned.shape:
        return tuned
    dims = [d for d in range(base.dim()) if base.dim() == tuned.dim()
            and base.shape[d] != tuned.shape[d]]
    if len(dims) != 1 or base.shape[dims[0]] != base_vocab or tuned.shape[dims[0]] < base_vocab:
        raise ValueError(f"{name}: base {list(base.shape)} vs tuned {list(tuned.shape)}; only "
                         "a vocabulary grown at the end can be compared")
    return tuned.narrow(dims[0], 0, base_vocab)


def _check_same_shape(base: Any, tuned: Any) -> None:
    free = ("d_vocab", "seed", "dropout")  # the vocabulary may grow; the rest is no shape
    a = {k: v for k, v in base.cfg.to_dict().items() if k not in free}
    b = {k: v for k, v in tuned.cfg.to_dict().items() if k not in free}
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if diff:
        raise ValueError(f"the models differ in {', '.join(diff)}; a tuned model keeps its "
                         "base's shape (only the vocabulary may grow)")
    if tuned.cfg.d_vocab < base.cfg.d_vocab:
        raise ValueError(f"the tuned model has fewer ids ({tuned.cfg.d_vocab}) than its base "
                         f"({base.cfg.d_vocab}); pass (base, tuned) in that order")


@torch.no_grad()
def weight_changes(base: Any, tuned: Any) -> tuple[dict[str, float], list[float],
                                                   dict[str, float]]:
    """``(per component, per block [n_layers], per parameter)`` relative changes
    ``||W_tuned - W_base||_F / ||W_base||_F`` (a group: over all its parameters at once)."""
    _check_same_shape(base, tuned)
    tuned_params = dict(tuned.named_parameters())
    sums: dict[str, list[float]] = {}  # group -> [sum of squared change, of squared base]
    params: dict[str, float] = {}
    for name, w in base.named_parameters():
        w = w.detach().float()
        t = _shared(w, tuned_params[name].detach().float(), base.cfg.d_vocab, name)
        change, size = float((t - w).pow(2).sum()), float(w.pow(2).sum())
        params[name] = _ratio(change, size)
        groups = [component(name)]
        if name.startswith("blocks."):
            groups.append("L" + name.split(".")[1])
        for g in groups:
            acc = sums.setdefault(g, [0.0, 0.0])
            acc[0] += change
            acc[1] += size
    blocks = [_ratio(*sums.pop(f"L{i}", [0.0, 1.0])) for i in range(base.cfg.n_layers)]
    return {g: _ratio(c, s) for g, (c, s) in sums.items()}, blocks, params


def _ratio(change_sq: float, size_sq: float) -> float:
    if change_sq == 0.0:
        return 0.0
    return math.sqrt(change_sq / size_sq) if size_sq > 0 else math.inf


# -- inputs -------------------------------------------------------------------------------


def neutral_prompts() -> list[str]:
    """Sentence openings without sentiment words, each ending where the next word carries
    the sentiment: "\\n<subject> " (the verb) and "\\n<subject> <neutral verb> the " (the
    adjective), for every name, animal and plural animal: 36 subjects x 5 = 180 prompts.
    They start with a newline, as a story (and a PPO rollout from "\\n") does."""
    subjects = [*NAMES, *(f"the {a}" for a in ANIMALS), *(f"the {a}s" for a in ANIMALS)]
    prompts = []
    for s in subjects:
        k = 1 if s.endswith("s") and s.split()[-1][:-1] in ANIMALS else 0
        prompts.append(f"\n{s} ")
        prompts += [f"\n{s} {verb[k]} the " for verb in NEUTRAL_VERBS]
    return prompts


def slot_pairs(n: int = 128, seed: int = 0) -> list[tuple[str, str]]:
    """`sentiment_pairs` with a sentiment verb, cut after "<verb> the " (the adjective slot,
    where the stories model tracks sentiment); copula pairs are skipped, so fewer than n."""
    out = []
    for pos, neg in sentiment_pairs(n, seed):
        pw, nw = pos.split(" "), neg.split(" ")
        i = next(i for i, (a, b) in enumerate(zip(pw, nw)) if a != b)
        if pw[i] in ("is", "are") or pw[i + 1] != "the":
            continue
        out.append((" ".join(pw[: i + 2]) + " ", " ".join(nw[: i + 2]) + " "))
    return out


def first_token_ids(tokenizer: Any, words: Iterable[str]) -> set[int]:
    """The id each word starts with after a space (" loves" -> "l" for characters)."""
    space = tokenizer.encode(" ")
    out = set()
    for w in words:
        ids = tokenizer.encode(" " + w)
        out.add(ids[len(space)] if ids[: len(space)] == space else ids[0])
    return out


def sentiment_token_ids(tokenizer: Any, positive: Iterable[str] = POSITIVE_WORDS,
                        negative: Iterable[str] = NEGATIVE_WORDS) -> tuple[list[int], list[int]]:
    """First-token ids of the positive and of the negative words, ids both share dropped
    (with characters: "l", "p" vs "a", "c", "f", "s")."""
    pos, neg = first_token_ids(tokenizer, positive), first_token_ids(tokenizer, negative)
    pos, neg = sorted(pos - neg), sorted(neg - pos)
    if not pos or not neg:
        raise ValueError("every first token of the positive words is also one of a negative "
                         "word (or the other way round); pass other word lists")
    return pos, neg


def _sentiment_chars(story: Story) -> list[int]:
    """Per character of ``story.text``: 1 / 0 (a positive / negative sentence) from the end
    of the sentence's first sentiment word to its full stop, -1 elsewhere."""
    out = [-1] * len(story.text)
    for span in story.spans:
        label = span.labels
        if label.get("kind") != "sentiment" or label["sentiment"] == "neutral":
            continue
        for m in _WORD.finditer(story.text, span.start, span.end):
            if m.group() in POSITIVE_WORDS or m.group() in NEGATIVE_WORDS:
                out[m.end(): span.end] = [int(label["sentiment"] == "positive")] * (
                    span.end - m.end())
                break
    return out


def sentiment_probe_data(tokenizer: Any, n_stories: int = 300, seed: int = HELD_OUT_SEED,
                         n_ctx: int = 128) -> tuple[Tensor, Tensor]:
    """Held-out stories as tokens ``[n_stories, pos]`` (cut at ``n_ctx``, padded with id 0)
    and per-token labels ``[n_stories, pos]`` (`_sentiment_chars` at each token's last
    character; -1 on padding)."""
    rows, labels = [], []
    for story in generate_stories(n_stories, seed=seed):
        ids = tokenizer.encode(story.text)[:n_ctx]
        chars, at, lab = _sentiment_chars(story), 0, []
        for i in ids:
            at += len(tokenizer.decode([i]))
            lab.append(chars[at - 1] if 0 < at <= len(chars) else -1)
        rows.append(ids)
        labels.append(lab)
    width = max(len(r) for r in rows)
    pad = lambda r, v: r + [v] * (width - len(r))  # noqa: E731
    return (torch.tensor([pad(r, 0) for r in rows]),
            torch.tensor([pad(lab, -1) for lab in labels]))


# -- 2-4. the measures --------------------------------------------------------------------


def _encode(model: Any, prompts: Sequence[str | Tensor]) -> list[Tensor]:
    return [model.to_tokens(p)[0] if isinstance(p, str) else torch.as_tensor(p).long()
            for p in prompts]


@torch.no_grad()
def _residuals(model: Any, prompts: list[Tensor]) -> list[dict[str, Tensor]]:
    """Per prompt ``[pos]``: {hook: ``[1, pos, d_model]``} at every residual point."""
    hooks = residual_points(model)
    return [model.activations(p[None].to(model.W_U.device), hooks) for p in prompts]


def residual_change(base_acts: list[dict[str, Tensor]], tuned_acts: list[dict[str, Tensor]]
                    ) -> Tensor:
    """Mean over prompts and positions of tuned - base residual: ``[n_points, d_model]``."""
    hooks = list(base_acts[0])
    diffs = [torch.cat([(t[h] - b[h])[0] for b, t in zip(base_acts, tuned_acts)]).mean(0)
             for h in hooks]
    return torch.stack(diffs).float().cpu()


@torch.no_grad()
def lens_sentiment(model: Any, acts: list[dict[str, Tensor]], positive_ids: list[int],
                   negative_ids: list[int]) -> Tensor:
    """Mean over prompts, at each one's last position, of logsumexp(logits[positive_ids]) -
    logsumexp(logits[negative_ids]) after each residual point: ``[n_points]`` (nats)."""
    rows = []
    for a in acts:
        stack = accumulated_resid(ActivationCache(a, model), apply_ln=True)  # [pt, 1, pos, d]
        logits = model.unembed(stack[:, 0, -1:]).float()[:, 0]  # [n_points, d_vocab]
        rows.append(logits[:, positive_ids].logsumexp(-1) - logits[:, negative_ids].logsumexp(-1))
    return torch.stack(rows).mean(0).cpu()


def sentiment_steering(model: Any, pairs: Sequence[tuple[str, str]]) -> Tensor:
    """The CAA sentiment vector (positive - negative, last position) at every residual
    point: ``[n_points, d_model]``."""
    return torch.stack([SteeringVector.from_pairs(model, pairs, h).vector.float().cpu()
                        for h in residual_points(model)])


def cosines(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine of ``a``, ``b`` ``[n, d]``: ``[n]``, NaN where a row is zero."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(1e-30)
    return torch.where((na > 0) & (nb > 0), cos, torch.nan)


def random_cosine(d: int) -> float:
    """E|cos| between a fixed vector and a uniformly random direction in ``d`` dimensions:
    Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)), about sqrt(2 / (pi d)) (0.0707 for d = 128)."""
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def activation_cosine(change: Tensor, base_acts: list[dict[str, Tensor]], n: int = 2000,
                      seed: int = 0) -> Tensor:
    """Mean |cos| between the change ``[n_points, d_model]`` and ``n`` differences of two
    random base activations at each point (seeded; equal pairs skipped): ``[n_points]``, NaN
    for a zero change."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, h in enumerate(base_acts[0]):
        x = torch.cat([a[h][0] for a in base_acts]).float().cpu()
        i, j = (torch.randint(0, len(x), (n,), generator=g) for _ in range(2))
        diffs = (x[i] - x[j])[(i != j)]
        out.append(cosines(diffs, change[k].expand_as(diffs)).abs().nanmean())
    return torch.stack(out)


def probe_sentiment(model: Any, tokens: Tensor, labels: Tensor, seed: int = 0,
                    kind: str = "linear") -> tuple[list[float], float]:
    """Test accuracy of the sentiment probe at every residual point ``[n_points]`` and the
    majority share of the test set (`probe_layers`, shuffled-label control). kind "linear"
    (ridge on one-hot targets, closed form) scores within a point of "logistic" on the
    stories model at a third of the time."""
    results = probe_layers(model, tokens, labels, hooks=residual_points(model), kind=kind,
                           control="shuffle", seed=seed)
    return [r.accuracy for r in results.values()], next(iter(results.values())).baseline


# -- all together -------------------------------------------------------------------------


def compare_models(base: Any, tuned: Any, prompts: Sequence[str | Tensor] | None = None,
                   pairs: Sequence[tuple[str, str]] | None = None, n_stories: int = 300,
                   seed: int = 0, steering: Tensor | None = None,
                   probe_data: tuple[Tensor, Tensor] | None = None,
                   sentiment: bool = True) -> AlignmentDiff:
    """Base vs tuned on the same inputs (`AlignmentDiff`); both are put in eval mode.

    prompts: neutral prompts (strings, encoded by the base's tokenizer, or ids ``[pos]``;
    default `neutral_prompts`); pairs: (positive, negative) texts for the base's steering
    vector (default `slot_pairs(128, seed)`); steering: a direction ``[d_model]`` or one per
    point ``[n_points, d_model]`` instead; probe_data: tokens and labels ``[batch, pos]``
    instead of `sentiment_probe_data(n_stories)`. sentiment=False: weight changes only.
    Deterministic: every draw is seeded by ``seed``.
    """
    base.eval()
    tuned.eval()
    weights, blocks, params = weight_changes(base, tuned)
    hooks = residual_points(base)
    diff = AlignmentDiff(point_labels(base.cfg.n_layers), hooks, weights, blocks, params)
    if not sentiment:
        return diff
    tokens = _encode(base, neutral_prompts() if prompts is None else prompts)
    acts_b, acts_t = _residuals(base, tokens), _residuals(tuned, tokens)
    change = residual_change(acts_b, acts_t)
    if steering is None:
        steering = sentiment_steering(base, slot_pairs(128, seed) if pairs is None else pairs)
    steering = torch.as_tensor(steering).float().cpu().expand_as(change)
    pos_ids, neg_ids = sentiment_token_ids(base.tokenizer)
    if probe_data is None:
        probe_data = sentiment_probe_data(base.tokenizer, n_stories, n_ctx=base.cfg.n_ctx)
    probe_b, chance = probe_sentiment(base, *probe_data, seed=seed)
    probe_t, _ = probe_sentiment(tuned, *probe_data, seed=seed)
    norms = steering.norm(dim=-1)
    coef = (change * steering).sum(-1) / norms.pow(2)
    return replace(
        diff, sentiment=True, probe_base=probe_b, probe_tuned=probe_t, probe_chance=chance,
        n_probe_examples=int((probe_data[1] >= 0).sum()),
        lens_base=lens_sentiment(base, acts_b, pos_ids, neg_ids).tolist(),
        lens_tuned=lens_sentiment(tuned, acts_t, pos_ids, neg_ids).tolist(),
        cosine=cosines(change, steering).tolist(), random_cos=random_cosine(base.cfg.d_model),
        activation_cos=activation_cosine(change, acts_b, seed=seed).tolist(),
        change_norm=change.norm(dim=-1).tolist(), steer_norm=norms.tolist(),
        steer_coef=torch.where(norms > 0, coef, torch.nan).tolist(), n_prompts=len(tokens))


def base_of(run: str | Path) -> Path | None:
    """The run a tuned run started from (``train_config.json`` field ``init_from``), or None.

    A relative path is read from the working directory, else from the run's own folder."""
    from gptscope.train.config import TrainConfig

    file = Path(run) / "train_config.json"
    if not file.is_file():
        return None
    init = TrainConfig.from_json(file).init_from
    if init is None:
        return None
    path = Path(init)
    if not path.is_absolute() and not path.exists() and (Path(run) / path).exists():
        path = Path(run) / path
    return path


def compare_runs(base_run: str | Path, tuned_run: str | Path, **kwargs: Any) -> AlignmentDiff:
    """`compare_models` on two run folders (`open_run`: their newest good weights)."""
    from gptscope.train.runs import open_run

    return compare_models(open_run(base_run)[0], open_run(tuned_run)[0], **kwargs)


def is_stories_run(run: str | Path) -> bool:
    """Whether ``run`` trained on the stories grammar (the corpus or its instructions), so
    the sentiment measures mean something for it."""
    from gptscope.train.config import TrainConfig
    from gptscope.train.data import STORIES_INSTRUCTIONS

    file = Path(run) / "train_config.json"
    if not file.is_file():
        return False
    data = TrainConfig.from_json(file).data
    return data.corpus == "stories" or data.chat == STORIES_INSTRUCTIONS
