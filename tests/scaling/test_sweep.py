"""Sweeps on a tiny grid: run folders, results, resume, processes, and refusals."""

import json
import math
import shutil
import sys

import pytest

from gptscope import ModelConfig
from gptscope.scaling import Sweep, SweepSpec, parse_grid, results, run_sweep
from gptscope.scaling.executors import run_elsewhere
from gptscope.scaling.grid import Point, get_sweep_preset, model_config, train_config
from gptscope.scaling.sweep import parse_duration
from gptscope.train import flops_per_token

GRID = "width=16,23 depth=1 data=0.01,0.02 seed=0"


def tiny() -> SweepSpec:
    return parse_grid(GRID, get_sweep_preset("tiny"))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "s"
    return folder, run_sweep(folder, tiny(), show_progress=False)


def unfinished_copy(swept, tmp_path, left):
    """A copy of the swept folder with the points of the rows ``left`` untrained again."""
    folder, _ = swept
    copy = tmp_path / "s"
    shutil.copytree(folder, copy)
    for row in left:
        (copy / "done" / f"{row['name']}.json").unlink()
        shutil.rmtree(copy / row["run"])
    return copy


def test_every_point_is_an_ordinary_run_folder_with_its_result(swept):
    folder, rows = swept
    assert [r["name"] for r in rows] == [p.name for p in tiny().points]
    sweep = Sweep.open(folder)
    for row in rows:
        run = folder / row["run"]
        cfg = ModelConfig.from_json(run / "config.json")
        assert (run / "model.safetensors").is_file()
        assert cfg.d_model == row["width"] and cfg.n_layers == row["depth"]
        assert cfg.n_params == row["n_params"]
        train = json.loads((run / "train_config.json").read_text())
        assert train["data"]["train_tokens"] == round(row["fraction"] * sweep.available)
        # one epoch: the tokens seen are the point's share of the training split
        assert row["tokens"] == pytest.approx(row["fraction"] * sweep.available,
                                              abs=tiny().batch_size * tiny().n_ctx)
        assert row["flops"] == flops_per_token(cfg, cfg.n_ctx) * row["tokens"]
        assert math.isfinite(row["val_loss"]) and 0 < row["mfu"] < 1


def test_twice_the_data_means_twice_the_steps_and_compute(swept):
    _, rows = swept
    by = {(r["width"], r["fraction"]): r for r in rows}
    for width in (16, 23):
        ratio = by[(width, 0.02)]["flops"] / by[(width, 0.01)]["flops"]
        assert ratio == pytest.approx(2.0, rel=0.05)


def test_width_sets_heads_init_and_learning_rate():
    spec = tiny()
    wide, narrow = Point(64, 2, 1.0, 0), Point(16, 2, 1.0, 0)
    cfg = model_config(spec, Point(45, 2, 1.0, 0), d_vocab=65)
    assert (cfg.n_heads, cfg.d_head, cfg.d_mlp) == (3, 16, 180)  # d_head need not divide
    ratio = model_config(spec, narrow, 65).init_range / model_config(spec, wide, 65).init_range
    assert ratio == pytest.approx(2.0)  # 1 / sqrt(fan_in)
    lr_ratio = train_config(spec, narrow, 10**5).lr / train_config(spec, wide, 10**5).lr
    assert lr_ratio == pytest.approx(2.0)


def test_a_killed_sweep_continues_without_rerunning_finished_points(swept, tmp_path):
    folder, rows = swept
    copy = tmp_path / "s"
    shutil.copytree(folder, copy)
    victim = rows[-1]
    (copy / "done" / f"{victim['name']}.json").unlink()  # killed before it recorded
    kept = {p.name: p.stat().st_mtime_ns for p in (copy / "done").iterdir()}
    again = run_sweep(copy, tiny(), show_progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (copy / "done").iterdir()
            if p.name in kept} == kept
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in rows]


def test_jobs_train_points_in_processes_with_the_same_results(swept, tmp_path):
    _, rows = swept
    # two points left to train, one `gptscope scaling point` each
    copy = unfinished_copy(swept, tmp_path, rows[:2])
    again = run_sweep(copy, tiny(), jobs=2, show_progress=False)
    assert (copy / rows[0]["run"] / "model.safetensors").is_file()
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in rows]


def test_learning_rate_search_keeps_the_best_factor(tmp_path):
    spec = SweepSpec.from_dict(parse_grid("width=16 depth=1 data=0.01,0.02 seed=0",
                                          get_sweep_preset("tiny")).to_dict()
                               | {"lr_rule": "search"})
    rows = run_sweep(tmp_path / "s", spec, show_progress=False)
    sweep = Sweep.open(tmp_path / "s")
    probe = sweep.search_points[0]
    losses = {f: sweep.result(probe, f)["val_loss"] for f in (0.5, 1.0, 2.0)}
    assert all(r["lr_factor"] == min(losses, key=losses.get) for r in rows)
    assert (tmp_path / "s" / "search" / f"{probe.name}-x2").is_dir()


def test_bad_sweeps_are_refused_with_the_fix(swept, tmp_path):
    folder, _ = swept
    with pytest.raises(ValueError, match="a sweep needs two or more"):
        run_sweep(tmp_path / "one", parse_grid("width=16 data=0.01", tiny()))
    with pytest.raises(ValueError, match="over the budget"):
        run_sweep(tmp_path / "slow", tiny(), budget_s=0.5)
    with pytest.raises(ValueError, match="another grid .*widths"):
        run_sweep(folder, parse_grid("width=16,32 depth=1 data=0.01,0.02", tiny()))
    other = tmp_path / "old"
    shutil.copytree(folder, other)
    data = json.loads((other / "sweep.json").read_text())
    (other / "sweep.json").write_text(json.dumps(data | {"version": 0}))
    with pytest.raises(ValueError, match="version 0 and this gptscope reads version 1"):
        Sweep.open(other)
    with pytest.raises(ValueError, match="not a sweep folder"):
        Sweep.open(tmp_path)
    with pytest.raises(ValueError, match="no point 'w99"):
        Sweep.open(folder).point("w99-l1-f1-s0")


