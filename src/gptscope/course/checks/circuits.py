"""Checks for lesson 9's weight-based circuits and head ablation.

ov_qk_circuits and composition_score are compared with ``gptscope.interp.circuits`` (the
factored QK/OV circuits and the all-pairs composition scores) on seeded tiny models whose
biases are non-zero, so that a bias left in shows. ablate_head is compared with a float64
replay of the ablation through ``run_with_hooks``.
"""

# The wrong-variant lambdas are called by compare() in the same loop iteration that makes
# them, so the late binding B023 warns about cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gptscope.course.checks._answers import tuple_answer
from gptscope.course.checks._common import (
    Mismatch,
    call,
    compare,
    float32_atol,
    run_cases,
    run_check,
)
from gptscope.course.checks.interp import interp_model
from gptscope.course.result import CheckResult
from gptscope.interp.circuits import composition_scores, ov_circuit, qk_circuit

# -- ov_qk_circuits ---------------------------------------------------------------------------

QK_SWAPPED = ("qk is transposed: rows are the query's token, columns the key's (W_E W_Q "
              "(W_E W_K)^T, queries on the left)")
OV_TRANSPOSED = ("ov is transposed: rows are the attended token, columns the logit it "
                 "raises (W_E W_V W_O W_U, in that order)")
W_U_FOR_KEYS = ("qk used W_U where W_E^T belongs: both sides of the QK circuit are "
                "embedded tokens, W_E W_Q W_K^T W_E^T")
W_E_T_FOR_LOGITS = ("ov used W_E^T where W_U belongs: the OV circuit ends in the "
                    "unembedding, W_E W_V W_O W_U")
NO_EMBED = ("left out the embedding: start from the tokens, W_E [d_vocab, d_model], on "
            "the left of both circuits")
NO_UNEMBED = "ov left out the unembedding: end with W_U [d_model, d_vocab]"
OTHER_HEAD = ("these are another head's weights: take the slice [head] of "
              "model.blocks[layer].attn's W_Q, W_K, W_V and W_O")
BIASES = ("biases are included: the circuits are the weights' bilinear part only, leave "
          "out b_Q, b_K, b_V and b_O")
SCALED = "qk is scaled by 1/sqrt(d_head): the circuit leaves the attention scale out"


