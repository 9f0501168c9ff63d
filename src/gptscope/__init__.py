"""gptscope: build a GPT, train it, and look inside it, on a laptop, offline."""

from gptscope.config import ModelConfig
from gptscope.io.checkpoint import load, save
from gptscope.io.hf_import import load_pretrained
from gptscope.model import GPT, ActivationCache, EncoderDecoder, HookPoint, Transformer, act_name

__version__ = "0.1.0"

# Subpackages load on first use (gs.interp, gs.sae, ...) so `import gptscope` stays light.
_SUBPACKAGES = ("course", "data", "interp", "io", "model", "report", "sae", "seq2seq",
                "steering", "tokenizers", "train", "vision", "viz", "zoo")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"gptscope.{name}")
    raise AttributeError(f"module 'gptscope' has no attribute {name!r}")

__all__ = ["ActivationCache", "EncoderDecoder", "GPT", "HookPoint", "ModelConfig", "Transformer",
           "act_name", "load", "load_pretrained", "save", "__version__"]
