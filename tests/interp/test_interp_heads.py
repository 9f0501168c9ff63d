"""Head detectors and weight-based circuits: definitions, TL agreement, factored maths."""

from __future__ import annotations

import pytest
import torch

import gptscope.interp as gi

TL_NAMES = {"previous_token": "previous_token_head", "duplicate_token": "duplicate_token_head",
            "induction": "induction_head"}


def test_detection_patterns_by_hand():
    tokens = torch.tensor([[5, 6, 7, 5, 6, 7]])
    prev = gi.detection_pattern(tokens, "previous_token")[0]
    assert prev[3, 2] == 1 and prev.sum() == 5 and prev[0].sum() == 0
    dup = gi.detection_pattern(tokens, "duplicate_token")[0]
    assert dup[3, 0] == 1 and dup[4, 1] == 1 and dup.sum() == 3
    ind = gi.detection_pattern(tokens, "induction")[0]
    # the second 5 (pos 3) attends to what followed the first 5 (pos 1)
    assert ind[3, 1] == 1 and ind[4, 2] == 1 and ind[5, 3] == 1 and ind.sum() == 3
    assert torch.equal(ind, ind.tril())


@pytest.mark.parametrize("kind", list(TL_NAMES))
@pytest.mark.parametrize("exclude", [(False, False), (True, False), (False, True)])
def test_head_scores_match_tl_detect_head(make_small_model, to_tl, kind, exclude):
    from transformer_lens.head_detector import detect_head

    model = make_small_model(attn_only=True)
    tl = to_tl(model)
    tokens = gi.repeated_tokens(50, 9, 1, seed=3, bos=0)  # [1, 19] < n_ctx=24
    tl.to_tokens = lambda *a, **k: tokens  # detect_head tokenises a string; feed ids instead
    theirs = detect_head(tl, "ids", TL_NAMES[kind], exclude_bos=exclude[0],
                         exclude_current_token=exclude[1], error_measure="mul")
    ours = gi.head_scores(model, kind, tokens=tokens, rows="all", exclude_bos=exclude[0],
                          exclude_current_token=exclude[1])
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-4)


def test_head_scores_marked_rows_reach_one_for_a_perfect_head():
    tokens = gi.repeated_tokens(30, 8, 2, seed=0)
    det = gi.detection_pattern(tokens, "induction")
    # a "perfect" induction head: uniform over its marked keys, attend to 0 elsewhere
    rows = det / det.sum(-1, keepdim=True).clamp(min=1)
    rows[det.sum(-1) == 0, 0] = 1.0
    score = gi.pattern_scores(rows[:, None], det)
    assert score.item() == pytest.approx(1.0)
    assert gi.pattern_scores(rows[:, None], det, rows="all").item() < 0.6


def test_head_scores_rejects_bad_input(make_small_model):
    model = make_small_model(attn_only=True)
    with pytest.raises(ValueError, match="unknown head kind"):
        gi.head_scores(model, "copying")
    with pytest.raises(ValueError, match="seq_len"):
        gi.head_scores(model, "induction", seq_len=20)


def test_factored_matrix_matches_dense():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(2, 30, 5, generator=g), torch.randn(2, 5, 30, generator=g)
    fm = gi.FactoredMatrix(A, B)
    dense = A @ B
    assert fm.shape == (2, 30, 30) and fm.mdim == 5
    torch.testing.assert_close(fm.AB, dense)
    torch.testing.assert_close(fm.norm(), dense.flatten(1).norm(dim=-1), rtol=1e-4, atol=1e-4)
    U, S, V = fm.svd()
    torch.testing.assert_close(S, torch.linalg.svdvals(dense)[:, :5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(U @ torch.diag_embed(S) @ V.transpose(-1, -2), dense, atol=1e-4,
                               rtol=1e-4)
    eig = fm.eigenvalues()
    dense_eig = torch.linalg.eigvals(dense.double())
    top = dense_eig[torch.arange(2)[:, None], dense_eig.abs().argsort(-1, descending=True)[:, :5]]
    torch.testing.assert_close(eig.abs().sort(-1).values.double(), top.abs().sort(-1).values,
                               rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fm.T.AB, dense.transpose(-1, -2))
    C = torch.randn(30, 7, generator=g)
    torch.testing.assert_close((fm @ C).AB, dense @ C, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close((C.T @ fm).AB, C.T @ dense, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close((fm @ fm).AB, dense @ dense, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(fm[1].AB, dense[1])
    with pytest.raises(ValueError, match="inner"):
        gi.FactoredMatrix(A, A)


def test_circuits_match_dense_products(make_small_model):
    model = make_small_model()
    qk = gi.qk_circuit(model, 1, 2)
    assert qk.shape == (50, 50) and qk.mdim == model.cfg.d_head
    W_E = model.W_E.detach()
    dense = W_E @ model.W_Q[1, 2] @ model.W_K[1, 2].T @ W_E.T
    torch.testing.assert_close(qk.AB, dense.detach(), atol=1e-5, rtol=1e-4)
    ov = gi.ov_circuit(model, 0, 3)
    dense = W_E @ model.W_V[0, 3] @ model.W_O[0, 3] @ model.W_U
    torch.testing.assert_close(ov.AB, dense.detach(), atol=1e-5, rtol=1e-4)
    assert gi.qk_circuit(model, 0, 0, embed="pos").shape == (24, 24)
    with pytest.raises(ValueError, match="outside"):
        gi.ov_circuit(model, 3, 0)


@pytest.mark.parametrize("kind", ["Q", "K", "V"])
def test_composition_scores_match_brute_force(make_small_model, kind):
    model = make_small_model()
    scores = gi.composition_scores(model, kind)
    assert scores.shape == (3, 4, 3, 4)
    assert (scores[1, :, :2] == 0).all() and (scores[2] == 0).all()
    W_Q, W_K, W_V, W_O = (w.detach() for w in (model.W_Q, model.W_K, model.W_V, model.W_O))
    for (la, ha, lb, hb) in [(0, 1, 1, 2), (0, 3, 2, 0), (1, 0, 2, 3)]:
        left = W_V[la, ha] @ W_O[la, ha]
        right = {"Q": W_Q[lb, hb] @ W_K[lb, hb].T, "K": W_K[lb, hb] @ W_Q[lb, hb].T,
                 "V": W_V[lb, hb] @ W_O[lb, hb]}[kind]
        expected = (left @ right).norm() / (left.norm() * right.norm())
        assert scores[la, ha, lb, hb].item() == pytest.approx(expected.item(), rel=1e-4)


def test_copying_scores_eigenvalue_definition(make_small_model):
    model = make_small_model()
    scores = gi.copying_scores(model)
    assert scores.shape == (3, 4) and (scores.abs() <= 1 + 1e-6).all()
    eig = torch.linalg.eigvals(gi.ov_circuit(model, 2, 1).AB.double())
    assert scores[2, 1].item() == pytest.approx((eig.sum().real / eig.abs().sum()).item(),
                                                abs=1e-4)
