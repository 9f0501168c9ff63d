"""Saving and loading an EncoderDecoder: one folder holding two gptscope model folders.

``path/encoder/`` and ``path/decoder/`` are ordinary run-model folders (config.json +
model.safetensors, written atomically by ``gptscope.io.checkpoint.save``), so each half
also opens alone with ``gs.load``; ``path/encoder_decoder.json`` marks the pair.
"""

from __future__ import annotations

import json
from pathlib import Path

from gptscope.io.checkpoint import load, save
from gptscope.model.encoder_decoder import EncoderDecoder
from gptscope.utils.atomic import write_text
from gptscope.utils.files import read_json

MARKER = "encoder_decoder.json"
FORMAT = "gptscope-encoder-decoder"


def save_encoder_decoder(model: EncoderDecoder, path: str | Path) -> Path:
    """Write ``model`` to the folder ``path`` (encoder/, decoder/, encoder_decoder.json)."""
    if not isinstance(model, EncoderDecoder):
        raise ValueError(f"save_encoder_decoder takes an EncoderDecoder, got "
                         f"{type(model).__name__}; save a single Transformer with gs.save")
    path = Path(path)
    save(model.encoder, path / "encoder")
    save(model.decoder, path / "decoder")
    # Written last: a folder with the marker has both halves complete.
    write_text(path / MARKER, json.dumps({"format": FORMAT, "version": 1}) + "\n")
    return path


def load_encoder_decoder(path: str | Path, device: str = "cpu") -> EncoderDecoder:
    """Read a folder written by ``save_encoder_decoder`` (safetensors only, never pickles)."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        raise ValueError(f"{path} has no {MARKER}, so it is not a saved EncoderDecoder; pass "
                         "the folder save_encoder_decoder wrote")
    info = read_json(marker, "re-save the model with save_encoder_decoder")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{marker} does not describe a {FORMAT} folder (got {info!r:.80}); "
                         "re-save the model with save_encoder_decoder")
    model = EncoderDecoder(load(path / "encoder", device), load(path / "decoder", device))
    return model.eval()
