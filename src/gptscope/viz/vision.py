"""Pictures of a vision transformer: attention over an image's patches, and the ViT paper's
position-embedding similarity grid (Dosovitskiy et al. 2021, figure 7).

The numbers come from two small functions, `patch_attention_map` and
`position_similarity`; the visuals only draw them. `vision_report` reads a model's
attention by hook name (``blocks.{l}.attn.hook_pattern``) and its ``W_pos``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import colors
from ._util import as_array, fmt
from .heatmap import Heatmap
from .html import Visual, escape
from .report import Report
from .svg import color_bar, open_svg


def patch_attention_map(pattern: Tensor, query: int, grid: tuple[int, int]) -> Tensor:
    """One head's attention from ``query`` to every patch, laid out as the image's patches.

    pattern: [1 + n_patches, 1 + n_patches] (query, key), position 0 the class token;
    query: 0 for the class token, 1 + k for patch k; grid: (rows, cols) of patches.
    Returns [rows, cols]: entry (r, c) is the weight on patch r * cols + c (raster order).
    The weight on the class token itself, pattern[query, 0], is left out.
    """
    rows, cols = grid
    if pattern.dim() != 2 or pattern.shape != (1 + rows * cols, 1 + rows * cols):
        raise ValueError(f"pattern must be [1 + n_patches, 1 + n_patches] = "
                         f"[{1 + rows * cols}, {1 + rows * cols}] for a {rows}x{cols} patch "
                         f"grid, got {tuple(pattern.shape)}; pick one image and head")
    if not 0 <= query <= rows * cols:
        raise ValueError(f"query={query} must be 0 (the class token) or 1 + a patch index, "
                         f"up to {rows * cols}")
    return pattern[query, 1:].reshape(rows, cols)


def position_similarity(W_pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """Cosine similarity of each patch's learned position embedding with every other's.

    W_pos: [1 + n_patches, d_model], row 0 the class token's (left out); grid: (rows, cols).
    Returns [rows, cols, rows, cols]: entry (r, c, r2, c2) compares patch (r, c) with patch
    (r2, c2). The ViT paper draws it as one small [rows, cols] grid per patch.
    """
    rows, cols = grid
    if W_pos.dim() != 2 or W_pos.shape[0] != 1 + rows * cols:
        raise ValueError(f"W_pos must be [1 + n_patches, d_model] = [{1 + rows * cols}, "
                         f"d_model] for a {rows}x{cols} patch grid, got {tuple(W_pos.shape)}")
    unit = torch.nn.functional.normalize(W_pos[1:].double(), dim=-1)
    return (unit @ unit.T).reshape(rows, cols, rows, cols)


class PatchAttention(Visual):
    """An image next to one head's attention over its patches (two heat maps).

    image: [H, W] grey values; attention: [rows, cols] (`patch_attention_map`).
    """

    kind = "static"

    def __init__(self, image: Any, attention: Any, title: str | None = None,
                 query_label: str = "class token") -> None:
        super().__init__(title)
        self.image = as_array(image, "image", ndim=2)
        self.attention = as_array(attention, "attention", ndim=2)
        self.query_label = query_label

    def _body(self) -> str:
        rows, cols = self.attention.shape
        height, width = self.image.shape
        picture = Heatmap(self.image, [str(i) for i in range(height)],
                          [str(j) for j in range(width)], diverging=False, show_values=False)
        weights = Heatmap(self.attention, [f"r{r}" for r in range(rows)],
                          [f"c{c}" for c in range(cols)], diverging=False, vmin=0,
                          title=f"attention from the {self.query_label}")
        # The maps' SVGs only (their _body), so the page counts one visual, not three.
        return ('<div style="display:flex;gap:24px;flex-wrap:wrap">'
                f'<div><div class="gs-title">image</div>{picture._body()}</div>'
                f'<div><div class="gs-title">{escape(weights.title)}</div>'
                f"{weights._body()}</div></div>")


class PositionSimilarityGrid(Visual):
    """The ViT paper's grid: for each patch (r, c), a small [rows, cols] map of its position
    embedding's cosine similarity with every patch's, placed at (r, c).

    similarity: [rows, cols, rows, cols] (`position_similarity`), drawn on one -1..1 scale.
    """

    kind = "static"

    def __init__(self, similarity: Any, title: str | None = None) -> None:
        super().__init__(title)
        self.similarity = as_array(similarity, "similarity", ndim=4)
        r, c, r2, c2 = self.similarity.shape
        if (r, c) != (r2, c2):
            raise ValueError(f"similarity must be [rows, cols, rows, cols], got "
                             f"{self.similarity.shape}")

    def _body(self) -> str:
        rows, cols = self.similarity.shape[:2]
        cell = max(4.0, min(14.0, 240 / (rows * cols)))
        gap = cell
        block_w, block_h = cols * cell, rows * cell
        width = cols * (block_w + gap) + 70
        height = rows * (block_h + gap) + 10
        out = [open_svg(width, height, self.title or "position similarity")]
        for r, c in np.ndindex(rows, cols):
            x0, y0 = c * (block_w + gap), r * (block_h + gap)
            for r2, c2 in np.ndindex(rows, cols):
                v = float(self.similarity[r, c, r2, c2])
                tip = f"patch ({r}, {c}) vs ({r2}, {c2})\ncosine = {fmt(v, 3)}"
                out.append(f'<rect x="{x0 + c2 * cell:.1f}" y="{y0 + r2 * cell:.1f}" '
                           f'width="{cell:.1f}" height="{cell:.1f}" '
                           f'fill="{colors.color_for(v, -1.0, 1.0, True)}" '
                           f'data-tip="{escape(tip)}"/>')
        out.append(color_bar(width - 56, 0, max(60.0, min(height - 10, 220.0)), -1.0, 1.0, True))
        out.append("</svg>")
        return "".join(out)


def vision_report(model: Any, images: Tensor, labels: Tensor | None = None,
                  layer: int = -1, head: int = 0, query: int = 0,
                  n_images: int = 4) -> Report:
    """A report on a trained ViT: for the first ``n_images`` images, the class prediction
    and head ``head`` of layer ``layer``'s attention from ``query`` (0: the class token)
    over the patches; then the position-embedding similarity grid.

    images: [batch, C, H, W] (channel 0 is drawn); labels: [batch] or None.
    """
    cfg = model.cfg
    if not cfg.is_vision:
        raise ValueError("vision_report needs a vision transformer (image_shape, patch_size)")
    layer = layer % cfg.n_layers
    grid = (cfg.image_shape[1] // cfg.patch_size, cfg.image_shape[2] // cfg.patch_size)
    images = images[:n_images]
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        logits, cache = model.run_with_cache(images, names_filter=name)
    predicted = logits[:, 0].argmax(-1)
    report = Report("Vision transformer", f"{cfg.n_layers} layers, {cfg.n_heads} heads, "
                    f"{grid[0]}x{grid[1]} patches of {cfg.patch_size}x{cfg.patch_size}")
    report.add_heading(f"Attention over patches: layer {layer}, head {head}")
    who = "class token" if query == 0 else f"patch {query - 1}"
    for i in range(len(images)):
        attention = patch_attention_map(cache[name][i, head], query, grid)
        said = f"predicted {int(predicted[i])}" + (
            f", label {int(labels[i])}" if labels is not None else "")
        report.add(PatchAttention(images[i, 0], attention, f"image {i}: {said}", who),
                   caption=f"weight on the class token itself: "
                   f"{float(cache[name][i, head, query, 0]):.3f}")
    report.add_heading("Position embeddings: cosine similarity between patches")
    report.add(PositionSimilarityGrid(position_similarity(model.W_pos.detach(), grid)),
               caption="each small grid is one patch's similarity with every patch, "
               "placed where that patch sits in the image")
    return report
