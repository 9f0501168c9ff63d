"""Checkpoints: exact resume after SIGKILL, a corrupt newest checkpoint, a diverging loss."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, env, gptscope
from safetensors.torch import load_file

from gptscope import ModelConfig
from gptscope.train import DataSpec, TrainConfig, TrainingDiverged, list_checkpoints
from gptscope.train.trainer import Trainer

STEPS = 150
RUN = [*TINY, "--max-steps", str(STEPS), "--ckpt-every", "10", "--eval-every", "50",
       "--keep-last", "3", "--log-every", "5"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = gptscope("train", *RUN, "--out", str(straight))
    assert done.returncode == 0, done.stderr

    kill_after = random.Random().choice([20, 40, 60, 80])  # the checkpoint to wait for
    proc = subprocess.Popen([sys.executable, "-m", "gptscope", "train", *RUN, "--out",
                             str(killed)], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while not (killed / "checkpoints" / f"step_{kill_after:06d}").exists():
        assert proc.poll() is None, f"training ended before the kill: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = list_checkpoints(killed)[-1][0]
    assert stopped_at < STEPS, "the run finished before it was killed; nothing was tested"
    assert not (killed / "model.safetensors").exists()

    resumed = gptscope("train", "--out", str(killed), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {stopped_at}" in resumed.stderr
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # metrics.jsonl has each step once, as if never interrupted.
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").open()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS


def _cfg(**kw) -> TrainConfig:
    base = dict(data=DataSpec(task="reverse", task_kwargs={"n_items": 5}), batch_size=16,
                lr=3e-3, warmup_steps=5, max_steps=30, ckpt_every=10, eval_every=0,
                keep_last=3, device="cpu", progress=False)
    return TrainConfig(**{**base, **kw})


MODEL = ModelConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=16)


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path):
    Trainer(MODEL, _cfg(), tmp_path).fit()
    final = _weights(tmp_path)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20, 30]
    newest = tmp_path / "checkpoints" / "step_000030" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated

    with pytest.warns(UserWarning, match="step_000030"):
        trainer = Trainer(MODEL, _cfg(), tmp_path, resume=True)
    assert trainer.step == 20
    saved = _weights(tmp_path / "checkpoints" / "step_000020")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved[name])
    trainer.fit()  # redoing steps 21..30 gives the same weights as the first time
    for name, value in _weights(tmp_path).items():
        assert torch.equal(value, final[name])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    Trainer(MODEL, _cfg(max_steps=20), tmp_path).fit()
    before = _weights(tmp_path / "checkpoints" / "step_000020")
    trainer = Trainer(MODEL, _cfg(max_steps=40), tmp_path, resume=True)
    # Poison the forward pass from step 25 on, as a blown-up activation would.
    trainer.model.embed.register_forward_hook(
        lambda module, inputs, out: out * float("nan") if trainer.step >= 24 else out)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 25.*step_000020"):
        trainer.fit()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20]
    after = _weights(tmp_path / "checkpoints" / "step_000020")
    assert all(torch.equal(before[k], after[k]) for k in before)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 25, "event": "diverged"}
