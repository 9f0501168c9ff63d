"""A run folder has one writer; a fresh run never writes over something; a resume is the
same run or is refused; every command says which weights it read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_MODEL, env, tiny_config, weights
from safetensors.torch import load_file

from gptscope.io.run_lock import LOCK_NAME, RunFolderBusy, WriterLock
from gptscope.train import list_checkpoints
from gptscope.train.trainer import Trainer

RUN = [*TINY, "--ckpt-every", "10", "--eval-every", "10", "--keep-last", "3",
       "--log-every", "10"]


def _metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the timing fields, which differ between any two runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "mfu")}
            for line in (run / "metrics.jsonl").open()]


def _same_files(a: Path, b: Path) -> None:
    """Every safetensors file of checkpoint ``a`` equals ``b``'s, tensor for tensor."""
    names = sorted(p.name for p in a.glob("*.safetensors"))
    assert names == sorted(p.name for p in b.glob("*.safetensors"))
    for name in names:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys(), name
        for key in x:
            assert torch.equal(x[key], y[key]), f"{name}:{key}"


# -- one writer ----------------------------------------------------------------------------

def test_two_trainings_started_together_one_runs_and_nothing_is_mixed(tmp_path):
    shared = tmp_path / "shared"
    args = [*RUN, "--max-steps", "150", "--out", str(shared)]
    procs = [subprocess.Popen([sys.executable, "-m", "gptscope", "train", *args, "--seed",
                               str(seed)], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=300)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = 1 + [code for code, _ in results].index(0)
    loser_err = next(err for code, err in results if code == 2)
    assert "being written by pid" in loser_err or "already holds a training run" in loser_err
    assert "Traceback" not in loser_err
    # The winner's run is exactly a run of its seed alone: weights, every checkpoint file
    # (model, optimizer, RNG), the metrics.
    alone = tmp_path / "alone"
    solo = subprocess.run([sys.executable, "-m", "gptscope", "train", *RUN, "--max-steps",
                           "150", "--out", str(alone), "--seed", str(winner)], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert solo.returncode == 0, solo.stderr
    a, b = weights(shared), weights(alone)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [s for s, _ in list_checkpoints(shared)] == [s for s, _ in list_checkpoints(alone)]
    for (_, x), (_, y) in zip(list_checkpoints(shared), list_checkpoints(alone)):
        _same_files(x, y)
    assert _metrics(shared) == _metrics(alone)
    assert json.loads((shared / "train_config.json").read_text())["seed"] == winner


def test_a_held_folder_is_refused_naming_the_holder(tmp_path, cli):
    with WriterLock(tmp_path / "run", "test"):
        out = cli("train", *RUN, "--max-steps", "5", "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert f"pid {os.getpid()}" in out.stderr and "one writer" in out.stderr
    assert not (tmp_path / "run" / "config.json").exists()  # nothing was written


def test_a_second_trainer_in_one_process_waits_for_the_first_to_finish(tmp_path):
    first = Trainer(TINY_MODEL, tiny_config(max_steps=20), tmp_path)
    with pytest.raises(RunFolderBusy, match="being written by pid"):
        Trainer(TINY_MODEL, tiny_config(max_steps=20), tmp_path, resume=True)
    first.fit()  # releases the folder
    again = Trainer(TINY_MODEL, tiny_config(max_steps=30), tmp_path, resume=True)
    assert again.step == 20
    again.close()


def test_lock_is_released_when_the_writer_dies(tmp_path):
    code = ("import os, sys; from gptscope.io.run_lock import WriterLock; "
            f"WriterLock({str(tmp_path)!r}).acquire(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], env=env(), check=True, timeout=60)
    assert (tmp_path / LOCK_NAME).exists()
    with WriterLock(tmp_path):  # a dead holder's lock is gone with it
        pass


# -- a fresh run needs an empty folder -----------------------------------------------------

def test_finished_run_without_checkpoints_is_not_overwritten(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "10", "--out", str(run)).returncode == 0
    before = weights(run)
    shutil.rmtree(run / "checkpoints")
    out = cli("train", *RUN, "--max-steps", "10", "--seed", "5", "--out", str(run))
    assert out.returncode == 2 and "already holds a training run" in out.stderr
    assert "--resume" in out.stderr and "--overwrite" in out.stderr
    after = weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_course_project_folder_is_not_overwritten(tmp_path, cli):
    from gptscope.course.projects import new_project

    folder = new_project("proj", tmp_path)
    config = (folder / "config.json").read_text()
    out = cli("train", *RUN, "--max-steps", "5", "--out", str(folder))
    assert out.returncode == 2 and "not empty" in out.stderr and "run.py" in out.stderr
    assert (folder / "config.json").read_text() == config
    resumed = cli("train", *RUN, "--max-steps", "5", "--resume", "--out", str(folder))
    assert resumed.returncode == 2 and "not a gptscope training run" in resumed.stderr
    assert (folder / "config.json").read_text() == config
    # --overwrite writes the run there, replacing only what gptscope train writes.
    assert cli("train", *RUN, "--max-steps", "5", "--overwrite", "--out",
               str(folder)).returncode == 0
    assert (folder / "run.py").exists() and (folder / "README.md").exists()
    assert json.loads((folder / "config.json").read_text())["d_model"] == 32


def test_overwrite_replaces_a_run_with_a_fresh_one(tmp_path, cli):
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    assert cli("train", *RUN, "--max-steps", "30", "--seed", "3", "--out", str(run)).returncode == 0
    assert cli("train", *RUN, "--max-steps", "20", "--overwrite", "--out",
               str(run)).returncode == 0
    assert cli("train", *RUN, "--max-steps", "20", "--out", str(fresh)).returncode == 0
    assert [s for s, _ in list_checkpoints(run)] == [10, 20]  # step 30 of the old run is gone
    a, b = weights(run), weights(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
    assert steps == [10, 20]
    both = cli("train", *RUN, "--max-steps", "20", "--overwrite", "--resume", "--out", str(run))
    assert both.returncode == 2 and "not both" in both.stderr


def test_leftovers_of_killed_writers_are_removed_and_names_are_per_process(tmp_path,
                                                                            monkeypatch):
    Trainer(TINY_MODEL, tiny_config(max_steps=10), tmp_path).fit()
    stale_ckpt = tmp_path / "checkpoints" / ".tmp_step_000020.99999"
    stale_ckpt.mkdir()
    (stale_ckpt / "state.json").write_text("{}")
    stale_file = tmp_path / ".metrics.jsonl.abc123.tmp"
    stale_file.write_text("half")
    import gptscope.train.checkpoint as ckpt

    renamed: list[str] = []
    real_replace = ckpt.os.replace
    monkeypatch.setattr(ckpt.os, "replace",
                        lambda a, b: (renamed.append(Path(a).name), real_replace(a, b)))
    trainer = Trainer(TINY_MODEL, tiny_config(max_steps=20), tmp_path, resume=True)
    assert not stale_ckpt.exists() and not stale_file.exists()
    trainer.fit()
    # (os.replace is patched for every module: keep the checkpoint folders' renames)
    assert [n for n in renamed if n.startswith(".tmp_step")] == [f".tmp_step_000020.{os.getpid()}"]


# -- resume is strict ----------------------------------------------------------------------

def test_resume_refuses_a_different_task_and_keeps_the_configs(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "10", "--out", str(run)).returncode == 0
    saved = (run / "train_config.json").read_text()
    out = cli("train", "--resume", "--task", "copy", "--out", str(run))
    assert out.returncode == 2
    assert "train.data.task: 'reverse' -> 'copy'" in out.stderr
    assert (run / "train_config.json").read_text() == saved


def test_resume_with_another_width_is_a_config_error_not_corruption(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "30", "--out", str(run)).returncode == 0
    out = cli("train", "--resume", "--d-model", "64", "--max-steps", "40", "--out", str(run))
    assert out.returncode == 2
    assert "model.d_model: 32 -> 64" in out.stderr
    for word in ("unusable", "corrupt", "delete"):
        assert word not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 6


def test_checkpoint_of_another_model_is_refused_as_config_error(tmp_path, cli):
    """A hand-edited config.json that no longer matches the checkpoints: not 'corrupt',
    and the checkpoints are left alone."""
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "20", "--out", str(run)).returncode == 0
    cfg = json.loads((run / "config.json").read_text())
    cfg["d_model"], cfg["d_head"], cfg["d_mlp"] = 64, 32, 256
    (run / "config.json").write_text(json.dumps(cfg))
    out = cli("train", "--resume", "--max-steps", "30", "--out", str(run))
    assert out.returncode == 2
    assert "different settings" in out.stderr and "d_model: 32 -> 64" in out.stderr
    assert "checkpoint is fine" in out.stderr
    for word in ("unusable", "corrupt", "delete"):
        assert word not in out.stderr
    assert [s for s, _ in list_checkpoints(run)] == [10, 20]


def test_resume_may_extend_the_run_and_change_logging(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "20", "--out", str(run)).returncode == 0
    out = cli("train", "--resume", "--max-steps", "30", "--eval-every", "5", "--log-every",
              "5", "--keep-last", "2", "--out", str(run))
    assert out.returncode == 0, out.stderr
    saved = json.loads((run / "train_config.json").read_text())
    assert (saved["max_steps"], saved["eval_every"]) == (30, 5)
    assert [s for s, _ in list_checkpoints(run)] == [20, 30]


def test_a_corrupt_checkpoint_is_reported_once(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "30", "--out", str(run)).returncode == 0
    newest = run / "checkpoints" / "step_000030" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    out = cli("train", "--resume", "--max-steps", "40", "--out", str(run))
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "resumed from step 20" in out.stderr
    assert "step_000030 is unusable" in out.stderr


def test_all_checkpoints_unreadable_keeps_the_folder_and_says_what_to_do(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", *RUN, "--max-steps", "20", "--out", str(run)).returncode == 0
    for _, folder in list_checkpoints(run):
        (folder / "state.json").write_text("{")
    out = cli("train", "--resume", "--max-steps", "30", "--out", str(run))
    assert out.returncode == 2
    assert "none of the 2 checkpoints" in out.stderr and "Nothing was changed" in out.stderr
    assert "delete" not in out.stderr
    assert [s for s, _ in list_checkpoints(run)] == [10, 20]


def test_resume_at_another_thread_count_warns_that_it_is_not_bitwise(tmp_path):
    Trainer(TINY_MODEL, tiny_config(threads=1), tmp_path).fit()
    with pytest.warns(UserWarning, match="threads=2 where the run so far used 1.*bitwise"):
        Trainer(TINY_MODEL, tiny_config(threads=2, max_steps=30), tmp_path, resume=True).close()
    torch.set_num_threads(1)


# -- commands say which weights they read --------------------------------------------------

def _interrupted_run(run: Path) -> None:
    """Train 20 steps (final weights at step 20), then resume towards 50 and stop after
    step 40, as a kill would: model.safetensors is older than the newest checkpoint."""
    Trainer(TINY_MODEL, tiny_config(max_steps=20, eval_every=10), run).fit()
    trainer = Trainer(TINY_MODEL, tiny_config(max_steps=50, eval_every=10), run, resume=True)
    real_step = trainer.train_step

    def step_until_40():
        if trainer.step == 40:
            raise KeyboardInterrupt
        return real_step()

    trainer.train_step = step_until_40
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def test_eval_on_an_unfinished_run_scores_and_names_the_newest_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    _interrupted_run(run)
    out = cli("eval", str(run))
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores["step"] == 40 and scores["finished"] is False
    assert "step_000040" in scores["weights"] and "unfinished" in scores["weights"]
    assert "step 40 of 50" in out.stderr and "unfinished" in out.stderr
    logged = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").open())}
    assert abs(scores["val_loss"] - logged[40]["val_loss"]) < 1e-5  # those very weights


def test_sample_and_report_say_which_step_they_use(tmp_path, cli):
    run = tmp_path / "run"
    _interrupted_run(run)
    sample = cli("sample", str(run), "--prompt", "1 2 3", "--max-new-tokens", "3")
    assert sample.returncode == 0, sample.stderr
    assert "step_000040 (step 40 of 50; the run is unfinished" in sample.stderr
    report = cli("report", str(run))
    assert report.returncode == 0, report.stderr
    assert "step 40 of 50" in report.stderr
    assert "step 40 of 50" in (run / "report.html").read_text()
    Trainer(TINY_MODEL, tiny_config(max_steps=50, eval_every=10), run, resume=True).fit()
    done = cli("eval", str(run))
    assert json.loads(done.stdout)["step"] == 50 and "unfinished" not in done.stderr
    assert f"{run} (step 50 of 50)" in done.stderr


def test_a_run_without_weights_yet_is_refused_with_the_reason(tmp_path, cli):
    trainer = Trainer(TINY_MODEL, tiny_config(), tmp_path)  # configs written, no step taken
    trainer.close()
    out = cli("eval", str(tmp_path))
    assert out.returncode == 2 and "holds no weights yet" in out.stderr


def test_weights_carry_their_step(tmp_path):
    import gptscope as gs
    from gptscope.io.checkpoint import read_step

    model = gs.Transformer(TINY_MODEL)
    gs.save(model, tmp_path / "a", step=7)
    gs.save(model, tmp_path / "b")
    assert read_step(tmp_path / "a") == 7 and read_step(tmp_path / "b") is None
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        gs.save(model, tmp_path / "c", step=-1)