def test_grid_and_budget_text_errors_name_the_fix():
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid("widths=1,2")
    with pytest.raises(ValueError, match="must be a int"):
        parse_grid("width=a,b")
    with pytest.raises(ValueError, match="data_fractions=.*must lie in"):
        parse_grid("data=0,1")
    with pytest.raises(ValueError, match="is empty"):
        SweepSpec(widths=[])
    with pytest.raises(ValueError, match="repeats a value"):
        SweepSpec(seeds=[0, 0])
    assert parse_duration("20m") == 1200 and parse_duration("1.5h") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_results_of_an_unfinished_sweep_are_the_finished_points(swept, tmp_path):
    folder, rows = swept
    copy = tmp_path / "s"
    shutil.copytree(folder, copy)
    (copy / "done" / f"{rows[0]['name']}.json").unlink()
    assert [r["name"] for r in results(Sweep.open(copy))] == [r["name"] for r in rows[1:]]


def test_submitit_runs_each_point_as_its_own_job(swept, tmp_path):
    # submitit is in the dev extra (optional for users)
    _, rows = swept
    copy = unfinished_copy(swept, tmp_path, rows[1:2])
    again = run_sweep(copy, tiny(), show_progress=False, executor="submitit-local")
    assert (copy / "submitit").is_dir()  # the engine's own job folder
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in rows]


def test_ray_runs_each_point_as_its_own_task(swept, tmp_path, monkeypatch):
    # ray is in the dev extra (optional for users); no RAY_ADDRESS: a ray started here
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _, rows = swept
    copy = unfinished_copy(swept, tmp_path, rows[1:2])
    again = run_sweep(copy, tiny(), show_progress=False, executor="ray")  # one CPU
    assert not ray.is_initialized()  # the ray it started is shut down
    assert (copy / rows[1]["run"] / "model.safetensors").is_file()
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in rows]


def test_a_failed_ray_task_names_its_point_and_leaves_the_users_ray(tmp_path):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        point = tiny().points[0]
        with pytest.raises(ValueError, match=f"point {point.name} failed under ray .*"
                                             "not a sweep folder"):
            run_elsewhere(tmp_path, [(point, None)], 1, "ray", lambda *_: None)
        assert ray.is_initialized()  # not this code's ray to shut down
    finally:
        ray.shutdown()


def test_unknown_executor_and_missing_ray_are_refused_with_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="executor 'dask' is not one of local, .*, ray"):
        run_sweep(tmp_path / "s", tiny(), executor="dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match="--executor ray needs ray: pip install ray"):
        run_elsewhere(tmp_path, [(tiny().points[0], None)], 1, "ray", lambda *_: None)


def test_budget_cuts_a_presets_grid_and_the_rerun_continues_it(tmp_path, capsys,
                                                               monkeypatch):
    from gptscope.cli import main
    from gptscope.scaling import sweep as sweep_module
    from gptscope.scaling.sweep import estimate_seconds, fit_to_budget

    # Timed steps of these tiny shapes are mostly overhead and vary from call to call more
    # than the widths differ, so the test fixes them: a step costs in proportion to width.
    monkeypatch.setattr(sweep_module, "seconds_per_step",
                        lambda cfg, batch_size: 1e-4 * cfg.d_model)
    spec = get_sweep_preset("tiny")  # 3 widths x 2 data fractions
    full = estimate_seconds(Sweep.plan(".", spec), spec.points)["total"]
    cut, dropped = fit_to_budget(spec, budget_s=full * 0.8)
    assert cut.widths == [16, 23] and dropped == ["width 32"]
    with pytest.raises(ValueError, match="even 4 points"):
        fit_to_budget(spec, budget_s=0.01)
    args = ["scaling", "sweep", "--preset", "tiny", "--out", str(tmp_path / "s"),
            "--budget", "1s"]
    assert main(args) == 2  # the tiny grid cannot shrink below two widths and two fractions
    assert "over the budget of 1 s" in capsys.readouterr().err
    args[-1] = f"{full * 0.8:.2f}s"
    assert main(args) == 0
    assert "dropped width 32" in capsys.readouterr().out
    assert Sweep.open(tmp_path / "s").spec.widths == [16, 23]
    assert main(args) == 0  # again: the same cut grid, all points done


def test_a_sweep_over_a_task_sees_fresh_examples(tmp_path):
    spec = SweepSpec.from_dict(tiny().to_dict() | {"task": "zipf_lookup",
                                                   "task_tokens": 200_000})
    rows = run_sweep(tmp_path / "s", spec, show_progress=False)
    assert spec.window == 24  # 8 facts of 3 tokens
    for row in rows:
        run = tmp_path / "s" / row["run"]
        cfg = ModelConfig.from_json(run / "config.json")
        train = json.loads((run / "train_config.json").read_text())
        assert train["data"]["task"] == "zipf_lookup" and cfg.n_ctx == 24
        assert row["tokens"] == train["max_steps"] * spec.batch_size * 24
        assert row["tokens"] == pytest.approx(row["fraction"] * 200_000, abs=16 * 24)
        assert math.isfinite(row["val_loss"])
    with pytest.raises(ValueError, match="is not a task"):
        SweepSpec(task="nope")
