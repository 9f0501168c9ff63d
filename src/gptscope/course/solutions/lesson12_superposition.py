"""Lesson 12: superposition and sparse autoencoders (dictionary learning)."""

from __future__ import annotations

from torch import Tensor


def sae_loss(x: Tensor, x_hat: Tensor, acts: Tensor, l1_coefficient: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """The sparse autoencoder's training loss: reconstruction plus an L1 sparsity penalty.

    x, x_hat [batch, d_in]: activations and the SAE's reconstruction; acts [batch, d_sae]:
    the feature activations. Return (loss, mse, l1), three scalars:
    mse = squared error summed over d_in, averaged over the batch;
    l1 = sum over features of |acts|, averaged over the batch;
    loss = mse + l1_coefficient * l1.
    """
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.abs().sum(-1).mean()
    return mse + l1_coefficient * l1, mse, l1


def explore_dictionary_learning(steps: int = 1500, seed: int = 0) -> float:
    """Given: recover known features from superposed data with an SAE trained on *your* loss.

    Sixteen true feature directions live in an 8-dimensional space (more features than
    dimensions: superposition); each sample switches on a few of them. A ReLU SAE with 32
    features, decoder rows kept at unit norm, is trained with ``sae_loss``; the mean max
    cosine similarity (MMCS) between its decoder rows and the true features says how many
    it found (1 = all). Returns the MMCS.
    """
    import torch

    from gptscope.sae.metrics import mmcs

    g = torch.Generator().manual_seed(seed)
    n_true, d, d_sae = 16, 8, 32
    true = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=-1)

    def sample(n: int) -> torch.Tensor:
        on = torch.rand(n, n_true, generator=g) < 0.08
        return (on * torch.rand(n, n_true, generator=g)) @ true

    W_enc = torch.nn.Parameter(0.1 * torch.randn(d, d_sae, generator=g))
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    W_dec = torch.nn.Parameter(torch.nn.functional.normalize(W_enc.detach().T.clone(), dim=-1))
    b_dec = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=3e-3)
    for _ in range(steps):
        x = sample(256)
        acts = torch.relu((x - b_dec) @ W_enc + b_enc)
        x_hat = acts @ W_dec + b_dec
        loss, mse, l1 = sae_loss(x, x_hat, acts, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec.data = torch.nn.functional.normalize(W_dec.data, dim=-1)
    score = mmcs(W_dec, true)
    print(f"mse {mse.item():.4f}, l1 {l1.item():.3f}; MMCS with the true features {score:.2f}")
    return score
