"""The model layer: functional blocks, hook points, layers, the Transformer, generation."""

from gptscope.model.cache import ActivationCache
from gptscope.model.encoder_decoder import EncoderDecoder
from gptscope.model.hooks import HookPoint, act_name
from gptscope.model.layers import KVCache
from gptscope.model.sampling import sample_next
from gptscope.model.transformer import GPT, Transformer

__all__ = ["ActivationCache", "EncoderDecoder", "GPT", "HookPoint", "KVCache", "Transformer",
           "act_name", "sample_next"]
