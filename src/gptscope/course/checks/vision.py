"""Checks for lesson 5c: vision transformers (patchify, the whole ViT forward, the
position-embedding similarity grid).

The truths are the library's own, in float64: `gptscope.model.vision.patchify`,
`gptscope.Transformer.classify` with the learner's weights loaded, and
`gptscope.viz.vision.position_similarity`. The cases are built so each known mistake
shows: images with several channels and more patch columns than rows (column-major order
and channel-last flattening then differ from the right answer), weights far from their
initial values (a missing bias or norm shows), position rows of different lengths (a dot
product is not a cosine).
"""

# The wrong-variant lambdas are called by compare() in the same case that makes them, so
# the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ACTIVATIONS, ModelConfig
from gptscope.course.checks._answers import tensor_answer
from gptscope.course.checks._common import (
    call,
    compare,
    float32_atol,
    randn,
    run_cases,
    run_check,
)
from gptscope.course.result import CheckResult
from gptscope.model.transformer import Transformer
from gptscope.model.vision import patchify as library_patchify
from gptscope.viz.vision import position_similarity as library_similarity

# -- patchify ---------------------------------------------------------------------------------

COLUMN_MAJOR = ("the patches run down the columns first (column-major): raster order goes left "
                "to right along each row of patches, then down; put the patch-row index before "
                "the patch-column index")
CHANNEL_LAST = ("each patch is flattened channel last (pixel row, pixel column, channel): "
                "flatten it channel first, (channel, row, column), as unfold and a Conv2d "
                "weight do")
PIXELS_TRANSPOSED = ("the pixels inside a patch are flattened column by column: run along "
                     "each pixel row first (channel, row, then column)")
NAIVE_RESHAPE = ("the image was reshaped straight to [batch, n_patches, C*p*p]: a patch's "
                 "pixels are not next to each other in memory; split H and W into "
                 "(patches, p) and permute before flattening")
NOT_FLATTENED = ("the patches are not flattened: reshape each into one vector of C * p * p "
                 "values, [batch, n_patches, C * p * p]")
UNFOLD_LAYOUT = ("the axes are [batch, C*p*p, n_patches] (unfold's layout): transpose the "
                 "last two, .transpose(1, 2)")
GRID_KEPT = ("the patch grid is kept as two axes [batch, rows, cols, C*p*p]: merge them "
             "into one n_patches axis, in raster order")
CLASS_ROW = ("a class-token row was added: patchify returns the patches only; the class "
             "token joins later, in the embedding")
OVERLAPPING = ("the patches overlap (stride 1): cut non-overlapping patches, the stride "
               "equal to patch_size")
CHANNEL_DROPPED = ("only the first channel was kept: every patch holds all C channels, "
                   "C * p * p values")

PATCH_CASES = [  # (label, image shape [batch, C, H, W], patch size, dtype, seed)
    ("3 channels, 4x6 images, 2x2 patches (2 rows of 3 patches)", (2, 3, 4, 6), 2,
     torch.float64, 0),
    ("1 channel, 8x8 images, 2x2 patches", (3, 1, 8, 8), 2, torch.float64, 1),
    ("2 channels, 8x12 images, 4x4 patches, float32", (2, 2, 8, 12), 4, torch.float32, 2),
    ("2 channels, 6x3 images, 3x3 patches (2 rows of 1)", (1, 2, 6, 3), 3, torch.float64, 3),
]


