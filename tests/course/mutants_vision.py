"""Wrong and right answers to lesson 5c's exercises (patchify, vit_forward,
position_similarity).

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference (unfold, a Conv2d, loops, float64).
mutants.py and right_answers.py merge both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptscope.config import ACTIVATIONS
from gptscope.course.checks import vision as cv

# -- patchify ---------------------------------------------------------------------------------


def _grid(images, p):
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p), b, c * p * p, (h // p) * (w // p)


def patchify_column_major(images, p):
    g, b, d, n = _grid(images, p)
    return g.permute(0, 4, 2, 1, 3, 5).reshape(b, n, d)


def patchify_channel_last(images, p):
    g, b, d, n = _grid(images, p)
    return g.permute(0, 2, 4, 3, 5, 1).reshape(b, n, d)


def patchify_pixels_transposed(images, p):
    g, b, d, n = _grid(images, p)
    return g.permute(0, 2, 4, 1, 5, 3).reshape(b, n, d)


def patchify_naive_reshape(images, p):
    _, b, d, n = _grid(images, p)
    return images.reshape(b, n, d)


def patchify_not_flattened(images, p):
    g, b, _, n = _grid(images, p)
    return g.permute(0, 2, 4, 1, 3, 5).reshape(b, n, images.shape[1], p, p)


def patchify_unfold_untransposed(images, p):
    return F.unfold(images, kernel_size=p, stride=p)


def patchify_grid_kept(images, p):
    g, b, d, _ = _grid(images, p)
    return g.permute(0, 2, 4, 1, 3, 5).reshape(b, g.shape[2], g.shape[4], d)


def patchify_with_class_row(images, p):
    right = F.unfold(images, p, stride=p).transpose(1, 2)
    return torch.cat([right.new_zeros(right.shape[0], 1, right.shape[2]), right], 1)


def patchify_overlapping(images, p):
    return F.unfold(images, p, stride=1).transpose(1, 2)


def patchify_first_channel(images, p):
    return F.unfold(images[:, :1], p, stride=p).transpose(1, 2)


def patchify_by_unfold(images, p):
    return F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)


def patchify_by_loops(images, p):
    b, c, h, w = images.shape
    out = []
    for r in range(h // p):
        for col in range(w // p):
            out.append(images[:, :, r * p:(r + 1) * p, col * p:(col + 1) * p].reshape(b, -1))
    return torch.stack(out, dim=1)


def patchify_by_conv_identity(images, p):
    # A Conv2d whose filters pick one input value each: its outputs are the patch values.
    c = images.shape[1]
    eye = torch.eye(c * p * p, dtype=images.dtype).reshape(c * p * p, c, p, p)
    return F.conv2d(images, eye, stride=p).flatten(2).transpose(1, 2)


def patchify_by_unfold_twice(images, p):
    b, c = images.shape[:2]
    tiles = images.unfold(2, p, p).unfold(3, p, p)  # [b, c, rows, cols, p, p]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)


# -- vit_forward: one forward with switches, each mutant flips one ----------------------------


def _vit(images, params, cfg, *, order="raster", flatten="channel_first", cls="prepend",
         causal=False, read="first", softmax_dim=-1, scale=True, final_norm=True, act=None,
         qkv_bias=True, probs=False, dtype=None):
    p = {k: (v.to(dtype) if dtype else v) for k, v in params.items()}
    x = images.to(dtype) if dtype else images
    s = cfg.patch_size
    g, b, d, n = _grid(x, s)
    perm = {("raster", "channel_first"): (0, 2, 4, 1, 3, 5),
            ("column", "channel_first"): (0, 4, 2, 1, 3, 5),
            ("raster", "channel_last"): (0, 2, 4, 3, 5, 1)}[(order, flatten)]
    patches = g.permute(*perm).reshape(b, n, d) @ p["embed.W_E"] + p["embed.b_E"]
    token = p["embed.cls_token"].expand(b, 1, -1)
    if cls == "append":
        h = torch.cat([patches, token], 1) + p["pos_embed.W_pos"]
    elif cls == "after_positions":
        h = torch.cat([token, patches + p["pos_embed.W_pos"][1:]], 1)
    else:
        h = torch.cat([token, patches], 1) + p["pos_embed.W_pos"]
    fn = ACTIVATIONS[act or cfg.act_fn]
    for layer in range(cfg.n_layers):
        pre = f"blocks.{layer}."
        a = F.layer_norm(h, h.shape[-1:], p[pre + "ln1.w"], p[pre + "ln1.b"], cfg.eps)
        q, k, v = (torch.einsum("bpm,hmd->bhpd", a, p[pre + f"attn.W_{m}"])
                   + (p[pre + f"attn.b_{m}"][:, None] if qkv_bias else 0) for m in "QKV")
        scores = q @ k.transpose(-1, -2)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if causal:
            mask = torch.triu(torch.ones(scores.shape[-1], scores.shape[-1]), 1).bool()
            scores = scores.masked_fill(mask, float("-inf"))
        z = scores.softmax(dim=softmax_dim) @ v
        h = h + torch.einsum("bhpd,hdm->bpm", z, p[pre + "attn.W_O"]) + p[pre + "attn.b_O"]
        m = F.layer_norm(h, h.shape[-1:], p[pre + "ln2.w"], p[pre + "ln2.b"], cfg.eps)
        h = h + fn(m @ p[pre + "mlp.W_in"] + p[pre + "mlp.b_in"]) @ p[pre + "mlp.W_out"] \
            + p[pre + "mlp.b_out"]
    if final_norm:
        h = F.layer_norm(h, h.shape[-1:], p["ln_final.w"], p["ln_final.b"], cfg.eps)
    logits = h @ p["unembed.W_U"]
    out = {"first": logits[:, 0], "last": logits[:, -1], "mean": logits.mean(1),
           "all": logits}[read]
    return out.softmax(-1) if probs else out


def vit_column_major(x, params, cfg):
    return _vit(x, params, cfg, order="column")


def vit_channel_last(x, params, cfg):
    return _vit(x, params, cfg, flatten="channel_last")


def vit_class_token_appended(x, params, cfg):
    return _vit(x, params, cfg, cls="append", read="last")


def vit_positions_before_class_token(x, params, cfg):
    return _vit(x, params, cfg, cls="after_positions")


def vit_causal(x, params, cfg):
    return _vit(x, params, cfg, causal=True)


def vit_reads_last_position(x, params, cfg):
    return _vit(x, params, cfg, read="last")


def vit_mean_pooled(x, params, cfg):
    return _vit(x, params, cfg, read="mean")


def vit_softmax_over_queries(x, params, cfg):
    return _vit(x, params, cfg, softmax_dim=-2)


def vit_unscaled(x, params, cfg):
    return _vit(x, params, cfg, scale=False)


def vit_no_final_norm(x, params, cfg):
    return _vit(x, params, cfg, final_norm=False)


def vit_relu(x, params, cfg):
    return _vit(x, params, cfg, act="relu")


def vit_no_qkv_bias(x, params, cfg):
    return _vit(x, params, cfg, qkv_bias=False)


def vit_every_position(x, params, cfg):
    return _vit(x, params, cfg, read="all")


def vit_probabilities(x, params, cfg):
    return _vit(x, params, cfg, probs=True)


def vit_in_float64(x, params, cfg):
    return _vit(x, params, cfg, dtype=torch.float64).to(x.dtype)


def vit_by_conv_and_multihead(x, params, cfg):
    """Written with a Conv2d patch embedding and torch.nn.MultiheadAttention."""
    p, s = params, cfg.patch_size
    d_model, c = p["embed.W_E"].shape[1], x.shape[1]
    conv = p["embed.W_E"].T.reshape(d_model, c, s, s)
    patches = F.conv2d(x, conv, p["embed.b_E"], stride=s).flatten(2).transpose(1, 2)
    h = torch.cat([p["embed.cls_token"].expand(len(x), 1, -1), patches], 1) + p["pos_embed.W_pos"]
    attn = torch.nn.MultiheadAttention(d_model, cfg.n_heads, batch_first=True, dtype=x.dtype)
    for layer in range(cfg.n_layers):
        pre = f"blocks.{layer}."
        with torch.no_grad():
            attn.in_proj_weight.copy_(torch.cat([p[pre + f"attn.W_{m}"].permute(0, 2, 1)
                                                 .reshape(-1, d_model) for m in "QKV"]))
            attn.in_proj_bias.copy_(torch.cat([p[pre + f"attn.b_{m}"].reshape(-1)
                                               for m in "QKV"]))
            attn.out_proj.weight.copy_(p[pre + "attn.W_O"].reshape(-1, d_model).T)
            attn.out_proj.bias.copy_(p[pre + "attn.b_O"])
        a = F.layer_norm(h, (d_model,), p[pre + "ln1.w"], p[pre + "ln1.b"], cfg.eps)
        h = h + attn(a, a, a, need_weights=False)[0]
        m = F.layer_norm(h, (d_model,), p[pre + "ln2.w"], p[pre + "ln2.b"], cfg.eps)
        h = h + F.gelu(m @ p[pre + "mlp.W_in"] + p[pre + "mlp.b_in"]) @ p[pre + "mlp.W_out"] \
            + p[pre + "mlp.b_out"]
    h = F.layer_norm(h[:, 0], (d_model,), p["ln_final.w"], p["ln_final.b"], cfg.eps)
    return h @ p["unembed.W_U"]


# -- position_similarity ----------------------------------------------------------------------


def sim_class_row_kept(w, grid):
    u = F.normalize(w[:-1], dim=-1)
    return (u @ u.T).reshape(*grid, *grid)


def sim_dot_product(w, grid):
    return (w[1:] @ w[1:].T).reshape(*grid, *grid)


def sim_normalised_over_patches(w, grid):
    u = F.normalize(w[1:], dim=0)
    return (u @ u.T).reshape(*grid, *grid)


def sim_column_major(w, grid):
    rows, cols = grid
    u = F.normalize(w[1:], dim=-1)
    return (u @ u.T).reshape(cols, rows, cols, rows).permute(1, 0, 3, 2)


def sim_euclidean(w, grid):
    return torch.cdist(w[1:], w[1:]).reshape(*grid, *grid)


def sim_centred(w, grid):
    centred = w[1:] - w[1:].mean(-1, keepdim=True)
    u = F.normalize(centred, dim=-1)
    return (u @ u.T).reshape(*grid, *grid)


def sim_not_reshaped(w, grid):
    u = F.normalize(w[1:], dim=-1)
    return u @ u.T


def sim_axes_interleaved(w, grid):
    u = F.normalize(w[1:], dim=-1)
    return (u @ u.T).reshape(*grid, *grid).permute(0, 2, 1, 3)


def sim_cosine_distance(w, grid):
    u = F.normalize(w[1:], dim=-1)
    return 1 - (u @ u.T).reshape(*grid, *grid)


def sim_by_loops(w, grid):
    rows, cols = grid
    out = torch.zeros(rows, cols, rows, cols, dtype=w.dtype)
    for r, c, r2, c2 in torch.cartesian_prod(*(torch.arange(k) for k in (rows, cols) * 2)):
        a, b = w[1 + r * cols + c], w[1 + r2 * cols + c2]
        out[r, c, r2, c2] = torch.dot(a, b) / (a.norm() * b.norm())
    return out


def sim_by_cosine_similarity(w, grid):
    patches = w[1:].double()
    sims = F.cosine_similarity(patches[:, None], patches[None], dim=-1)
    return sims.view(*grid, *grid).to(w.dtype)


MUTANTS: dict[str, list] = {
    "patchify": [
        (patchify_column_major, cv.COLUMN_MAJOR), (patchify_channel_last, cv.CHANNEL_LAST),
        (patchify_pixels_transposed, cv.PIXELS_TRANSPOSED),
        (patchify_naive_reshape, cv.NAIVE_RESHAPE), (patchify_not_flattened, cv.NOT_FLATTENED),
        (patchify_unfold_untransposed, cv.UNFOLD_LAYOUT), (patchify_grid_kept, cv.GRID_KEPT),
        (patchify_with_class_row, cv.CLASS_ROW), (patchify_overlapping, cv.OVERLAPPING),
        (patchify_first_channel, cv.CHANNEL_DROPPED),
    ],
    "vit_forward": [
        (vit_column_major, cv.COLUMN_MAJOR), (vit_channel_last, cv.CHANNEL_LAST),
        (vit_class_token_appended, cv.CLS_APPENDED),
        (vit_positions_before_class_token, cv.POSITIONS_FIRST), (vit_causal, cv.CAUSAL),
        (vit_reads_last_position, cv.LAST_POSITION), (vit_mean_pooled, cv.MEAN_POOLED),
        (vit_softmax_over_queries, cv.SOFTMAX_QUERIES), (vit_unscaled, cv.NOT_SCALED),
        (vit_no_final_norm, cv.NO_FINAL_NORM), (vit_relu, cv.WRONG_ACT),
        (vit_no_qkv_bias, cv.NO_QKV_BIAS), (vit_every_position, cv.ALL_POSITIONS),
        (vit_probabilities, cv.PROBABILITIES),
    ],
    "position_similarity": [
        (sim_class_row_kept, cv.CLASS_ROW_KEPT), (sim_dot_product, cv.DOT_PRODUCT),
        (sim_normalised_over_patches, cv.NORMALISED_PATCH_AXIS),
        (sim_column_major, cv.SIM_COLUMN_MAJOR), (sim_euclidean, cv.EUCLIDEAN),
        (sim_centred, cv.CENTRED), (sim_not_reshaped, cv.NOT_RESHAPED),
        (sim_axes_interleaved, cv.AXES_INTERLEAVED), (sim_cosine_distance, cv.DISTANCE),
    ],
}

RIGHT_ANSWERS: dict[str, list] = {
    "patchify": [patchify_by_unfold, patchify_by_loops, patchify_by_conv_identity,
                 patchify_by_unfold_twice],
    "vit_forward": [vit_in_float64, vit_by_conv_and_multihead],
    "position_similarity": [sim_by_loops, sim_by_cosine_similarity],
}