def _weights(model: Any, layer: int, head: int) -> dict[str, Tensor]:
    attn = model.blocks[layer].attn
    w = {k: getattr(attn, k)[head].detach().double() for k in
         ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")}
    w["b_O"] = attn.b_O.detach().double()
    w["W_E"], w["W_U"] = model.W_E.detach().double(), model.W_U.detach().double()
    return w


def _circuit_mistakes(model: Any, layer: int, head: int, which: str) -> list[tuple[str, Any]]:
    w = _weights(model, layer, head)
    E, U = w["W_E"], w["W_U"]
    if which == "qk":
        right = E @ w["W_Q"] @ w["W_K"].T @ E.T
        found = [(QK_SWAPPED, lambda: right.T),
                 (W_U_FOR_KEYS, lambda: E @ w["W_Q"] @ w["W_K"].T @ U),
                 (NO_EMBED, lambda: w["W_Q"] @ w["W_K"].T),
                 (BIASES, lambda: (E @ w["W_Q"] + w["b_Q"]) @ (E @ w["W_K"] + w["b_K"]).T),
                 (SCALED, lambda: right / w["W_Q"].shape[-1] ** 0.5)]
    else:
        ov = w["W_V"] @ w["W_O"]
        found = [(OV_TRANSPOSED, lambda: (E @ ov @ U).T),
                 (W_E_T_FOR_LOGITS, lambda: E @ ov @ E.T),
                 (NO_EMBED, lambda: ov @ U),
                 (NO_UNEMBED, lambda: E @ ov),
                 (BIASES, lambda: (E @ w["W_V"] + w["b_V"]) @ w["W_O"] @ U + w["b_O"] @ U)]
    # Built only if the answer is wrong: compare() calls each variant lazily.
    circuit = qk_circuit if which == "qk" else ov_circuit
    for other_layer in range(model.cfg.n_layers):
        for other_head in range(model.cfg.n_heads):
            if (other_layer, other_head) != (layer, head):
                found.append((OTHER_HEAD, lambda ol=other_layer, oh=other_head: circuit(
                    model, ol, oh).AB))
    return found


def check_ov_qk_circuits(fn: Callable[..., Any]) -> CheckResult:
    def one_case(spec: tuple[int, int, int, int]) -> str:
        seed, n_layers, layer, head = spec
        model = interp_model(seed, n_layers)
        snapshot = copy.deepcopy(model.state_dict())
        with torch.no_grad():
            got = tuple_answer(call(fn, model, layer, head), ("qk", "ov"), "ov_qk_circuits")
        case = f"{n_layers} layers, layer={layer}, head={head}"
        if any(not torch.equal(v, model.state_dict()[k]) for k, v in snapshot.items()):
            raise Mismatch("ov_qk_circuits changed the model's weights: read them, do not "
                           "edit them in place", [f"case: {case}"])
        w = _weights(model, layer, head)
        E, U = w["W_E"], w["W_U"]
        # The float64 truth; the library's float32 factored product sets the tolerance.
        for i, which, exact, factored, axes in (
                (0, "qk", E @ w["W_Q"] @ w["W_K"].T @ E.T, qk_circuit(model, layer, head),
                 ("query token", "key token")),
                (1, "ov", E @ w["W_V"] @ w["W_O"] @ U, ov_circuit(model, layer, head),
                 ("attended token", "logit"))):
            compare(got[i], exact, case, _circuit_mistakes(model, layer, head, which),
                    what=which, atol=float32_atol(exact, factored.AB), axes=axes)
        return case

    # Layer and head differ in every case, so an index mix-up shows; the first case keeps a
    # swapped (head, layer) in range, so that mix-up is named rather than an IndexError.
    return run_check("ov_qk_circuits", lambda: run_cases(
        [(1, 3, 0, 2), (0, 2, 1, 3), (2, 2, 1, 0)], one_case))


# -- composition_score ------------------------------------------------------------------------

NOT_NORMALISED = ("not normalised: divide ||W_A W_B||_F by ||W_A||_F ||W_B||_F, so the "
                  "score does not grow with the weights' scale")
REVERSED = ("the product is in the wrong order: W_A W_B (a writes, then b reads, row "
            "vectors), not W_B W_A")
SPECTRAL = ("used the spectral norm (the largest singular value); the score uses the "
            "Frobenius norm, torch.linalg.matrix_norm(M) (ord='fro')")
K_AS_Q = ("K-composition used the Q matrix W_Q W_K^T; b's keys read a's output through "
          "its transpose, W_K W_Q^T")
COLUMN_OV = ("head a's OV matrix is transposed (W_O^T W_V^T): with row vectors it is "
             "W_V W_O [d_model, d_model]")
ONE_NORM = "divided by one norm only: the denominator is ||W_A||_F times ||W_B||_F"


def _score(W_A: Tensor, W_B: Tensor, norm: Callable[[Tensor], Tensor] | None = None,
           normalise: str = "both") -> Tensor:
    norm = norm or torch.linalg.matrix_norm
    top = norm(W_A @ W_B)
    if normalise == "none":
        return top
    return top / (norm(W_A) * norm(W_B) if normalise == "both" else norm(W_A))


def _composition_mistakes(model: Any, la: int, ha: int, lb: int, hb: int, kind: str
                          ) -> tuple[Tensor, dict[str, Callable[[], Tensor]]]:
    a, b = _weights(model, la, ha), _weights(model, lb, hb)
    W_A = a["W_V"] @ a["W_O"]
    qk = b["W_Q"] @ b["W_K"].T
    W_B = {"Q": qk, "K": qk.T, "V": b["W_V"] @ b["W_O"]}[kind]
    spectral = lambda m: torch.linalg.matrix_norm(m, ord=2)  # noqa: E731
    mistakes = {
        NOT_NORMALISED: lambda: _score(W_A, W_B, normalise="none"),
        REVERSED: lambda: _score(W_B, W_A),
        SPECTRAL: lambda: _score(W_A, W_B, spectral),
        COLUMN_OV: lambda: _score(W_A.T, W_B),
        ONE_NORM: lambda: _score(W_A, W_B, normalise="one"),
    }
    if kind == "K":
        mistakes[K_AS_Q] = lambda: _score(W_A, qk)
    return _score(W_A, W_B), mistakes


def check_composition_score(fn: Callable[..., Any]) -> CheckResult:
    model = interp_model(seed=4, n_layers=3)

    def one_case(spec: tuple[str, int, int, int, int]) -> str:
        kind, la, ha, lb, hb = spec
        exact, mistakes = _composition_mistakes(model, la, ha, lb, hb, kind)
        reference = composition_scores(model, kind)[la, ha, lb, hb]
        with torch.no_grad():
            got = call(fn, model, la, ha, lb, hb, kind)
        case = f"kind={kind!r}, head a=({la}, {ha}), head b=({lb}, {hb})"
        compare(got, exact, case, mistakes, what="your score",
                atol=float32_atol(exact, reference, floor=1e-5))
        return case

    return run_check("composition_score", lambda: run_cases(
        [("Q", 0, 1, 1, 2), ("K", 0, 3, 2, 0), ("V", 1, 0, 2, 3), ("K", 1, 2, 2, 1),
         ("Q", 0, 0, 2, 3)], one_case))


# -- ablate_head ------------------------------------------------------------------------------

ALL_HEADS = ("ablated every head of the layer: replace only z[:, :, head], the one head's "
             "slice of hook_z [batch, pos, head, d_head]")
PER_POSITION = ("the mean is per position (over the batch only): average over the batch "
                "*and* every position, one [d_head] vector")
OVER_D_HEAD = ("the mean is over the wrong axis (d_head): average z[:, :, head] over the "
               "batch and positions, keeping its d_head entries")
OVER_HEADS = ("the mean is over the heads: average this head's own z over the batch and "
              "positions")
KIND_IGNORED = "the kind argument is ignored: \"zero\" puts zeros, \"mean\" the head's mean z"
PATTERN = ("ablated the attention pattern instead of z: mean-ablate the head's output z at "
           "hook_z, not hook_pattern")
SIGN = "the sign is flipped: return ablated loss - clean loss (positive when the head helps)"
ABLATED_ONLY = "returned the ablated loss itself: return ablated loss - clean loss"
HOOK_LEFT = ("a hook is still attached after ablate_head returned: use model.run_with_hooks "
             "(or `with model.hooks(...)`), which removes it")
WEIGHTS_CHANGED = ("ablate_head changed the model's weights: ablate with a hook on hook_z "
                   "and leave the parameters alone")


def _ablated_loss(model64: Any, tokens: Tensor, layer: int, head: int, how: str,
                  cache: Any) -> Tensor:
    """The loss of ``model64`` (a float64 copy) with head (layer, head) replaced as ``how``
    says: the right "zero" and "mean", or one of the mistakes; ``cache`` holds the clean
    run's hook_z and hook_pattern of that layer."""
    z_name, p_name = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_pattern"
    z, pattern = cache[z_name], cache[p_name]
    if how == "pattern":
        name, sl, fill = p_name, (slice(None), head), pattern[:, head].mean(0)  # [q, k]
    elif how.startswith("all_"):
        name, sl = z_name, (slice(None), slice(None), slice(None))
        fill = torch.zeros_like(z) if how == "all_zero" else z.mean((0, 1), keepdim=True)
    else:
        mine = z[:, :, head]  # [batch, pos, d_head]
        name, sl, fill = z_name, (slice(None), slice(None), head), {
            "zero": lambda: torch.zeros_like(mine),
            "mean": lambda: mine.mean((0, 1)),
            "per_position": lambda: mine.mean(0, keepdim=True),
            "d_head": lambda: mine.mean(-1, keepdim=True),
            "heads": lambda: z.mean((0, 1, 2)),
        }[how]()

    def hook(x: Tensor, hook: Any) -> Tensor:
        x = x.clone()
        x[sl] = fill
        return x
    with torch.no_grad():
        return model64.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, hook)])


