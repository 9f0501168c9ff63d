"""Peak memory of loading a Hugging Face GPT-2 folder: gptscope vs transformers vs
TransformerLens, each measured in its own fresh subprocess.

    python benchmarks/bench_load.py            # GPT-2-medium shape (~1.4 GB of fp32 weights)
    python benchmarks/bench_load.py --small    # a quick 4-layer run

The folder is random weights in GPT-2-medium's shape (24 layers, d_model 1024, 16 heads,
vocab 50257), written once to a temporary directory; nothing downloads. Each loader runs
in a new Python process: after its imports, the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``), so "peak" is the most memory the load itself added on top of
the imported libraries. Where the reset is unavailable, ``ru_maxrss`` minus the RSS after
imports is used instead (which can only over-count). "kept" is the RSS the loaded model
holds; "after fwd" the RSS after one 16-token forward pass, which counts weights a loader
left memory-mapped and unread (transformers does: its load is lazy).

TransformerLens's ``HookedTransformer.from_pretrained("gpt2-medium", hf_model=...)`` asks the
hub for the model's config, which cannot work offline; the benchmark therefore runs what it
does internally: ``GPT2LMHeadModel.from_pretrained`` + ``convert_gpt2_weights`` +
``HookedTransformer(cfg).load_and_process_state_dict`` with its default processing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEDIUM = dict(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257, n_positions=1024)
SMALL = dict(n_layer=4, n_embd=512, n_head=8, vocab_size=50257, n_positions=1024)
LOADERS = ("gptscope", "gptscope+processing", "transformers", "transformer_lens")


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_folder(folder: Path, shape: dict) -> None:
    """A random GPT2LMHeadModel of ``shape`` saved with safetensors (built in fp32)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**shape)).save_pretrained(folder)


def measure(loader: str, folder: Path) -> dict:
    """Load ``folder`` with ``loader`` in this (fresh) process; return memory figures."""
    import gc

    import torch  # imported before the baseline, like every loader's dependencies

    if loader.startswith("gptscope"):
        import gptscope as gs
    else:
        import transformers
        if loader == "transformer_lens":
            import transformer_lens
            from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    gc.collect()
    base_kb = _status_kb("VmRSS") or 0
    reset = _reset_peak()
    start = time.perf_counter()
    if loader == "gptscope":
        model = gs.load_pretrained(folder)
    elif loader == "gptscope+processing":
        model = gs.load_pretrained(folder, fold_ln=True, center_writing_weights=True,
                                   center_unembed=True)
    elif loader == "transformers":
        model = transformers.GPT2LMHeadModel.from_pretrained(folder)
    else:
        hf = transformers.GPT2LMHeadModel.from_pretrained(folder)
        c = hf.config
        cfg = transformer_lens.HookedTransformerConfig(
            n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
            d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn="gelu_new",
            normalization_type="LN", eps=c.layer_norm_epsilon, default_prepend_bos=True,
        )
        model = transformer_lens.HookedTransformer(cfg, move_to_device=False)
        model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg))
        del hf
    seconds = time.perf_counter() - start
    gc.collect()
    peak_kb = _peak_kb(reset)
    after_kb = _status_kb("VmRSS") or 0
    # One short forward pass: weights that are still lazily memory-mapped get read now.
    with torch.no_grad():
        model(torch.zeros(1, 16, dtype=torch.long))
    gc.collect()
    run_kb = _status_kb("VmRSS") or 0
    n_params = sum(p.numel() for p in model.parameters())
    return {"loader": loader, "peak_bytes": (peak_kb - base_kb) * 1024,
            "kept_bytes": (after_kb - base_kb) * 1024, "run_bytes": (run_kb - base_kb) * 1024,
            "seconds": seconds, "params": n_params, "exact_reset": reset}


def _peak_kb(reset: bool) -> int:
    if reset and _status_kb("VmHWM") is not None:
        return _status_kb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def weight_bytes(folder: Path) -> int:
    """Bytes of the tensors in model.safetensors (its size less the JSON header)."""
    file = folder / "model.safetensors"
    with open(file, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    return file.stat().st_size - 8 - header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 4-layer model, for a quick run")
    parser.add_argument("--folder", type=Path, help="reuse an existing GPT-2 folder")
    parser.add_argument("--measure", choices=LOADERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        folder = args.folder
        if folder is None:
            folder = Path(tmp) / "gpt2"
            shape = SMALL if args.small else MEDIUM
            print(f"writing a random GPT-2 {shape} to {folder} ...", flush=True)
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    f"from bench_load import make_folder; from pathlib import Path; "
                    f"make_folder(Path({str(folder)!r}), {shape!r})")
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
        size = weight_bytes(folder)
        print(f"weights: {size / 2**30:.2f} GiB\n")
        print(f"{'loader':<22}{'peak (GiB)':>12}{'peak/weights':>14}{'kept/weights':>14}"
              f"{'after fwd/weights':>19}{'seconds':>10}")
        for loader in LOADERS:
            out = subprocess.run([sys.executable, __file__, "--measure", loader, "--folder",
                                  str(folder)], capture_output=True, text=True, env=env)
            if out.returncode:
                print(f"{loader:<22} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{loader:<22}{r['peak_bytes'] / 2**30:>12.2f}{r['peak_bytes'] / size:>14.2f}"
                  f"{r['kept_bytes'] / size:>14.2f}{r['run_bytes'] / size:>19.2f}"
                  f"{r['seconds']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
