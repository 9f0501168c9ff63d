"""Checkpoints: exact resume after SIGKILL, a corrupt newest checkpoint, a diverging loss."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from bounds import check, seed
from conftest import TINY, TINY_MODEL, env, gptscope, tiny_config, weights

from gptscope.train import TrainingDiverged, list_checkpoints
from gptscope.train.trainer import Trainer

STEPS = 150
RUN = [*TINY, "--max-steps", str(STEPS), "--ckpt-every", "10", "--eval-every", "50",
       "--keep-last", "3", "--log-every", "5", "--seed", str(seed(1337))]


@pytest.mark.learned
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
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    diff = max((a[name] - b[name]).abs().max().item() for name in a)
    # measured over 30 runs: 0 to 0
    check("resume.after_sigkill_max_abs_diff", diff, "<=", 0.0)  # bitwise
    # metrics.jsonl has each step once, as if never interrupted.
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").open()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path):
    Trainer(TINY_MODEL, tiny_config(), tmp_path).fit()
    final = weights(tmp_path)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20, 30]
    newest = tmp_path / "checkpoints" / "step_000030" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated

    with pytest.warns(UserWarning, match="step_000030"):
        trainer = Trainer(TINY_MODEL, tiny_config(), tmp_path, resume=True)
    assert trainer.step == 20
    saved = weights(tmp_path / "checkpoints" / "step_000020")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved[name])
    trainer.fit()  # redoing steps 21..30 gives the same weights as the first time
    for name, value in weights(tmp_path).items():
        assert torch.equal(value, final[name])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    Trainer(TINY_MODEL, tiny_config(max_steps=20), tmp_path).fit()
    before = weights(tmp_path / "checkpoints" / "step_000020")
    trainer = Trainer(TINY_MODEL, tiny_config(max_steps=40), tmp_path, resume=True)
    # Poison the forward pass from step 25 on, as a blown-up activation would.
    trainer.model.embed.register_forward_hook(
        lambda module, inputs, out: out * float("nan") if trainer.step >= 24 else out)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 25.*step_000020"):
        trainer.fit()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20]
    after = weights(tmp_path / "checkpoints" / "step_000020")
    assert all(torch.equal(before[k], after[k]) for k in before)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 25, "event": "diverged"}
