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


def word_features(acts: Tensor, text: str, words: tuple[str, ...]) -> dict[str, tuple]:
    """Given: for each word, the SAE feature whose activation mass falls most on the
    word's last letter, among features active at >= half of its occurrences.

    acts [chars, d_sae]: feature activations of ``text``, one row per character. Returns
    {word: (feature, precision, recall)}: precision is the share of the feature's total
    activation that lands on the word's last letters, recall the share of the word's
    occurrences where the feature is active.
    """
    out = {}
    for w in words:
        ends, start = [], text.find(f" {w} ")
        while 0 <= start < len(acts) - len(w) - 1:
            ends.append(start + len(w))
            start = text.find(f" {w} ", start + 1)
        if not ends:
            continue
        on_word = acts[torch.tensor(ends)]
        precision = on_word.sum(0) / acts.sum(0).clamp_min(1e-9)
        recall = (on_word > 0).float().mean(0)
        f = int(torch.where(recall >= 0.5, precision, torch.zeros_like(precision)).argmax())
        out[w] = (f, float(precision[f]), float(recall[f]))
    return out


def explore_stories_sae(n_stories: int = 120, seed: int = 0) -> dict[str, float]:
    """Given: read the shipped SAE on the shipped ``stories`` model (no training).

    ``stories-sae`` is a top-k SAE (16 of 1024 features active) trained on the stories
    model's ``blocks.2.hook_resid_pre`` by ``gptscope sae train`` (its recipe:
    ``gs.zoo.recipe("stories-sae")``; training one yourself is that one command). Your
    ``sae_loss`` scores its reconstruction of stories it never saw; the model then runs
    with the reconstruction in place of its residual stream, to see how much of the
    next-character loss survives; and for each adjective of the corpus, ``word_features``
    finds the feature most specific to it. Look at the precisions: in this character model
    few features belong to one word (most track spelling shared by many words), which is
    what dictionary learning on a small model often looks like. Returns the fraction of
    variance explained, both losses, and the best word feature's precision.
    """
    import gptscope as gs
    from gptscope.data.stories import NEGATIVE_ADJECTIVES, POSITIVE_ADJECTIVES, stories_text
    from gptscope.sae.base import load_sae

    model, sae, hook = gs.load("stories"), load_sae("stories-sae"), "blocks.2.hook_resid_pre"
    text = stories_text(n_stories, seed=10_000 + seed)
    n = model.cfg.n_ctx
    windows = torch.tensor(model.tokenizer.encode(text))[: len(text) // n * n].reshape(-1, n)
    x = model.activations(windows, hook)[hook].flatten(0, 1)  # [chars, d_model]
    with torch.no_grad():
        acts = sae.encode(x)  # [chars, d_sae]
        _, mse, _ = sae_loss(x, sae.decode(acts), acts, 0.0)
        clean = float(model(windows, return_type="loss"))
        with model.hooks(fwd_hooks=[(hook, lambda resid, hook: sae(resid))]):
            spliced = float(model(windows, return_type="loss"))
    explained = 1 - float(mse) / float((x - x.mean(0)).pow(2).sum(-1).mean())
    print(f"variance explained {explained:.3f}; next-char loss {clean:.3f} nats, "
          f"{spliced:.3f} with the SAE's reconstruction spliced in")
    found = word_features(acts, text, POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES)
    for w, (f, precision, recall) in sorted(found.items(), key=lambda kv: -kv[1][1]):
        print(f"{w:7s} feature {f:4d}: {precision:.0%} of its activation on this word, "
              f"active at {recall:.0%} of its uses")
    return {"variance_explained": explained, "loss": clean, "loss_with_sae": spliced,
            "best_word_feature_precision": max(v[1] for v in found.values())}
