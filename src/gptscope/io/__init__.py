"""Reading and writing models: gptscope run folders (safetensors) and Hugging Face folders."""

from gptscope.io.checkpoint import load, save

__all__ = ["load", "save"]