def patchify_variant(images: Tensor, p: int, mistake: str) -> Tensor:
    """One mistake's patchify, [batch, C, H, W] -> what that mistake returns."""
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // p, p, w // p, p)
    n, d = (h // p) * (w // p), c * p * p
    if mistake == "column_major":
        return grid.permute(0, 4, 2, 1, 3, 5).reshape(b, n, d)
    if mistake == "channel_last":
        return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, n, d)
    if mistake == "pixels_transposed":
        return grid.permute(0, 2, 4, 1, 5, 3).reshape(b, n, d)
    if mistake == "naive":
        return images.reshape(b, n, d)
    if mistake == "not_flattened":
        return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, n, c, p, p)
    if mistake == "unfold_layout":
        return F.unfold(images, p, stride=p)
    if mistake == "grid_kept":
        return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, h // p, w // p, d)
    if mistake == "class_row":
        right = library_patchify(images, p)
        return torch.cat([torch.zeros_like(right[:, :1]), right], 1)
    if mistake == "overlapping":
        return F.unfold(images, p, stride=1).transpose(1, 2)
    if mistake == "channel_dropped":
        return library_patchify(images[:, :1], p)
    raise ValueError(f"no patchify mistake {mistake!r}")


PATCH_MISTAKES = [(COLUMN_MAJOR, "column_major"), (CHANNEL_LAST, "channel_last"),
                  (PIXELS_TRANSPOSED, "pixels_transposed"), (NAIVE_RESHAPE, "naive"),
                  (NOT_FLATTENED, "not_flattened"), (UNFOLD_LAYOUT, "unfold_layout"),
                  (GRID_KEPT, "grid_kept"), (CLASS_ROW, "class_row"),
                  (OVERLAPPING, "overlapping"), (CHANNEL_DROPPED, "channel_dropped")]


