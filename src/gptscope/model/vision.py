"""The front end of a vision transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words"): an image becomes a sequence of patch vectors, then the class token and patches go
through the ordinary `Transformer` blocks.

``patchify`` cuts [batch, C, H, W] into non-overlapping p x p patches in raster order (left
to right, then top to bottom), each flattened channel-first, ``(c, row, col)``, as
``torch.nn.functional.unfold`` and a Conv2d weight ``[d_model, C, p, p]`` lay them out; so
``PatchEmbed`` equals a Conv2d with kernel = stride = p, the paper's own equivalence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptscope.config import ModelConfig


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """images [batch, C, H, W] -> patches [batch, n_patches, C * p * p].

    Patch k = (row, col) in raster order, k = row * (W // p) + col; within a patch the
    values run over channel, then pixel row, then pixel column.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"patchify needs images [batch, C, H, W], got {got}; add the "
                         "missing axes, e.g. images.view(batch, 1, 8, 8)")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    batch, channels, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"images {height}x{width} do not split into {p}x{p} patches; pick a "
                         "patch_size dividing both sides")
    grid = images.reshape(batch, channels, height // p, p, width // p, p)
    # [batch, rows, cols, C, p, p]: patch position first, then its channel-first contents.
    grid = grid.permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(batch, (height // p) * (width // p), channels * p * p)


class PatchEmbed(nn.Module):
    """Images -> the residual stream's first value: the class token, then one vector per
    patch.

    W_E: [C * p * p, d_model] maps a flattened patch to d_model (named like the token
    embedding, whose place it takes); b_E: [d_model]; cls_token: [d_model], the learned
    vector at position 0 whose final residual the class logits are read from.
    forward: images [batch, C, H, W] -> [batch, 1 + n_patches, d_model].
    """

    def __init__(self, cfg: ModelConfig, device=None, dtype=None) -> None:
        super().__init__()
        if cfg.image_shape is None:
            raise ValueError("PatchEmbed needs a vision config (image_shape and patch_size)")
        channels = cfg.image_shape[0]
        self.image_shape, self.patch_size = cfg.image_shape, cfg.patch_size
        patch_dim = channels * cfg.patch_size ** 2
        self.W_E = nn.Parameter(torch.empty(patch_dim, cfg.d_model, device=device, dtype=dtype))
        self.b_E = nn.Parameter(torch.zeros(cfg.d_model, device=device, dtype=dtype))
        self.cls_token = nn.Parameter(torch.empty(cfg.d_model, device=device, dtype=dtype))

    def forward(self, images: Tensor) -> Tensor:
        patches = F.linear(patchify(images, self.patch_size), self.W_E.t(), self.b_E)
        cls = self.cls_token.expand(images.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1)  # [batch, 1 + n_patches, d_model]


def check_images(images: object, image_shape: tuple[int, int, int], device: torch.device,
                 dtype: torch.dtype) -> Tensor:
    """A vision model's input: a float tensor [batch, C, H, W] of ``image_shape``, or one
    image [C, H, W]; returned as [batch, C, H, W] on ``device`` in ``dtype``."""
    want = f"a float tensor [batch, {', '.join(map(str, image_shape))}]"
    if not isinstance(images, Tensor):
        raise ValueError(f"a vision transformer reads images, {want}; got "
                         f"{type(images).__name__} (token ids and strings are for token "
                         "models)")
    if not images.is_floating_point():
        raise ValueError(f"images must be {want}, got dtype {images.dtype} (token ids are for "
                         "token models); convert pixels with images.float()")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"images must be {want}, got shape {tuple(images.shape)}; reshape "
                         f"them, e.g. x.view(-1, {', '.join(map(str, image_shape))})")
    return images.to(device=device, dtype=dtype)
