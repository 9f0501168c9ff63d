"""The train / sample / eval commands end to end (in-process: a fresh interpreter costs
seconds of torch import per call)."""

from __future__ import annotations

import json

import pytest
from bounds import THREADS, check, seed

import gptscope as gs


@pytest.mark.learned
def test_train_sample_eval_on_a_text_file(tmp_path, cli):
    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat. " * 200)
    run = tmp_path / "run"
    out = cli("train", "--data", str(text), "--out", str(run), "--n-layers", "1",
                   "--d-model", "32", "--n-heads", "2", "--n-ctx", "32", "--batch-size", "8",
                   "--max-steps", "60", "--eval-every", "30", "--eval-steps", "2",
                   "--warmup-steps", "5", "--lr", "1e-2", "--device", "cpu",
                   "--threads", str(THREADS), "--seed", str(seed(1337)), "--no-progress")
    assert out.returncode == 0, out.stderr
    for name in ("config.json", "train_config.json", "model.safetensors", "tokenizer.json",
                 "metrics.jsonl"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    last = records[-1]
    assert last["step"] == 60
    for key in ("loss", "val_loss", "lr", "tokens_per_s", "mfu"):
        assert key in last
    # measured over 30 runs: 0.19 to 0.318
    check("cli.text_val_loss", last["val_loss"], "<", 2.0)  # chance is ln(11 chars) = 2.4

    model = gs.load(run)
    assert model.tokenizer is not None and model.cfg.d_vocab == model.tokenizer.vocab_size

    sample = cli("sample", str(run), "--prompt", "the c", "--max-new-tokens", "20",
                      "--seed", "0", "--temperature", "0")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("the c") and len(sample.stdout.rstrip("\n")) == 25

    ev = cli("eval", str(run))
    assert ev.returncode == 0, ev.stderr
    scores = json.loads(ev.stdout)
    assert scores["step"] == 60
    assert abs(scores["val_loss"] - last["val_loss"]) < 1e-4  # same examples as training


def test_sample_a_task_model_from_token_ids(tmp_path, tiny_args, cli):
    run = tmp_path / "rev"
    assert cli("train", *tiny_args, "--max-steps", "5", "--out", str(run)).returncode == 0
    out = cli("sample", str(run), "--prompt", "1 2 3 4 0 10", "--max-new-tokens", "5",
                   "--temperature", "0")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 11
    bad = cli("sample", str(run), "--prompt", "hello")
    assert bad.returncode == 2 and "token ids" in bad.stderr


def test_train_refuses_to_overwrite_a_run(tmp_path, tiny_args, cli):
    assert cli("train", *tiny_args, "--max-steps", "3", "--out", str(tmp_path)).returncode == 0
    again = cli("train", *tiny_args, "--max-steps", "3", "--out", str(tmp_path))
    assert again.returncode == 2 and "--resume" in again.stderr


def test_divergence_is_reported_without_traceback(tmp_path, tiny_args, cli):
    out = cli("train", *tiny_args, "--lr", "1e30", "--grad-clip", "0", "--warmup-steps",
                   "0", "--max-steps", "50", "--ckpt-every", "1", "--out", str(tmp_path))
    assert out.returncode == 2
    assert "training diverged" in out.stderr and "Traceback" not in out.stderr
