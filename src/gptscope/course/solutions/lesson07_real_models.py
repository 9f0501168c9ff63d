"""Lesson 7: using real transformers. How big is a model, counted from its config?"""

from __future__ import annotations

from gptscope.config import ModelConfig


def count_params(cfg: ModelConfig) -> int:
    """The number of parameters of ``gptscope.Transformer(cfg)``, from the config alone.

    With d = d_model, "a norm" is d weights and d biases for a LayerNorm
    (``cfg.normalization == "layer"``) and d weights, no bias, for an RMSNorm (``"rms"``).
    Count:

    - the token embedding W_E [d_vocab, d]; learned positions W_pos [n_ctx, d] only when
      ``cfg.positional == "learned"`` (sinusoidal and rotary positions have no parameters);
      BERT's token-type embeddings [n_token_types, d]; a norm on the embeddings when
      ``cfg.embed_norm`` (a LayerNorm if normalization is None);
    - per block (n_layers of them): W_Q, W_K, W_V, W_O (n_heads * d_head * d each; d_head
      need not be d / n_heads); when ``cfg.attn_bias``, b_Q, b_K, b_V (n_heads * d_head
      each) and b_O (d); unless ``cfg.attn_only``, the MLP: W_in and W_out (d * d_mlp each)
      and, when ``cfg.mlp_bias``, b_in (d_mlp) and b_out (d); the norms ln1 and ln2, none
      when normalization is None (attention-only blocks have ln1 only, plus ln2 when
      ``cfg.norm_position == "post"``);
    - ln_final, a norm, when normalization is set, ``cfg.final_norm`` and norm_position is
      "pre"; BERT's MLM head when ``cfg.mlm_head``: W [d, d], b [d] and a norm (a
      LayerNorm if normalization is None);
    - the unembedding W_U [d, d_vocab] unless ``cfg.tie_embeddings`` (then it is W_E,
      counted once), and its bias b_U [d_vocab] when ``cfg.unembed_bias``.

    Return an int. Check your count against ``sum(p.numel() for p in model.parameters())``.
    """
    d = cfg.d_model
    sizes = {"layer": 2 * d, "rms": d, None: 0}
    norm = sizes[cfg.normalization]
    extra_norm = sizes[cfg.normalization or "layer"]  # embed_ln, the MLM head's norm
    total = cfg.d_vocab * d + cfg.n_token_types * d
    if cfg.positional == "learned":
        total += cfg.n_ctx * d
    if cfg.embed_norm:
        total += extra_norm
    attn = 4 * cfg.n_heads * cfg.d_head * d
    if cfg.attn_bias:
        attn += 3 * cfg.n_heads * cfg.d_head + d
    if cfg.attn_only:
        block = attn + norm * (2 if cfg.norm_position == "post" else 1)
    else:
        mlp = 2 * d * cfg.d_mlp + (cfg.d_mlp + d if cfg.mlp_bias else 0)
        block = attn + mlp + 2 * norm
    total += cfg.n_layers * block
    if cfg.final_norm and cfg.norm_position == "pre":
        total += norm
    if cfg.mlm_head:
        total += d * d + d + extra_norm
    if not cfg.tie_embeddings:
        total += d * cfg.d_vocab
    if cfg.unembed_bias:
        total += cfg.d_vocab
    return total