def check_patchify(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, shape, p, dtype, seed = spec
        images = randn(*shape, seed=seed, dtype=dtype)
        got = tensor_answer(call(fn, images.clone(), p), "what patchify returned")
        want = library_patchify(images.double(), p)
        mistakes = [(m, lambda k=k: patchify_variant(images.double(), p, k))
                    for m, k in PATCH_MISTAKES]
        compare(got, want, case, mistakes, what="the patches", atol=1e-6, rtol=1e-6,
                axes=("batch", "patch", "value"))
        return f"{case}: {tuple(want.shape)}"
    return run_check("patchify", lambda: run_cases(PATCH_CASES, one_case))


# -- vit_forward ------------------------------------------------------------------------------

CLS_APPENDED = ("the class token was appended after the patches: prepend it, so it sits at "
                "position 0 (with W_pos[0]), torch.cat([cls, patches], dim=1)")
POSITIONS_FIRST = ("the positions were added before the class token joined: concatenate the "
                   "class token and the patches first, then add all 1 + n_patches rows of "
                   "W_pos")
CAUSAL = ("a causal mask was used: a ViT's positions all see each other (no mask); the class "
          "token at position 0 must see every patch")
LAST_POSITION = ("the class logits were read at the last position: read them at position 0, "
                 "the class token, ln_final(x)[:, 0] @ W_U")
MEAN_POOLED = ("the positions were mean-pooled: read the class token's residual alone, "
               "position 0, not the mean over positions")
SOFTMAX_QUERIES = ("the attention softmax ran over the queries: normalise over the keys, "
                   "softmax(scores, dim=-1)")
NOT_SCALED = "the attention scores were not divided by sqrt(d_head)"
NO_FINAL_NORM = "ln_final was skipped: apply it to the residual before W_U"
WRONG_ACT = ("the MLP used the wrong activation: use the config's, "
             "gptscope.config.ACTIVATIONS[cfg.act_fn]")
NO_QKV_BIAS = "the query, key and value biases b_Q, b_K, b_V were left out"
ALL_POSITIONS = ("the logits of every position came back, [batch, 1 + n_patches, "
                 "n_classes]: return the class token's only, [batch, n_classes]")
PROBABILITIES = ("these are probabilities (a softmax at the end): return the logits "
                 "themselves")

VIT_CASES = [  # (label, image shape [C, H, W], patch, layers, d_model, heads, batch, dtype, seed)
    ("3 channels, 4x6 images, 2x2 patches, 1 layer, 2 heads", (3, 4, 6), 2, 1, 16, 2, 2,
     torch.float64, 0),
    ("1 channel, 8x8 images, 2x2 patches, 2 layers, 3 heads", (1, 8, 8), 2, 2, 24, 3, 3,
     torch.float64, 1),
    ("2 channels, 8x8 images, 4x4 patches, 1 layer, 4 heads, float32", (2, 8, 8), 4, 1, 32,
     4, 4, torch.float32, 2),
]


def vit_config(shape: tuple[int, int, int], p: int, layers: int, d_model: int, heads: int,
               n_classes: int = 5) -> ModelConfig:
    n = (shape[1] // p) * (shape[2] // p)
    return ModelConfig(n_layers=layers, d_model=d_model, n_heads=heads, d_vocab=n_classes,
                       n_ctx=1 + n, image_shape=shape, patch_size=p, causal=False,
                       act_fn="gelu")


def vit_params(cfg: ModelConfig, seed: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """Weights by the library's names, far from their initial values: gains near 1, every
    bias and the class token and positions of size ~0.5, matrices ~1 / sqrt(fan_in)."""
    shapes = {k: v.shape for k, v in Transformer(cfg, device="meta").state_dict().items()}
    params = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        noise = randn(*shape, seed=1000 * seed + i, dtype=torch.float64)
        if name.endswith(".w"):
            value = 1 + 0.3 * noise
        elif len(shape) >= 2 and not name.endswith(("W_pos", "b_Q", "b_K", "b_V")):
            value = noise / math.sqrt(shape[-2])
        else:
            value = 0.5 * noise
        params[name] = value.to(dtype)
    return params


def vit_truth(images: Tensor, params: dict[str, Tensor], cfg: ModelConfig) -> Tensor:
    """The library's class logits [batch, n_classes] for these weights, in float64."""
    model = Transformer(cfg, device="meta")
    model.load_state_dict({k: v.double() for k, v in params.items()}, assign=True)
    with torch.no_grad():
        return model.eval().classify(images.double())


def vit_variant(images: Tensor, params: dict[str, Tensor], cfg: ModelConfig,
                **mistake: Any) -> Tensor:
    """A ViT forward in float64 with one mistake switched on (none: the right answer).

    Switches: patches ("column_major", "channel_last"), cls ("append", "before"),
    causal, read ("last", "mean", "all"), softmax_dim, scale, final_norm, act, qkv_bias,
    probs.
    """
    p = {k: v.double() for k, v in params.items()}
    x = images.double()
    kind = mistake.get("patches")
    patches = patchify_variant(x, cfg.patch_size, kind) if kind else \
        library_patchify(x, cfg.patch_size)
    patches = patches @ p["embed.W_E"] + p["embed.b_E"]
    cls = p["embed.cls_token"].expand(len(x), 1, -1)
    where = mistake.get("cls")
    if where == "append":
        h = torch.cat([patches, cls], 1) + p["pos_embed.W_pos"]
    elif where == "before":
        h = torch.cat([cls, patches + p["pos_embed.W_pos"][1:]], 1)
    else:
        h = torch.cat([cls, patches], 1) + p["pos_embed.W_pos"]
    act = ACTIVATIONS[mistake.get("act", cfg.act_fn)]
    for layer in range(cfg.n_layers):
        h = _variant_block(h, p, f"blocks.{layer}.", cfg, act, mistake)
    if mistake.get("final_norm", True):
        h = F.layer_norm(h, h.shape[-1:], p["ln_final.w"], p["ln_final.b"], cfg.eps)
    logits = h @ p["unembed.W_U"]
    read = mistake.get("read", "first" if where != "append" else "last")
    out = {"first": lambda: logits[:, 0], "last": lambda: logits[:, -1],
           "mean": lambda: logits.mean(1), "all": lambda: logits}[read]()
    return out.softmax(-1) if mistake.get("probs") else out


def _variant_block(x: Tensor, p: dict[str, Tensor], pre: str, cfg: ModelConfig, act: Any,
                   mistake: dict) -> Tensor:
    """One pre-LN block of `vit_variant`: x [batch, pos, d_model] -> the same shape."""
    h = F.layer_norm(x, x.shape[-1:], p[pre + "ln1.w"], p[pre + "ln1.b"], cfg.eps)
    bias = mistake.get("qkv_bias", True)
    q, k, v = (torch.einsum("bpm,hmd->bhpd", h, p[pre + f"attn.W_{n}"])
               + (p[pre + f"attn.b_{n}"][:, None] if bias else 0) for n in "QKV")
    scores = q @ k.transpose(-1, -2) / (math.sqrt(cfg.d_head) if mistake.get("scale", True)
                                        else 1.0)
    if mistake.get("causal"):
        n = scores.shape[-1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -math.inf)
    pattern = scores.softmax(mistake.get("softmax_dim", -1))
    x = x + torch.einsum("bhpd,hdm->bpm", pattern @ v, p[pre + "attn.W_O"]) + p[pre + "attn.b_O"]
    h = F.layer_norm(x, x.shape[-1:], p[pre + "ln2.w"], p[pre + "ln2.b"], cfg.eps)
    return x + act(h @ p[pre + "mlp.W_in"] + p[pre + "mlp.b_in"]) @ p[pre + "mlp.W_out"] \
        + p[pre + "mlp.b_out"]


VIT_MISTAKES = [(COLUMN_MAJOR, {"patches": "column_major"}),
                (CHANNEL_LAST, {"patches": "channel_last"}), (CLS_APPENDED, {"cls": "append"}),
                (POSITIONS_FIRST, {"cls": "before"}), (CAUSAL, {"causal": True}),
                (LAST_POSITION, {"read": "last"}), (MEAN_POOLED, {"read": "mean"}),
                (SOFTMAX_QUERIES, {"softmax_dim": -2}), (NOT_SCALED, {"scale": False}),
                (NO_FINAL_NORM, {"final_norm": False}), (WRONG_ACT, {"act": "relu"}),
                (WRONG_ACT, {"act": "gelu_new"}), (NO_QKV_BIAS, {"qkv_bias": False}),
                (ALL_POSITIONS, {"read": "all"}), (PROBABILITIES, {"probs": True})]


def check_vit_forward(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, shape, patch, layers, d_model, heads, batch, dtype, seed = spec
        cfg = vit_config(shape, patch, layers, d_model, heads)
        params = vit_params(cfg, seed, dtype)
        images = randn(batch, *shape, seed=seed + 100, dtype=dtype).sigmoid()
        given = {k: v.clone() for k, v in params.items()}
        got = tensor_answer(call(fn, images.clone(), given, cfg), "what vit_forward returned")
        want = vit_truth(images, params, cfg)
        atol = 1e-8 if dtype == torch.float64 else float32_atol(
            want, vit_variant(images, params, cfg).float(), floor=1e-4)
        mistakes = [(m, lambda kw=kw: vit_variant(images, params, cfg, **kw))
                    for m, kw in VIT_MISTAKES]
        compare(got, want, case, mistakes, what="the class logits", atol=atol, rtol=1e-5,
                axes=("batch", "class"))
        return f"{case}: logits {tuple(want.shape)}"
    return run_check("vit_forward", lambda: run_cases(VIT_CASES, one_case))


# -- position_similarity ----------------------------------------------------------------------

CLASS_ROW_KEPT = ("row 0, the class token's, was kept and the last patch dropped: compare the "
                  "patch rows only, W_pos[1:]")
DOT_PRODUCT = ("these are dot products, not cosines: normalise each position embedding to "
               "unit length first")
NORMALISED_PATCH_AXIS = ("the normalisation ran over the patches (dim=0): normalise each "
                         "embedding over d_model, dim=-1")
SIM_COLUMN_MAJOR = ("the patches were read in column-major order: patch (r, c) is row "
                    "1 + r * cols + c of W_pos (raster order)")
EUCLIDEAN = ("these are Euclidean distances: the picture shows cosine similarities, "
             "unit(W_pos) @ unit(W_pos).T")
CENTRED = ("each embedding was mean-centred first (a correlation): cosine similarity uses "
           "the embeddings as they are")
NOT_RESHAPED = ("the similarity is [n_patches, n_patches]: reshape it to [rows, cols, rows, "
                "cols], one small grid per patch")
AXES_INTERLEAVED = ("the axes are in the order (row, other row, col, other col): the first "
                    "two index the patch, the last two the patch it is compared with")
DISTANCE = ("this is the cosine distance, 1 - cosine: return the similarity itself")

SIM_CASES = [  # (label, grid (rows, cols), d_model, dtype, seed)
    ("a 2x3 patch grid, d_model 8", (2, 3), 8, torch.float64, 0),
    ("a 4x4 patch grid, d_model 16", (4, 4), 16, torch.float64, 1),
    ("a 3x2 patch grid, d_model 5, float32", (3, 2), 5, torch.float32, 2),
]


def similarity_variant(W_pos: Tensor, grid: tuple[int, int], mistake: str) -> Tensor:
    """One mistake's similarity grid, computed in float64."""
    rows, cols = grid
    w = W_pos.double()
    unit = F.normalize(w[1:], dim=-1)
    right = unit @ unit.T
    shaped = {
        "class_row": lambda: F.normalize(w[:-1], dim=-1) @ F.normalize(w[:-1], dim=-1).T,
        "dot": lambda: w[1:] @ w[1:].T,
        "patch_axis": lambda: F.normalize(w[1:], dim=0) @ F.normalize(w[1:], dim=0).T,
        "euclidean": lambda: torch.cdist(w[1:], w[1:]),
        "centred": lambda: torch.corrcoef(w[1:]),
        "distance": lambda: 1 - right,
    }
    if mistake in shaped:
        return shaped[mistake]().reshape(rows, cols, rows, cols)
    if mistake == "column_major":  # patch (r, c) taken from row 1 + c * rows + r
        return right.reshape(cols, rows, cols, rows).permute(1, 0, 3, 2)
    if mistake == "not_reshaped":
        return right
    if mistake == "interleaved":
        return right.reshape(rows, cols, rows, cols).permute(0, 2, 1, 3)
    raise ValueError(f"no position_similarity mistake {mistake!r}")


SIM_MISTAKES = [(CLASS_ROW_KEPT, "class_row"), (DOT_PRODUCT, "dot"),
                (NORMALISED_PATCH_AXIS, "patch_axis"), (SIM_COLUMN_MAJOR, "column_major"),
                (EUCLIDEAN, "euclidean"), (CENTRED, "centred"), (NOT_RESHAPED, "not_reshaped"),
                (AXES_INTERLEAVED, "interleaved"), (DISTANCE, "distance")]


def _positions(grid: tuple[int, int], d_model: int, seed: int, dtype: torch.dtype) -> Tensor:
    """W_pos [1 + rows * cols, d_model]: random rows of very different lengths, each with
    an offset (so centring changes them)."""
    n = 1 + grid[0] * grid[1]
    w = randn(n, d_model, seed=seed, dtype=torch.float64) + 0.5
    return (w * (1.2 * randn(n, 1, seed=seed + 7, dtype=torch.float64)).exp()).to(dtype)


def check_position_similarity(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple) -> str:
        case, grid, d_model, dtype, seed = spec
        w = _positions(grid, d_model, seed, dtype)
        got = tensor_answer(call(fn, w.clone(), grid), "what position_similarity returned")
        want = library_similarity(w.double(), grid)
        atol = 1e-9 if dtype == torch.float64 else 1e-5
        mistakes = [(m, lambda k=k: similarity_variant(w, grid, k)) for m, k in SIM_MISTAKES]
        compare(got, want, case, mistakes, what="the similarity grid", atol=atol, rtol=1e-6,
                axes=("row", "col", "other row", "other col"))
        return f"{case}: {tuple(want.shape)}"
    return run_check("position_similarity", lambda: run_cases(SIM_CASES, one_case))
