"""Lesson 7: using real transformers. How big is a model, counted from its config?"""

from __future__ import annotations

from gptscope.config import ModelConfig


def count_params(cfg: ModelConfig) -> int:
    """The number of parameters of ``gptscope.Transformer(cfg)``, from the config alone.

    Count: the token embedding W_E [d_vocab, d_model]; learned positions W_pos [n_ctx,
    d_model] (only when ``cfg.positional == "learned"``); per block: W_Q, W_K, W_V, W_O
    (n_heads * d_head * d_model each) and their biases (3 * n_heads * d_head + d_model);
    unless ``cfg.attn_only``, the MLP (2 * d_model * d_mlp weights, d_mlp + d_model
    biases); each LayerNorm has a weight and a bias of d_model (ln1 and ln2 per block,
    ln_final once; none when ``cfg.normalization`` is None; only ln1 in attention-only
    blocks); the unembedding W_U [d_model, d_vocab] unless ``cfg.tie_embeddings``.
    Check your count against ``sum(p.numel() for p in model.parameters())``.
    """
    d, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    ln = 2 * d if cfg.normalization else 0
    total = cfg.d_vocab * d
    if cfg.positional == "learned":
        total += cfg.n_ctx * d
    per_block = 4 * H * dh * d + 3 * H * dh + d + ln
    if not cfg.attn_only:
        per_block += 2 * d * cfg.d_mlp + cfg.d_mlp + d + ln
    total += cfg.n_layers * per_block + ln
    if not cfg.tie_embeddings:
        total += d * cfg.d_vocab
    return total
