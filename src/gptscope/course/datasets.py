"""Small data sets the course trains on, made on the spot (no downloads).

``glyphs``, ``glyph_split`` and ``digits`` (8x8 images) live in `gptscope.data.images`,
where the scaling lab's small CNNs read them too; they are re-exported here under the
course's names. ``scaling_sweep``: a synthetic sweep of model sizes and losses that follows
a power law.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptscope.data.images import digits, glyph_split, glyphs

__all__ = ["digits", "glyph_split", "glyphs", "scaling_sweep"]


def scaling_sweep(seed: int = 0, a: float = 40.0, alpha: float = 0.3, noise: float = 0.01
                  ) -> tuple[Tensor, Tensor]:
    """Model sizes N [12] (1e4 .. 1e7) and losses a * N^-alpha with small log-normal noise."""
    g = torch.Generator().manual_seed(seed)
    n = torch.logspace(4, 7, 12, dtype=torch.float64)
    loss = a * n ** (-alpha) * torch.exp(noise * torch.randn(12, generator=g,
                                                               dtype=torch.float64))
    return n, loss
