"""Lesson 12: superposition and sparse autoencoders (dictionary learning).

A toy model (Elhage et al., 2022) shows why features end up in superposition: squeezed
through fewer dimensions than it has features, a model stores sparse features as
almost-orthogonal directions. A sparse autoencoder (SAE) undoes that: it learns an
overcomplete dictionary of directions, few of them active on any one input.
"""

from __future__ import annotations

import torch
from torch import Tensor


def toy_model_forward(x: Tensor, W: Tensor, b: Tensor, importance: Tensor
                      ) -> tuple[Tensor, Tensor]:
    """The toy model of superposition, run on a batch, and its importance-weighted loss.

    Many small models ("instances") are run side by side and never interact.
    x [batch, n_instances, n_features]: the inputs; W [n_instances, n_hidden, n_features];
    b [n_instances, n_features]; importance [n_instances, n_features]. For each instance
    (drop its index): the hidden vector h = W x [n_hidden] and the output
    x_hat = ReLU(W^T h + b) [n_features]. The loss is the importance-weighted squared
    error: sum over features of importance * (x - x_hat)^2, averaged over the batch, then
    summed over the instances (so each instance's gradient is its own).

    Return (x_hat [batch, n_instances, n_features], loss, a 0-dim tensor that carries the
    gradient to W and b).

    Hint: ``torch.einsum("ihf,bif->bih", W, x)`` applies each instance's W to its own slice.
    """
    hidden = torch.einsum("ihf,bif->bih", W, x)
    x_hat = torch.relu(torch.einsum("ihf,bih->bif", W, hidden) + b)
    loss = (importance * (x - x_hat).pow(2)).sum(-1).mean(0).sum()
    return x_hat, loss


def sae_loss(x: Tensor, x_hat: Tensor, acts: Tensor, l1_coefficient: float,
             decoder_norms: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The sparse autoencoder's training loss: reconstruction plus an L1 sparsity penalty.

    x, x_hat [batch, d_in]: activations and the SAE's reconstruction; acts [batch, d_sae]:
    the feature activations. Return (loss, mse, l1), three 0-dim tensors that keep their
    gradients:
    mse = squared error summed over d_in, averaged over the batch;
    l1 = sum over features of |acts|, averaged over the batch;
    loss = mse + l1_coefficient * l1.

    decoder_norms [d_sae] (optional): the L2 norms of the decoder's rows. When given, each
    feature's |act| is multiplied by its decoder norm before the sum (Anthropic's April
    2024 recipe: otherwise the SAE could shrink acts and grow the decoder to dodge the
    penalty). With unit-norm rows it is the plain L1.
    """
    mse = (x_hat - x).pow(2).sum(-1).mean()
    magnitudes = acts.abs()
    if decoder_norms is not None:
        magnitudes = magnitudes * decoder_norms
    l1 = magnitudes.sum(-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def sae_training_step(params: dict[str, Tensor], x: Tensor, optimizer: torch.optim.Optimizer,
                      l1_coefficient: float) -> float:
    """One training step of a ReLU SAE whose decoder rows stay at unit norm.

    params holds leaf tensors that require grad, the ones ``optimizer`` updates:
    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in] (each row a feature's
    direction, unit norm) and b_dec [d_in]. x [batch, d_in]. In order:

    1. forward: acts = ReLU((x - b_dec) @ W_enc + b_enc) (the decoder bias is subtracted
       before encoding), x_hat = acts @ W_dec + b_dec;
    2. loss from ``sae_loss(x, x_hat, acts, l1_coefficient)`` (the plain L1 on acts: rows
       are unit norm); zero the gradients, then backward;
    3. remove from W_dec.grad the part parallel to each row: grad_i -= (grad_i . w_i) w_i;
    4. ``optimizer.step()``;
    5. rescale every row of W_dec back to unit norm, in place (the optimizer keeps
       updating the same tensor).

    Steps 3 and 5 stop the SAE from dodging the L1 penalty by shrinking acts and growing
    the decoder; 3 spares the optimizer a direction that 5 would undo. Return the loss
    before the step, a Python float.
    """
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    x_hat = acts @ W_dec + b_dec
    loss, _, _ = sae_loss(x, x_hat, acts, l1_coefficient)
    optimizer.zero_grad()
    loss.backward()
    with torch.no_grad():
        W_dec.grad -= (W_dec.grad * W_dec).sum(-1, keepdim=True) * W_dec
        optimizer.step()
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return loss.item()


def explore_dictionary_learning(steps: int = 1500, seed: int = 0) -> float:
    """Given: recover known features from superposed data with an SAE trained by *your*
    ``sae_training_step`` (and so your ``sae_loss``).

    Sixteen true feature directions live in an 8-dimensional space (more features than
    dimensions: superposition); each sample switches on a few of them. A ReLU SAE with 32
    features, decoder rows kept at unit norm, is trained on them; the mean max cosine
    similarity (MMCS) between its decoder rows and the true features says how many it
    found (1 = all). Returns the MMCS.
    """
    from gptscope.sae.metrics import mmcs

    g = torch.Generator().manual_seed(seed)
    n_true, d, d_sae = 16, 8, 32
    true = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=-1)

    def sample(n: int) -> Tensor:
        on = torch.rand(n, n_true, generator=g) < 0.08
        return (on * torch.rand(n, n_true, generator=g)) @ true

    W_enc = 0.1 * torch.randn(d, d_sae, generator=g)
    params = {"W_enc": W_enc, "b_enc": torch.zeros(d_sae),
              "W_dec": torch.nn.functional.normalize(W_enc.T.clone(), dim=-1),
              "b_dec": torch.zeros(d)}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=3e-3)
    for _ in range(steps):
        loss = sae_training_step(params, sample(256), opt, 0.1)
    score = mmcs(params["W_dec"], true)
    print(f"final loss {loss:.4f}; MMCS with the true features {score:.2f}")
    return score
