"""EncoderDecoder: the original transformer of "Attention Is All You Need", composed from two
gptscope Transformers rather than written as a second model class.

The encoder is a ``Transformer`` with ``causal=False``: it reads the source and its final
residual stream (after ``ln_final``) is the "memory". The decoder is a ``Transformer`` with
``cross_attention=True``: every block attends first to the target so far (causal), then to
the memory (cross-attention, never causal, source padding masked), then runs its MLP. The
encoder's unembedding is never used.

Hook names are the two models' own, prefixed: ``encoder.blocks.0.attn.hook_pattern``
[batch, head, src_pos, src_pos], ``decoder.blocks.0.attn.hook_pattern`` [batch, head,
tgt_pos, tgt_pos], ``decoder.blocks.0.cross_attn.hook_pattern`` [batch, head, tgt_pos,
src_pos], so ``run_with_cache``, ``run_with_hooks`` and ``hooks`` work on the whole model by
name. Each half keeps its own names too (``model.decoder.run_with_cache(tgt, context=memory)``
caches ``blocks.0.cross_attn.hook_pattern``), and ``cache.submodel("decoder")`` turns a
cache of the whole model into one of the decoder, for the interpretability tools. Saving
and loading: ``gptscope.io.encoder_decoder``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gptscope.config import ModelConfig
from gptscope.model.hooks import ForwardPositions, HookedModule
from gptscope.model.transformer import RETURN_TYPES, Transformer


def check_pair(encoder_cfg: ModelConfig, decoder_cfg: ModelConfig) -> None:
    """Refuse an encoder and decoder that cannot work together, naming the field to fix."""
    for name, cfg in (("encoder_cfg", encoder_cfg), ("decoder_cfg", decoder_cfg)):
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"{name} must be a ModelConfig, got {type(cfg).__name__}")
    if encoder_cfg.causal or encoder_cfg.cross_attention:
        raise ValueError(f"the encoder sees the whole source and reads no other model: set "
                         f"causal=False and cross_attention=False in its config (got causal="
                         f"{encoder_cfg.causal}, cross_attention={encoder_cfg.cross_attention})")
    if not (decoder_cfg.cross_attention and decoder_cfg.causal):
        raise ValueError(f"the decoder must be causal and attend to the encoder: set "
                         f"causal=True and cross_attention=True in its config (got causal="
                         f"{decoder_cfg.causal}, cross_attention={decoder_cfg.cross_attention})")
    if encoder_cfg.d_model != decoder_cfg.d_model:
        raise ValueError(f"the decoder's cross-attention reads the encoder's output, so both "
                         f"need one d_model; got encoder {encoder_cfg.d_model}, decoder "
                         f"{decoder_cfg.d_model}")


def pair_configs(src_vocab: int, tgt_vocab: int, src_ctx: int, tgt_ctx: int,
                 **shared: Any) -> tuple[ModelConfig, ModelConfig]:
    """An encoder config and a matching decoder config sharing ``shared`` fields (n_layers,
    d_model, n_heads, ...). A given ``seed`` seeds the encoder; the decoder gets seed + 1 so
    the two do not start as copies of each other."""
    seed = shared.pop("seed", None)
    enc = ModelConfig(d_vocab=src_vocab, n_ctx=src_ctx, causal=False, seed=seed, **shared)
    dec = ModelConfig(d_vocab=tgt_vocab, n_ctx=tgt_ctx, cross_attention=True,
                      seed=None if seed is None else seed + 1, **shared)
    return enc, dec


class EncoderDecoder(HookedModule):
    """A source-to-target transformer: ``encoder`` (causal=False) and ``decoder``
    (cross_attention=True), both plain gptscope Transformers.

    >>> enc, dec = pair_configs(12, 12, 10, 12, n_layers=1, d_model=32, n_heads=2)
    >>> model = EncoderDecoder(Transformer(enc), Transformer(dec))
    >>> model(torch.randint(0, 12, (2, 10)), torch.randint(0, 12, (2, 12))).shape
    torch.Size([2, 12, 12])
    """

    def __init__(self, encoder: Transformer, decoder: Transformer) -> None:
        super().__init__()
        if not (isinstance(encoder, Transformer) and isinstance(decoder, Transformer)):
            raise ValueError(f"EncoderDecoder takes two Transformers, got "
                             f"{type(encoder).__name__} and {type(decoder).__name__}; build them "
                             "with EncoderDecoder.from_configs(encoder_cfg, decoder_cfg)")
        check_pair(encoder.cfg, decoder.cfg)
        self.encoder = encoder
        self.decoder = decoder
        # One record of where the forward pass is, shared by every hook point below (the
        # outer setup_hooks renames them "encoder..." / "decoder..." and points them here).
        self._where = ForwardPositions()
        encoder._where = decoder._where = self._where
        self.setup_hooks()

    @classmethod
    def from_configs(cls, encoder_cfg: ModelConfig, decoder_cfg: ModelConfig, device=None,
                     dtype=None) -> EncoderDecoder:
        """A freshly initialised model from the two configs (see ``pair_configs``)."""
        check_pair(encoder_cfg, decoder_cfg)
        return cls(Transformer(encoder_cfg, device, dtype), Transformer(decoder_cfg, device, dtype))

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def encode(self, src: Any, src_mask: Tensor | None = None) -> Tensor:
        """The memory: src [batch, src_pos] -> [batch, src_pos, d_model], the encoder's last
        residual stream after its ln_final. src_mask [batch, src_pos]: 1 real, 0 padding."""
        x = self.encoder(src, attention_mask=src_mask, stop_at_layer=self.encoder.cfg.n_layers)
        return self.encoder.final_norm(x)

    def forward(self, src: Any, tgt: Any, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None, return_type: str | None = "logits") -> Any:
        """Teacher-forced decoding: src [batch, src_pos], tgt [batch, tgt_pos] (starting with
        BOS) -> logits [batch, tgt_pos, tgt_vocab] predicting tgt[:, 1:].

        return_type "loss": the mean next-token cross-entropy over target positions whose
        next token is real (tgt_mask[:, 1:] == 1; tgt_mask None counts every one); "both"
        gives (logits, loss). src_mask / tgt_mask: [batch, pos], 1 real, 0 padding.
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
        memory = self.encode(src, src_mask)
        return self.decoder(tgt, return_type=return_type, attention_mask=tgt_mask,
                            context=memory, context_mask=src_mask)

    @torch.no_grad()
    def generate(self, src: Any, max_new_tokens: int, bos: int, eos: int | None = None,
                 src_mask: Tensor | None = None, temperature: float = 0.0,
                 **sampling: Any) -> Tensor:
        """Decode from BOS: src [batch, src_pos] -> [batch, 1 + new] (BOS first).

        temperature 0 (the default) is greedy; otherwise the decoder's sampler draws
        (``top_k``, ``top_p``, ``seed`` pass through). Rows that produced ``eos`` keep
        repeating it; decoding stops once every row has. The memory is computed once; the
        decoder's own keys and values are cached step to step.
        """
        memory = self.encode(src, src_mask)
        n = memory.shape[0]
        if isinstance(bos, bool) or not isinstance(bos, int) or \
                not 0 <= bos < self.decoder.cfg.d_vocab:
            raise ValueError(f"bos must be a token id in [0, {self.decoder.cfg.d_vocab}), got "
                             f"{bos!r}")
        start = torch.full((n, 1), bos, dtype=torch.long, device=memory.device)
        return self.decoder.generate(start, max_new_tokens, temperature=temperature,
                                     stop_tokens=eos, context=memory, context_mask=src_mask,
                                     **sampling)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"EncoderDecoder(encoder={self.encoder!r}, decoder={self.decoder!r}, params={n:,})"
