"""Lesson 5c: vision transformers, patches as tokens.

A transformer reads a sequence of vectors; nothing in its blocks knows they were words. The
Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") cuts an
image into non-overlapping p x p patches, flattens each, maps it linearly to d_model (the
"patch embedding", the same as a convolution with kernel = stride = p), puts one learned
*class token* in front, adds a learned position embedding to each of the 1 + n_patches
positions and runs ordinary, non-causal transformer blocks. The class is read from the
class token's final residual. Nothing tells the model that patch 5 sits next to patch 6:
it learns that from data, and the similarity of its position embeddings shows it did.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptscope.config import ACTIVATIONS


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """images [batch, C, H, W] -> patches [batch, n_patches, C * p * p], p = patch_size.

    Patches are in raster order: left to right along the top row of patches, then the next
    row down, so patch k sits at patch row k // (W // p), patch column k % (W // p). Each
    patch is flattened channel first: its C * p * p values run over channel, then pixel
    row, then pixel column, the layout of a Conv2d weight [d_model, C, p, p] and of
    ``torch.nn.functional.unfold``. H and W are multiples of p.
    """
    batch, channels, height, width = images.shape
    p = patch_size
    # Split each side into (patch index, pixel within the patch), then bring the two patch
    # indices to the front: [batch, rows, cols, C, p, p].
    grid = images.reshape(batch, channels, height // p, p, width // p, p)
    grid = grid.permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(batch, (height // p) * (width // p), channels * p * p)


def vit_forward(images: Tensor, params: dict[str, Tensor], cfg) -> Tensor:
    """The whole ViT forward from its weights: images [batch, C, H, W] -> class logits
    [batch, n_classes].

    cfg: a ``gptscope.ModelConfig`` with ``image_shape``, ``patch_size``, ``n_layers``,
    ``n_heads``, ``d_head``, ``act_fn`` and ``eps`` (pre-LayerNorm blocks, non-causal).
    params: the weights by the library's names (``gs.Transformer(cfg).state_dict()``):
    ``embed.W_E`` [C*p*p, d_model], ``embed.b_E`` [d_model], ``embed.cls_token``
    [d_model], ``pos_embed.W_pos`` [1 + n_patches, d_model]; per layer l,
    ``blocks.{l}.ln1.w/.b``, ``blocks.{l}.attn.W_Q/W_K/W_V`` [head, d_model, d_head],
    ``b_Q/b_K/b_V`` [head, d_head], ``W_O`` [head, d_head, d_model], ``b_O`` [d_model],
    ``blocks.{l}.ln2.w/.b``, ``blocks.{l}.mlp.W_in`` [d_model, d_mlp], ``b_in``, ``W_out``
    [d_mlp, d_model], ``b_out``; then ``ln_final.w/.b`` and ``unembed.W_U`` [d_model,
    n_classes].

    The steps: patchify; patches @ W_E + b_E; the class token *prepended* (position 0);
    W_pos added to all 1 + n_patches positions; each block
    ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))`` with every position attending to every
    other (no causal mask), softmax over the keys, scores / sqrt(d_head); ln_final; the
    class logits are position 0's, ``ln_final(x)[:, 0] @ W_U``.
    """
    act = ACTIVATIONS[cfg.act_fn]

    def layer_norm(x: Tensor, name: str) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], params[name + ".w"], params[name + ".b"], cfg.eps)

    patches = patchify(images, cfg.patch_size) @ params["embed.W_E"] + params["embed.b_E"]
    cls = params["embed.cls_token"].expand(len(images), 1, -1)
    x = torch.cat([cls, patches], dim=1) + params["pos_embed.W_pos"]
    for layer in range(cfg.n_layers):
        pre = f"blocks.{layer}."
        h = layer_norm(x, pre + "ln1")
        q, k, v = (torch.einsum("bpm,hmd->bhpd", h, params[pre + f"attn.W_{n}"])
                   + params[pre + f"attn.b_{n}"][:, None] for n in "QKV")
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        z = pattern @ v  # [batch, head, pos, d_head]
        x = x + torch.einsum("bhpd,hdm->bpm", z, params[pre + "attn.W_O"]) \
            + params[pre + "attn.b_O"]
        h = layer_norm(x, pre + "ln2")
        x = x + act(h @ params[pre + "mlp.W_in"] + params[pre + "mlp.b_in"]) \
            @ params[pre + "mlp.W_out"] + params[pre + "mlp.b_out"]
    return layer_norm(x, "ln_final")[:, 0] @ params["unembed.W_U"]


def position_similarity(W_pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """The ViT paper's position-embedding picture: W_pos [1 + n_patches, d_model] ->
    [rows, cols, rows, cols], grid = (rows, cols) of patches.

    Row 0 of W_pos is the class token's and is left out. Entry (r, c, r2, c2) is the
    cosine similarity of the position embedding of patch (r, c) with that of patch
    (r2, c2); patch (r, c) is row 1 + r * cols + c of W_pos (raster order).
    """
    rows, cols = grid
    unit = F.normalize(W_pos[1:], dim=-1)
    return (unit @ unit.T).reshape(rows, cols, rows, cols)


def explore_vit_digits(steps: int = 300, seed: int = 0) -> Any:
    """Given: a ViT trained on the bundled digits, seen through *your* exercises.

    Trains a small ViT (one layer, d_model 32, 2x2 patches) with the library's trainer for
    ``steps`` steps (about 10 s), checks that your ``vit_forward`` on its weights classifies
    the held-out digits as the library does, and shows the library's report: the class
    token's attention over the patches of some digits (``blocks.0.attn.hook_pattern``) and
    the similarity grid of the learned position embeddings (your ``position_similarity``
    is compared with the library's). Prints the accuracies; returns the report (a
    ``gptscope.viz.Report``, drawn in the notebook; ``.save("vit.html")`` keeps it).
    """
    import tempfile

    from gptscope.model.transformer import Transformer
    from gptscope.vision import (
        digits_split,
        train_vit_digits,
        vit_digits_config,
        vit_digits_train_config,
    )
    from gptscope.viz.vision import position_similarity as library_similarity
    from gptscope.viz.vision import vision_report

    cfg = vit_digits_config(d_model=32, n_layers=1, n_heads=2, patch_size=2)
    x_test, y_test = digits_split()[2:4]
    grid = (4, 4)
    untrained = {k: v.detach() for k, v in Transformer(cfg).state_dict().items()}
    # Your functions run once before training, so an unfinished one stops this at once.
    vit_forward(x_test[:1], untrained, cfg)
    position_similarity(untrained["pos_embed.W_pos"], grid)
    with tempfile.TemporaryDirectory() as folder:
        model = train_vit_digits(folder, cfg, vit_digits_train_config(steps, seed=seed)).model
    params = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        yours = vit_forward(x_test, params, model.cfg).argmax(-1)
        library = model.classify(x_test).argmax(-1)
    same = torch.allclose(position_similarity(params["pos_embed.W_pos"], grid).double(),
                          library_similarity(params["pos_embed.W_pos"], grid), atol=1e-5)
    found = {"library accuracy": (library == y_test).float().mean().item(),
             "your vit_forward's accuracy": (yours == y_test).float().mean().item(),
             "predictions that agree": (yours == library).float().mean().item(),
             "position similarity as the library's": float(same)}
    for name, value in found.items():
        print(f"  {name:38s} {value:.3f}")
    return vision_report(model, x_test, y_test, n_images=3)
