"""Weight-based circuits: QK and OV matrices as low-rank products, composition, copying.

A head's full QK circuit ``W_E W_Q W_K^T W_E^T`` is ``[d_vocab, d_vocab]`` but has rank at
most d_head. ``FactoredMatrix`` keeps it as ``A @ B`` (``[m, r] @ [r, n]``) and answers
questions (norm, SVD, eigenvalues, products) through the small factors, so GPT-2's
50257 x 50257 matrices never exist unless asked for with ``.AB``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FactoredMatrix:
    """The matrix ``A @ B`` without forming it. A: ``[..., m, r]``, B: ``[..., r, n]``.

    Leading dims broadcast (e.g. ``[layer, head, ...]``). ``@`` with a tensor or another
    FactoredMatrix stays factored; ``.AB`` materialises.
    """

    def __init__(self, A: Tensor, B: Tensor) -> None:
        if A.dim() < 2 or B.dim() < 2:
            raise ValueError(f"A and B must be at least 2-d, got {tuple(A.shape)} and "
                             f"{tuple(B.shape)}")
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"inner dims differ: A {tuple(A.shape)} @ B {tuple(B.shape)}; "
                             "A's last dim must equal B's second-to-last")
        self.A, self.B = A, B
        try:
            batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError as e:
            raise ValueError(f"leading dims of A {tuple(A.shape)} and B {tuple(B.shape)} do "
                             "not broadcast") from e
        self.shape = torch.Size((*batch, A.shape[-2], B.shape[-1]))

    @property
    def ldim(self) -> int:
        return self.A.shape[-2]

    @property
    def mdim(self) -> int:
        """The inner (rank-bounding) dimension."""
        return self.A.shape[-1]

    @property
    def rdim(self) -> int:
        return self.B.shape[-1]

    @property
    def AB(self) -> Tensor:
        """The full product ``[..., m, n]`` (may be large)."""
        return self.A @ self.B

    @property
    def BA(self) -> Tensor:
        """``B @ A`` ``[..., r, r]`` (square matrices only): same non-zero eigenvalues as AB."""
        if self.ldim != self.rdim:
            raise ValueError(f"BA needs a square matrix, this is {tuple(self.shape)}")
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    def __matmul__(self, other: Tensor | FactoredMatrix) -> FactoredMatrix | Tensor:
        if isinstance(other, FactoredMatrix):
            # Collapse into whichever side keeps the inner dimension smallest.
            if self.mdim <= other.mdim:
                return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
            return FactoredMatrix(self.A @ (self.B @ other.A), other.B)
        if not isinstance(other, Tensor):
            return NotImplemented
        if other.dim() == 1:
            return self.A @ (self.B @ other)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other: Tensor) -> FactoredMatrix | Tensor:
        if not isinstance(other, Tensor):
            return NotImplemented
        if other.dim() == 1:
            return (other @ self.A) @ self.B
        return FactoredMatrix(other @ self.A, self.B)

    def __mul__(self, scalar: float) -> FactoredMatrix:
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    def norm(self) -> Tensor:
        """Frobenius norm ``[...]``: ||AB||^2 = sum((A^T A) * (B B^T)), small r x r matrices."""
        gram_a = self.A.transpose(-2, -1) @ self.A
        gram_b = self.B @ self.B.transpose(-2, -1)
        return (gram_a * gram_b).sum((-2, -1)).clamp(min=0).sqrt()

    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """Thin SVD ``AB = U diag(S) V^T``: U ``[..., m, r]``, S ``[..., r]``, V ``[..., n, r]``.

        QR of each factor reduces it to an r x r SVD: A = Qa Ra, B^T = Qb Rb, so
        AB = Qa (Ra Rb^T) Qb^T.
        """
        qa, ra = torch.linalg.qr(self.A)
        qb, rb = torch.linalg.qr(self.B.transpose(-2, -1))
        u, s, vh = torch.linalg.svd(ra @ rb.transpose(-2, -1))
        return qa @ u, s, qb @ vh.transpose(-2, -1)

    @property
    def S(self) -> Tensor:
        return self.svd()[1]

    def eigenvalues(self) -> Tensor:
        """Eigenvalues of a square AB: those of the small ``BA`` ``[..., r]`` (complex). AB's
        other m - r eigenvalues are zero."""
        return torch.linalg.eigvals(self.BA)

    def __getitem__(self, idx: Any) -> FactoredMatrix:
        """Index the leading (batch) dims, e.g. ``fm[layer, head]``."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) > len(self.shape) - 2:
            raise ValueError("index only the leading dims; use .AB for element access")
        batch = self.shape[:-2]
        A = self.A.expand(*batch, *self.A.shape[-2:])
        B = self.B.expand(*batch, *self.B.shape[-2:])
        return FactoredMatrix(A[idx], B[idx])

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, inner={self.mdim})"


def _check_head(model: Any, layer: int, head: int) -> None:
    cfg = model.cfg
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        raise ValueError(f"(layer, head) = ({layer}, {head}) outside n_layers={cfg.n_layers}, "
                         f"n_heads={cfg.n_heads}")


