"""The vision transformer's pictures: the numbers behind them checked by hand, and the
page drawn in a browser."""

from __future__ import annotations

import math

import pytest
import torch

import gptscope as gs
from gptscope.viz import render_in_browser
from gptscope.viz.vision import (
    PatchAttention,
    PositionSimilarityGrid,
    patch_attention_map,
    position_similarity,
    vision_report,
)


def test_patch_attention_map_hand_worked():
    # 2x2 patches: row q of a 5x5 pattern is [class token, p0, p1, p2, p3].
    pattern = torch.arange(25.0).view(5, 5)
    assert patch_attention_map(pattern, 0, (2, 2)).tolist() == [[1, 2], [3, 4]]
    assert patch_attention_map(pattern, 3, (2, 2)).tolist() == [[16, 17], [18, 19]]
    with pytest.raises(ValueError, match="pattern must be"):
        patch_attention_map(pattern, 0, (2, 3))
    with pytest.raises(ValueError, match="query=5"):
        patch_attention_map(pattern, 5, (2, 2))


def test_position_similarity_hand_worked():
    # class token, then patches (0,0)=e0, (0,1)=e1, (1,0)=e0+e1, (1,1)=-e0 (any lengths).
    w = torch.tensor([[9.0, 9.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-5.0, 0.0]])
    sim = position_similarity(w, (1 * 2, 2))
    assert sim.shape == (2, 2, 2, 2)
    r = 1 / math.sqrt(2)
    want = torch.tensor([[1, 0, r, -1], [0, 1, r, 0], [r, r, 1, -r], [-1, 0, -r, 1]],
                        dtype=torch.float64).view(2, 2, 2, 2)
    torch.testing.assert_close(sim, want)
    with pytest.raises(ValueError, match="W_pos must be"):
        position_similarity(w[1:], (2, 2))


def _model() -> gs.Transformer:
    cfg = gs.ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=10, n_ctx=17,
                         image_shape=(1, 8, 8), patch_size=2, causal=False, seed=0)
    return gs.Transformer(cfg).eval()


def test_report_reads_the_model_by_hook_name():
    model = _model()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    report = vision_report(model, x, torch.tensor([3, 4]), head=1)
    assert report.n_visuals == 3
    html = report.html()
    _, cache = model.run_with_cache(x)
    weight = float(cache["blocks.0.attn.hook_pattern"][1, 1, 0, 0])
    assert f"{weight:.3f}" in html and "label 4" in html
    assert html.count("<rect") >= 16 * 16 + 2 * (64 + 16)  # the grid and both maps
    with pytest.raises(ValueError, match="vision transformer"):
        vision_report(gs.Transformer(gs.ModelConfig(n_layers=1, d_model=8, n_heads=2)), x)
    with pytest.raises(ValueError, match="similarity must be"):
        PositionSimilarityGrid(torch.zeros(2, 3, 3, 2))


def test_page_draws_without_errors(chromium, tmp_path):
    model = _model()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    report = vision_report(model, x)
    report.add(PatchAttention(x[0, 0], torch.rand(4, 4), "one more"))
    result = render_in_browser(report.save(tmp_path / "vit.html"))
    assert result.errors == [], f"JavaScript errors: {result.errors}"
    assert result.rendered == report.n_visuals == 4
