"""Checks for lesson 8's attribution exercises: direct logit attribution and a neuron's top
activating examples.

direct_logit_attribution is compared with the library's ``gptscope.interp.attribution.dla``
(its token and position embeddings added up into one "embed"). top_activating_examples is
compared with a stable sort of the cached ``hook_post`` written here: the library's
``interp.neurons.top_activating_examples`` finds the same values, but it orders exact ties
as ``topk`` leaves them, and the exercise's contract fixes that order (row-major).
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._answers import dict_answer, tuple_answer
from gptscope.course.checks._common import call, compare, run_cases, run_check
from gptscope.course.checks.interp import interp_model
from gptscope.course.result import CheckResult
from gptscope.interp.attribution import dla

# -- direct_logit_attribution -----------------------------------------------------------------

DLA_NO_SCALE = ("the final LayerNorm's scale is ignored: divide each (centred) component by "
                "cache['ln_final.hook_scale'] at that position")
DLA_OWN_SCALE = ("each component was divided by its own scale: freeze the scale of the whole "
                 "residual stream (ln_final.hook_scale) and divide every component by it")
DLA_RECOMPUTED = ("ln_final was run on each component separately (its own statistics and "
                  "bias): centre each component, divide by the frozen shared scale, times "
                  "ln_final.w")
DLA_NOT_CENTRED = ("the components were not centred: LayerNorm subtracts the mean, so use "
                   "x - x.mean(-1) of each component")
DLA_NO_WEIGHT = ("ln_final.w is missing: the direction read is ln_final.w * (W_U[:, correct] "
                 "- W_U[:, incorrect])")
DLA_ONE_TOKEN = ("used the unembedding of the correct token alone: read the difference "
                 "W_U[:, correct] - W_U[:, incorrect]")
DLA_NO_POS_EMBED = ("the position embeddings are missing from \"embed\": it is hook_embed + "
                    "hook_pos_embed")
DLA_WRONG_POS = "read the wrong position: use tokens position `pos` (negative from the end)"

# (seed, n_layers, batch, n_pos, pos)
DLA_CASES = [(0, 2, 3, 6, -1), (1, 3, 2, 7, 2), (2, 1, 4, 5, -3)]


def _components(model: Any, cache: Any, at: int) -> dict[str, Tensor]:
    """The final residual stream's parts at position ``at``: embed [batch, d_model], heads
    [batch, layer, head, d_model], mlp [batch, layer, d_model]."""
    n = model.cfg.n_layers
    heads = [torch.einsum("bhd,hdm->bhm", cache[f"blocks.{i}.attn.hook_z"][:, at],
                          model.blocks[i].attn.W_O) for i in range(n)]
    return {"embed": cache["hook_embed"][:, at] + cache["hook_pos_embed"][:, at],
            "heads": torch.stack(heads, 1),
            "mlp": torch.stack([cache[f"blocks.{i}.hook_mlp_out"][:, at] for i in range(n)], 1)}


def _dla_variant(model: Any, cache: Any, correct: Tensor, incorrect: Tensor | None, at: int,
                 scale: str = "shared", centre: bool = True, weight: bool = True,
                 recompute: bool = False, pos_embed: bool = True) -> dict[str, Tensor]:
    """Each component's direct effect with one mistake switched on: ``scale`` "shared"
    (right), "none" or "own"; no centring; no ln_final.w; ln_final rerun per component;
    ``incorrect`` None reads the correct token's column alone; ``pos_embed`` False leaves the
    position embeddings out of "embed"."""
    ln = model.ln_final
    read = model.W_U[:, correct].T - (model.W_U[:, incorrect].T if incorrect is not None
                                      else 0)  # [batch, d_model]
    shared = cache["ln_final.hook_scale"][:, at]  # [batch, 1]
    out = {}
    parts = _components(model, cache, at)
    if not pos_embed:
        parts["embed"] = cache["hook_embed"][:, at]
    for name, x in parts.items():
        extra = (1,) * (x.dim() - 2)
        if recompute:
            out[name] = (ln(x) * read.view(-1, *extra, read.shape[-1])).sum(-1)
            continue
        if centre:
            x = x - x.mean(-1, keepdim=True)
        if scale == "shared":
            x = x / shared.view(-1, *extra, 1)
        elif scale == "own":
            x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
        direction = read * ln.w if weight else read
        out[name] = (x * direction.view(-1, *extra, direction.shape[-1])).sum(-1)
    return out


def _dla_case(fn: Callable[..., Any], seed: int, n_layers: int, batch: int, n_pos: int,
              pos: int) -> str:
    model = interp_model(seed, n_layers)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 20, (batch, n_pos), generator=g)
    correct, incorrect = torch.randperm(20, generator=g)[:2 * batch].view(2, batch)
    case = f"n_layers={n_layers}, batch={batch}, {n_pos} positions, pos={pos}"
    with torch.no_grad():
        truth = dla(model, tokens, correct, incorrect, pos)
        want = {"embed": truth.embed_per_example + truth.pos_embed_per_example,
                "heads": truth.heads_per_example, "mlp": truth.mlp_per_example}
        _, cache = model.run_with_cache(tokens)
        got = dict_answer(call(fn, model, tokens.clone(), correct.clone(), incorrect.clone(),
                               pos), ("embed", "heads", "mlp"), "direct_logit_attribution")
        at = pos % n_pos

        made: dict[str, dict[str, Tensor]] = {}  # each wrong answer, built once

        def variant(message: str, **kw: Any) -> tuple[str, Callable[[], dict[str, Tensor]]]:
            wrong = {"incorrect": incorrect, "at": at, **kw}

            def make() -> dict[str, Tensor]:
                if message not in made:
                    made[message] = _dla_variant(model, cache, correct, **wrong)
                return made[message]
            return message, make
        variants = dict([
            variant(DLA_NO_SCALE, scale="none"), variant(DLA_OWN_SCALE, scale="own"),
            variant(DLA_RECOMPUTED, recompute=True), variant(DLA_NOT_CENTRED, centre=False),
            variant(DLA_NO_WEIGHT, weight=False), variant(DLA_ONE_TOKEN, incorrect=None),
            variant(DLA_NO_POS_EMBED, pos_embed=False),
            variant(DLA_WRONG_POS, at=0 if at == n_pos - 1 else n_pos - 1),
        ])
        for key, axes in (("embed", ("batch",)), ("heads", ("batch", "layer", "head")),
                          ("mlp", ("batch", "layer"))):
            compare(got[key], want[key], case, {
                message: lambda make=make: make()[key] for message, make in variants.items()
            }, what=f'the "{key}" entry', atol=1e-4, axes=axes)
    return case


def check_direct_logit_attribution(fn: Callable[..., Any]) -> CheckResult:
    return run_check("direct_logit_attribution",
                     lambda: run_cases(DLA_CASES, lambda c: _dla_case(fn, *c)))


# -- top_activating_examples ------------------------------------------------------------------

TOP_PRE = ("read hook_pre, before the nonlinearity: rank the neuron's hook_post "
           "activations")
TOP_PER_ROW = ("took each text's maximum only: rank every (batch, position) of every row; "
               "one text may hold several of the top k")
TOP_ASCENDING = "the order is ascending: return the k largest activations, largest first"
TOP_OFF_BY_ONE = ("the positions are off by one: give the index into tokens' position axis, "
                  "counted from 0")
TOP_TIES = ("equal activations came out later position first: ties go to the earlier "
            "(batch, position) in row-major order (a stable sort; topk need not keep it)")
TOP_COLUMNS = "the columns of `where` are swapped: each row is (batch index, position)"

# (seed, n_layers, batch, n_pos, layer, neuron, k, the batch written twice)
TOP_CASES = [
    (0, 2, 4, 8, 1, 5, 6, False),
    (1, 2, 3, 10, 0, 17, 5, False),
    (2, 1, 2, 6, 0, 3, 4, True),
    (3, 2, 6, 5, 1, 40, 3, False),
]


def _ranked(acts: Tensor, k: int, descending: bool = True, later_first: bool = False
            ) -> tuple[Tensor, Tensor]:
    """(values [k], where [k, 2]) of ``acts`` [batch, pos], by a stable sort of the flat
    values; ``later_first`` orders ties the other way round."""
    flat = acts.flatten()
    if later_first:
        values, order = flat.flip(0).sort(descending=descending, stable=True)
        order = flat.numel() - 1 - order
    else:
        values, order = flat.sort(descending=descending, stable=True)
    where = torch.stack([order // acts.shape[1], order % acts.shape[1]], -1)
    return values[:k], where[:k]


def _top_variants(post: Tensor, pre: Tensor, k: int) -> dict[str, Callable[[], tuple]]:
    right = _ranked(post, k)
    best, best_pos = post.max(1)
    rows = best.sort(descending=True, stable=True).indices[:k]
    return {
        TOP_PRE: lambda: _ranked(pre, k),
        TOP_PER_ROW: lambda: (best[rows], torch.stack([rows, best_pos[rows]], -1)),
        TOP_ASCENDING: lambda: (right[0].flip(0), right[1].flip(0)),
        TOP_OFF_BY_ONE: lambda: (right[0], right[1] + torch.tensor([0, 1])),
        TOP_TIES: lambda: _ranked(post, k, later_first=True),
        TOP_COLUMNS: lambda: (right[0], right[1].flip(-1)),
    }


def _top_case(fn: Callable[..., Any], seed: int, n_layers: int, batch: int, n_pos: int,
              layer: int, neuron: int, k: int, twice: bool) -> str:
    model = interp_model(seed, n_layers)
    tokens = torch.randint(0, 20, (batch, n_pos), generator=torch.Generator().manual_seed(seed))
    if twice:  # the same texts twice: every activation ties with its copy's
        tokens = torch.cat([tokens, tokens])
    case = (f"tokens [{tokens.shape[0]}, {n_pos}]{' (each text twice)' if twice else ''}, "
            f"layer {layer}, neuron {neuron}, k={k}")
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        post = cache[f"blocks.{layer}.mlp.hook_post"][..., neuron]
        pre = cache[f"blocks.{layer}.mlp.hook_pre"][..., neuron]
        got = tuple_answer(call(fn, model, tokens.clone(), layer, neuron, k),
                           ("values", "where"), "top_activating_examples")
    want = _ranked(post, k)
    variants = _top_variants(post, pre, k)
    for i, (what, axes) in enumerate((("values", ("k",)), ("where", ("k", "column")))):
        compare(got[i], want[i], case, {m: lambda make=make: make()[i]
                                        for m, make in variants.items()},
                what=what, atol=1e-5, axes=axes)
    return case


def check_top_activating_examples(fn: Callable[..., Any]) -> CheckResult:
    return run_check("top_activating_examples",
                     lambda: run_cases(TOP_CASES, lambda c: _top_case(fn, *c)))
