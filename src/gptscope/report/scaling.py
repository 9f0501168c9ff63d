"""`gptscope scaling report SWEEP`: a sweep's fits as one offline HTML page.

Loss against compute with the frontier and its power law, the IsoFLOP curves and N_opt(C),
the Chinchilla fit beside the published ones, a second sweep (say, with dropout) on the
same axes, and the compute trend of notable systems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gptscope.scaling.analysis import Analysis, analyse
from gptscope.scaling.chinchilla import PUBLISHED
from gptscope.scaling.sources import Results, open_results
from gptscope.scaling.trends import era_systems, load_compute_trends
from gptscope.viz import Report, ScatterChart
from gptscope.viz._util import fmt
from gptscope.viz.scatter import power_law_line

# Kaplan et al. 2020's fits (their table 5 and section 6), for the table beside ours.
KAPLAN = {"alpha_C": 0.050, "a_opt": 0.73, "alpha_N": 0.076, "alpha_D": 0.095}


def _interval(values: dict[str, tuple[float, float]], key: str, sign: float = 1.0) -> str:
    if key not in values:
        return "n/a"
    low, high = sorted(sign * v for v in values[key])
    return f"{low:.3f} to {high:.3f}"


def fit_summary(a: Analysis) -> dict[str, Any]:
    """The fitted numbers (what the CLI prints and the README quotes)."""
    law = a.frontier_law
    out: dict[str, Any] = {
        "shapes": len(a.shapes.keys),
        "frontier": {"alpha_C": -law.exponent, "r2": law.r2, "points": int(a.frontier.size),
                     "interval": _interval(law.intervals, "exponent", -1.0)},
    }
    if a.n_opt_law is not None:
        out["n_opt"] = {"a": a.n_opt_law.exponent,
                        "interval": _interval(a.n_opt_law.intervals, "exponent"),
                        "budgets": sum(c.n_opt is not None for c in a.isoflops)}
    if a.chinchilla is not None:
        out["chinchilla"] = {k: v for k, v in a.chinchilla.as_dict().items()} | {
            f"{k}_interval": _interval(a.chinchilla.intervals, k)
            for k in ("alpha", "beta", "a_opt")}
    out["notes"] = a.notes
    return out


def _loss_vs_compute(a: Analysis, other: Analysis | None, other_name: str,
                     names: Results) -> ScatterChart:
    s = a.shapes
    points: dict[str, Any] = {}
    for width in sorted({k[0] for k in s.keys}):
        idx = [i for i, k in enumerate(s.keys) if k[0] == width]
        points[f"{names.width_name} {width}"] = (s.flops[idx], s.loss[idx],
                                                 [_label(s, i, names) for i in idx])
    front = a.frontier
    lines = {f"frontier fit: L = {a.frontier_law.scale:.3g} C^{a.frontier_law.exponent:.3f}":
             power_law_line(a.frontier_law.scale, a.frontier_law.exponent, s.flops[front])}
    if other is not None:
        o = other.shapes
        points[other_name] = (o.flops, o.loss, [_label(o, i, names)
                                                for i in range(len(o.keys))])
        lines[f"{other_name} frontier fit"] = power_law_line(
            other.frontier_law.scale, other.frontier_law.exponent, o.flops[other.frontier])
    return ScatterChart(points, lines, "training compute C (FLOPs)", "validation loss (nats)",
                        title="loss against compute (seeds averaged)", log_x=True, log_y=True)


def _label(s: Any, i: int, names: Results) -> str:
    width, depth, fraction = s.keys[i]
    return (f"{names.width_name} {width}, {depth} layers, data x{fraction:g}: N "
            f"{s.n_params[i]:.3g}, D {s.tokens[i]:.3g}, C {s.flops[i]:.3g}, loss "
            f"{s.loss[i]:.4f}")


def _isoflop_chart(a: Analysis) -> ScatterChart | None:
    if not a.isoflops:
        return None
    points, lines = {}, {}
    for curve in a.isoflops:
        name = f"C ~ {fmt(curve.compute, 2)}"
        points[name] = (curve.n, curve.loss, [f"N {n:.3g}: loss {v:.4f}"
                                              for n, v in zip(curve.n, curve.loss, strict=True)])
        grid = np.logspace(np.log10(curve.n.min()), np.log10(curve.n.max()), 40)
        c0, c1, c2 = curve.coefficients
        lines[f"{name} parabola"] = (grid, c0 + c1 * np.log(grid) + c2 * np.log(grid) ** 2)
    return ScatterChart(points, lines, "parameters N (non-embedding)", "validation loss",
                        title="IsoFLOP curves", log_x=True)


def _n_opt_chart(a: Analysis) -> ScatterChart | None:
    found = [c for c in a.isoflops if c.n_opt is not None]
    if a.n_opt_law is None or len(found) < 2:
        return None
    c = np.array([x.compute for x in found])
    n = np.array([x.n_opt for x in found])
    law = a.n_opt_law
    return ScatterChart({"IsoFLOP minima": (c, n, [f"C {x:.3g}: N_opt {y:.3g}"
                                                  for x, y in zip(c, n, strict=True)])},
                        {f"N_opt = {law.scale:.3g} C^{law.exponent:.3f}":
                         power_law_line(law.scale, law.exponent, c)},
                        "compute C (FLOPs)", "compute-optimal N", log_x=True, log_y=True,
                        title="compute-optimal model size")


def _trend_chart() -> ScatterChart:
    points, lines = {}, {}
    for era, group in era_systems(load_compute_trends()).items():
        years = np.array([s.year for s in group])
        flop = np.array([s.flop for s in group])
        points[era] = (years, flop, [f"{s.model} ({s.year:.1f}): {s.flop:.3g} FLOP"
                                     for s in group])
        slope, intercept = np.polyfit(years, np.log2(flop), 1)
        ends = np.array([years.min(), years.max()])
        lines[f"{era}: doubles in {12 / slope:.1f} months"] = (ends, 2 ** (slope * ends
                                                                           + intercept))
    return ScatterChart(points, lines, "publication year", "training compute (FLOP)",
                        title="training compute of notable systems", log_y=True)


def _fits_table(summary: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    f, rows = summary["frontier"], []
    rows.append(["alpha_C (L ~ C^-alpha_C, frontier)", f"{f['alpha_C']:.3f}", f["interval"],
                 f"{KAPLAN['alpha_C']}", "-"])
    if "n_opt" in summary:
        rows.append(["a (N_opt ~ C^a, IsoFLOP minima)", f"{summary['n_opt']['a']:.3f}",
                     summary["n_opt"]["interval"], f"{KAPLAN['a_opt']}", "0.49"])
    if "chinchilla" in summary:
        c = summary["chinchilla"]
        hoff = PUBLISHED["Hoffmann et al. 2022"]
        for k in ("alpha", "beta"):
            rows.append([f"{k} (L = E + A/N^alpha + B/D^beta)", f"{c[k]:.3f}",
                         c[f"{k}_interval"], "-", f"{hoff[k]}"])
        rows.append(["a = beta / (alpha + beta)", f"{c['a_opt']:.3f}", c["a_opt_interval"],
                     "-", f"{hoff['beta'] / (hoff['alpha'] + hoff['beta']):.2f}"])
        rows.append(["E (irreducible loss)", f"{c['E']:.3f}", "-", "-", f"{hoff['E']}"])
    return rows, ["quantity", "this sweep", "95% interval", "Kaplan et al. 2020",
                  "Hoffmann et al. 2022"]


def scaling_report(source: str | Path, out: str | Path, compare: str | Path | None = None,
                   n_boot: int = 200, show_progress: bool = True) -> dict[str, Any]:
    """Fit ``source`` (a sweep or digits folder, or a saved sweep: see `open_results`) and
    ``compare``, drawn beside it, and write the page to ``out``; returns the fitted numbers."""
    found = open_results(source)
    a = analyse(found.rows, n_boot=n_boot, show_progress=show_progress,
                data_key=found.data_key)
    summary = fit_summary(a)
    other, other_name = None, ""
    if compare is not None:
        theirs = open_results(compare)
        other = analyse(theirs.rows, n_boot=n_boot, show_progress=show_progress,
                        data_key=theirs.data_key)
        summary["compare"] = fit_summary(other) | {"dropout": theirs.dropout}
        other_name = f"dropout {theirs.dropout}" if theirs.dropout != found.dropout else \
            str(compare)
    report = Report("Scaling sweep", subtitle=f"{found.title}, dropout {found.dropout}")
    report.add_text("Each dot is one shape (width, depth, data fraction) with its seeds "
                    f"averaged; hover for N (parameters), D ({found.data_name}) and C "
                    f"(FLOPs: {found.flops_note}).")
    report.add(_loss_vs_compute(a, other, other_name, found),
               caption=f"frontier R^2 {a.frontier_law.r2:.3f} in log-log space")
    report.add_heading("Fits beside the published ones")
    rows, header = _fits_table(summary)
    report.add_table(rows, header)
    report.add_text("Tiny models on one corpus are not the models of those papers: the "
                    "exponents measure this sweep (its data, sizes and learning-rate rule), "
                    "not a law of nature. The intervals come from resampling the seeds of "
                    "every shape (and the shapes, for the parametric fit).")
    for chart in (_isoflop_chart(a), _n_opt_chart(a)):
        if chart is not None:
            report.add(chart)
    for note in a.notes:
        report.add_text(f"Note: {note}")
    report.add_heading("Compute trends")
    report.add(_trend_chart(), caption="Epoch AI's estimates for 443 notable systems; eras "
                                       "as in Sevilla et al. 2022 (gptscope scaling trends)")
    report.save(out)
    return summary
