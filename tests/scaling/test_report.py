"""The scaling report and commands, on a tiny sweep (and a second one with dropout)."""

import json

import pytest

from gptscope.cli import main
from gptscope.report.scaling import scaling_report
from gptscope.viz import render_in_browser

GRID = "width=16,23,32 depth=1 data=0.01,0.02 seed=0,1"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    for name, extra in (("plain", []), ("dropout", ["--dropout", "0.2"])):
        assert main(["scaling", "sweep", "--preset", "tiny", "--grid", GRID, "--out",
                     str(root / name), "--jobs", "1", *extra]) == 0
    return root


def test_report_fits_the_sweep_and_renders_offline(sweeps, chromium, tmp_path):
    out = tmp_path / "report.html"
    summary = scaling_report(sweeps / "plain", out, compare=sweeps / "dropout", n_boot=20,
                             show_progress=False)
    assert summary["shapes"] == 6 and summary["compare"]["dropout"] == 0.2
    front = summary["frontier"]
    assert front["points"] >= 2 and 0 <= front["r2"] <= 1
    low, high = (float(v) for v in front["interval"].split(" to "))
    assert low <= front["alpha_C"] <= high
    assert "chinchilla" in summary  # 6 shapes: enough for the parametric fit
    html = out.read_text()
    for text in ("loss against compute", "Kaplan et al. 2020", "Hoffmann et al. 2022",
                 "training compute of notable systems", "dropout 0.2", "frontier fit"):
        assert text in html
    assert "http" not in html.split("<body", 1)[1].split("Epoch")[0].replace(
        "http://www.w3.org/2000/svg", "")  # no remote assets before the credits
    result = render_in_browser(out)
    assert result.errors == [] and result.rendered >= 2  # compute and trend charts


def test_report_and_trends_commands(sweeps, capsys):
    assert main(["scaling", "report", str(sweeps / "plain"), "--n-boot", "10"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed.split("\nwrote ")[0])["shapes"] == 6
    assert (sweeps / "plain" / "report.html").is_file()
    assert main(["scaling", "trends", "--n-boot", "100"]) == 0
    assert "deep-learning: doubles every" in capsys.readouterr().out


def test_a_one_shape_sweep_cannot_be_fitted(sweeps, tmp_path, capsys):
    from gptscope.scaling import Sweep, results
    from gptscope.scaling.analysis import analyse

    rows = [r for r in results(Sweep.open(sweeps / "plain")) if r["width"] == 16
            and r["fraction"] == 0.01]
    with pytest.raises(ValueError, match="1 finished shape"):
        analyse(rows)
    assert main(["scaling", "sweep", "--preset", "tiny", "--grid", "width=16 data=0.01",
                 "--out", str(tmp_path / "x")]) == 2
    assert "a sweep needs two or more" in capsys.readouterr().err


def test_nan_losses_are_left_out_by_name(sweeps):
    from gptscope.scaling import Sweep, results
    from gptscope.scaling.analysis import analyse

    rows = results(Sweep.open(sweeps / "plain"))
    rows[0] = rows[0] | {"val_loss": float("nan")}
    with pytest.warns(UserWarning, match=f"diverged run.*{rows[0]['name']}"):
        analysis = analyse(rows, n_boot=0)
    assert len(analysis.shapes.keys) == 6  # its other seed still stands for the shape


def test_report_draws_a_shipped_sweep_and_a_digits_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["scaling", "report", "cpu-20m", "--n-boot", "10"]) == 0
    page = (tmp_path / "cpu-20m-report.html").read_text()
    assert "cpu-20m (shipped)" in page and "zipf_lookup" in page and "d_model 16" in page
    assert '"points": 14' in capsys.readouterr().out  # the frontier of the 24 shapes
    digits = tmp_path / "digits"
    assert main(["scaling", "digits", "--out", str(digits), "--widths", "3", "6",
                 "--fractions", "0.25", "0.5", "--seeds", "0", "--epochs", "1",
                 "--n-boot", "10"]) == 0
    assert main(["scaling", "report", str(digits), "--n-boot", "10"]) == 0
    page = (digits / "report.html").read_text()
    assert "channels 6" in page and "images seen" in page and "d_model" not in page
    with pytest.raises(ValueError, match="is not a sweep"):
        scaling_report(tmp_path / "nowhere", tmp_path / "x.html")