def qk_circuit(model: Any, layer: int, head: int, embed: str = "token") -> FactoredMatrix:
    """``W_E W_Q W_K^T W_E^T`` ``[d_vocab, d_vocab]`` (query token x key token), factored.

    ``embed="pos"`` uses W_pos instead: the positional QK circuit ``[n_ctx, n_ctx]``.
    Biases and LayerNorm are ignored (the usual weight-based simplification).
    """
    _check_head(model, layer, head)
    W = _embedding(model, embed)
    W_Q = model.blocks[layer].attn.W_Q[head].detach()
    W_K = model.blocks[layer].attn.W_K[head].detach()
    return FactoredMatrix(W @ W_Q, W_K.T @ W.T)


def ov_circuit(model: Any, layer: int, head: int) -> FactoredMatrix:
    """``W_E W_V W_O W_U`` ``[d_vocab, d_vocab]`` (attended token x predicted logit),
    factored."""
    _check_head(model, layer, head)
    W_V = model.blocks[layer].attn.W_V[head].detach()
    W_O = model.blocks[layer].attn.W_O[head].detach()
    return FactoredMatrix(model.W_E.detach() @ W_V, W_O @ model.W_U.detach())


def _embedding(model: Any, embed: str) -> Tensor:
    if embed == "token":
        return model.W_E.detach()
    if embed == "pos":
        return model.W_pos.detach()
    raise ValueError(f"embed must be 'token' or 'pos', got {embed!r}")


def copying_scores(model: Any) -> Tensor:
    """How much each head's OV circuit copies: ``[n_layers, n_heads]`` in [-1, 1].

    Score = sum(eigenvalues) / sum(|eigenvalues|) of ``W_E W_V W_O W_U`` (Elhage et al.,
    2021): positive eigenvalues mean attending to token t raises t's own logit. The
    eigenvalues come from the d_head x d_head matrix ``W_O W_U W_E W_V``.
    """
    W_E, W_U = model.W_E.detach(), model.W_U.detach()
    W_V, W_O = model.W_V.detach(), model.W_O.detach()  # [layer, head, ...]
    small = W_O @ (W_U @ (W_E @ W_V))  # [layer, head, d_head, d_head]; W_U @ W_E is [d, d]
    eig = torch.linalg.eigvals(small.double())
    return (eig.sum(-1).real / eig.abs().sum(-1).clamp(min=1e-30)).float()


def composition_scores(model: Any, kind: str = "Q") -> Tensor:
    """Composition of every earlier head's output with every later head's input:
    ``[layer_a, head_a, layer_b, head_b]``, zero unless ``layer_b > layer_a``.

    Score = ||W_OV^a W^b||_F / (||W_OV^a||_F ||W^b||_F) (Elhage et al., 2021) with W^b =
    W_QK^b for "Q" (a's output read by b's queries), W_QK^b^T for "K" (keys) and W_OV^b for
    "V". Row-vector convention: x @ W_OV = x W_V W_O. A random pair scores about
    1/sqrt(d_model); all products stay d_head x d_head.
    """
    if kind not in ("Q", "K", "V"):
        raise ValueError(f"kind must be 'Q', 'K' or 'V', got {kind!r}")
    W_Q, W_K = model.W_Q.detach(), model.W_K.detach()
    W_V, W_O = model.W_V.detach(), model.W_O.detach()
    n_layers, n_heads = W_Q.shape[:2]
    ov = FactoredMatrix(W_V, W_O)  # [layer, head, d_model, d_model]
    if kind == "Q":
        right = FactoredMatrix(W_Q, W_K.transpose(-2, -1))
    elif kind == "K":
        right = FactoredMatrix(W_K, W_Q.transpose(-2, -1))
    else:
        right = ov
    left_norm, right_norm = ov.norm(), right.norm()  # [layer, head]
    # ||A1 (B1 A2) B2||_F^2 = sum((G1 M) * (M G2)) with G1 = A1^T A1, M = B1 A2, G2 = B2 B2^T:
    # every term is d_head x d_head, so no d_model x d_model product is ever formed.
    gram_left = W_V.transpose(-2, -1) @ W_V  # [layer, head, d_head, d_head]
    gram_right = right.B @ right.B.transpose(-2, -1)
    out = torch.zeros(n_layers, n_heads, n_layers, n_heads)
    for la in range(n_layers - 1):
        mid = W_O[la][:, None] @ right.A[la + 1:].flatten(0, 1)[None]  # [head_a, n_b, dh, dh]
        g2 = gram_right[la + 1:].flatten(0, 1)[None]
        sq = ((gram_left[la][:, None] @ mid) * (mid @ g2)).sum((-2, -1))
        denom = left_norm[la][:, None] * right_norm[la + 1:].flatten()[None]
        out[la, :, la + 1:] = (sq.clamp(min=0).sqrt() / denom).reshape(n_heads, -1, n_heads)
    return out
