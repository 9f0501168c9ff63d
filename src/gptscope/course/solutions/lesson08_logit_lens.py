"""Lesson 8: the logit lens. Read the residual stream after each layer as a prediction."""

from __future__ import annotations

import torch
from torch import Tensor


def logit_lens(model, tokens: Tensor) -> Tensor:
    """Logits read from the residual stream before every block and after the last one.

    model: a gptscope Transformer (pre-LN, with ``ln_final``); tokens [batch, pos].
    Returns [n_layers + 1, batch, pos, d_vocab]: row i is ``blocks.{i}.hook_resid_pre``
    (i < n_layers) and the last row ``blocks.{n_layers-1}.hook_resid_post``, each put
    through ``model.ln_final`` (its own statistics) and the unembedding ``@ model.W_U``.
    The last row equals the model's own logits.

    Hint: ``_, cache = model.run_with_cache(tokens)`` then ``cache["blocks.0.hook_resid_pre"]``.
    """
    n = model.cfg.n_layers
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        stack = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
        stack.append(cache[f"blocks.{n - 1}.hook_resid_post"])
        return torch.stack([model.ln_final(r) @ model.W_U for r in stack])


def direct_logit_attribution(model, tokens: Tensor, correct: Tensor, incorrect: Tensor,
                             pos: int = -1) -> dict[str, Tensor]:
    """What each component writes straight into ``logit[correct] - logit[incorrect]``.

    model: a gptscope Transformer (pre-LN, with ``ln_final`` and an MLP in every block);
    tokens [batch, pos]; correct, incorrect [batch] int64 token ids, one pair per row; pos:
    the position read in every row (an int; negative counts from the end).

    The final residual stream at ``pos`` is a sum of components: the embeddings
    (``hook_embed + hook_pos_embed``), each head's output (``hook_z`` of that head @ its
    ``W_O``, without b_O), each MLP's output (``hook_mlp_out``), and biases. Freeze
    ln_final's scale at its value on the whole stream, ``cache["ln_final.hook_scale"]``
    [batch, pos, 1]; then each component x contributes

        (x - x.mean(-1)) / scale  .  (ln_final.w * (W_U[:, correct] - W_U[:, incorrect]))

    Centre each component on its own (centring is linear), but divide by the *shared*
    scale, never one computed from the component alone. Biases (b_O, ln_final.b, b_U) are
    left out: the check asks only for the components.

    Returns a dict: "embed" [batch], "heads" [batch, n_layers, n_heads], "mlp" [batch,
    n_layers]. Together with the biases they add up to the logit difference.
    """
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        rows = torch.arange(tokens.shape[0])
        at = pos % tokens.shape[1]
        read = (model.W_U[:, correct] - model.W_U[:, incorrect]).T * model.ln_final.w
        scale = cache["ln_final.hook_scale"][rows, at]  # [batch, 1]

        def attr(x: Tensor) -> Tensor:  # x [batch, ..., d_model] at pos -> [batch, ...]
            x = (x - x.mean(-1, keepdim=True)) / scale.view(-1, *[1] * (x.dim() - 1))
            return (x * read.view(read.shape[0], *[1] * (x.dim() - 2), -1)).sum(-1)

        embed = cache["hook_embed"][rows, at] + cache["hook_pos_embed"][rows, at]
        heads, mlps = [], []
        for layer in range(model.cfg.n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"][rows, at]  # [batch, head, d_head]
            W_O = model.blocks[layer].attn.W_O  # [head, d_head, d_model]
            heads.append(attr(torch.einsum("bhd,hdm->bhm", z, W_O)))
            mlps.append(attr(cache[f"blocks.{layer}.hook_mlp_out"][rows, at]))
        return {"embed": attr(embed), "heads": torch.stack(heads, 1),
                "mlp": torch.stack(mlps, 1)}


def top_activating_examples(model, tokens: Tensor, layer: int, neuron: int, k: int
                            ) -> tuple[Tensor, Tensor]:
    """Where one MLP neuron fires most: the k largest activations over a batch of texts.

    model: a gptscope Transformer; tokens [batch, pos]; the neuron is ``neuron`` of
    ``blocks.{layer}.mlp.hook_post`` (after the nonlinearity; hook_pre is before it),
    whose activations are [batch, pos, d_mlp]. Rank every (batch, pos) position of every
    row, not only each row's maximum: one text may hold several of the top k.

    Returns ``(values, where)``: values [k] float, the k largest activations, largest
    first; where [k, 2] int64, the (batch index, position) of each, both counted from 0 in
    ``tokens``. Ties (equal activations, e.g. the same text twice) go to the earlier
    position in row-major order (smaller batch index, then smaller position): a stable
    sort does this, ``topk`` need not.
    """
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        acts = cache[f"blocks.{layer}.mlp.hook_post"][..., neuron]  # [batch, pos]
        values, order = acts.flatten().sort(descending=True, stable=True)
        where = torch.stack([order // acts.shape[1], order % acts.shape[1]], -1)
        return values[:k], where[:k]


def explore_stories_lens(n_stories: int = 20, seed: int = 0) -> Tensor:
    """Given: read the shipped ``stories`` model (``gs.load("stories")``) with *your*
    ``logit_lens``.

    On windows of stories it never saw, each row of the lens is a prediction of the next
    character; this prints, per layer, the mean log-probability it gives the character that
    does come next (the last row is the model's own loss, negated) and one window's top
    guesses. The embeddings alone already know which letters follow which (a bigram model);
    each block should add to that. Returns the mean log-probabilities [n_layers + 1].
    """
    import gptscope as gs
    from gptscope.data.stories import stories_text

    model = gs.load("stories")
    n = model.cfg.n_ctx
    ids = torch.tensor(model.tokenizer.encode(stories_text(n_stories, seed=5000 + seed)))
    windows = ids[: len(ids) // n * n].reshape(-1, n)  # [batch, n_ctx]
    with torch.no_grad():
        lens = logit_lens(model, windows)  # [n_layers + 1, batch, pos, d_vocab]
    logp = lens[:, :, :-1].log_softmax(-1)
    nxt = windows[:, 1:]
    right = logp.gather(-1, nxt.expand(len(lens), -1, -1)[..., None])[..., 0]
    means = right.mean(dim=(1, 2))  # [n_layers + 1]
    text = model.tokenizer.decode(windows[0, 41:61].tolist())
    print(f"the next characters {text!r}, and each layer's guesses for them:")
    for i, m in enumerate(means):
        guess = model.tokenizer.decode(logp[i, 0, 40:60].argmax(-1).tolist())
        name = "embeddings" if i == 0 else f"after block {i - 1}"
        print(f"{name:15s} mean log p(next) {m.item():7.3f}   guesses {guess!r}")
    return means