def _ablation_mistakes(model64: Any, tokens: Tensor, layer: int, head: int, kind: str
                       ) -> tuple[Tensor, dict[str, Callable[[], Tensor]]]:
    names = [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_pattern"]
    with torch.no_grad():
        clean, cache = model64.run_with_cache(tokens, names_filter=names, return_type="loss")

    def change(how: str) -> Tensor:
        return _ablated_loss(model64, tokens, layer, head, how, cache) - clean

    right = change(kind)
    mistakes = {
        ALL_HEADS: lambda: change(f"all_{kind}"),
        KIND_IGNORED: lambda: change("mean" if kind == "zero" else "zero"),
        SIGN: lambda: -right,
        ABLATED_ONLY: lambda: right + clean,
    }
    if kind == "mean":
        for message, how in ((PER_POSITION, "per_position"), (OVER_D_HEAD, "d_head"),
                             (OVER_HEADS, "heads"), (PATTERN, "pattern")):
            mistakes[message] = lambda how=how: change(how)
    return right, mistakes


def check_ablate_head(fn: Callable[..., Any]) -> CheckResult:
    model = interp_model(seed=5, n_layers=2)
    model64 = copy.deepcopy(model).double()  # the reference runs in float64
    tokens = torch.randint(0, 20, (3, 10), generator=torch.Generator().manual_seed(5))

    def one_case(spec: tuple[int, int, str]) -> str:
        layer, head, kind = spec
        case = f"layer={layer}, head={head}, kind={kind!r}"
        snapshot = copy.deepcopy(model.state_dict())
        try:
            got = call(fn, model, tokens.clone(), layer, head, kind)
        finally:
            left = any(p.fwd_fns or p.bwd_fns for p in model.hook_dict.values())
            model.reset_hooks()  # the next case must not run on a leftover hook
            changed = any(not torch.equal(v, model.state_dict()[k])
                          for k, v in snapshot.items())
            model.load_state_dict(snapshot)
        if changed:
            raise Mismatch(WEIGHTS_CHANGED, [f"case: {case}"])
        if left:
            raise Mismatch(HOOK_LEFT, [f"case: {case}"])
        right, mistakes = _ablation_mistakes(model64, tokens, layer, head, kind)
        compare(got, right.float(), case, mistakes, what="your loss change", atol=1e-4)
        return case

    return run_check("ablate_head", lambda: run_cases(
        [(0, 1, "zero"), (1, 3, "mean"), (1, 0, "zero"), (0, 2, "mean")], one_case))
