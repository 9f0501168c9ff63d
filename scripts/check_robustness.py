"""Rerun the trained-behaviour tests over seeds, CPU capabilities and thread counts, and
print each learned quantity's spread against its bound.

    python scripts/check_robustness.py                    # 5 seeds x 3 capabilities x 1, 2 threads
    python scripts/check_robustness.py --seeds 0 1 -k steering --capabilities default
    python scripts/check_robustness.py --update-readme    # write the table into tests/README.md
    python scripts/check_robustness.py --annotate         # write each spread above its check

Every test marked ``learned`` states its bounds through ``tests/bounds.py:check``; with
GPTSCOPE_RECORD set, each check appends the measured value to a file instead of failing.
This script runs ``pytest -m learned`` once per combination (GPTSCOPE_TEST_SEED,
ATEN_CPU_CAPABILITY, GPTSCOPE_TEST_THREADS), as many at once as the cores allow, keeps the
raw records in ``--out`` (rerunning skips combinations already there), and prints, per
quantity: the bound, min / median / max, the worst case's margin to the bound, and OK or
FAIL. A capability the CPU lacks is skipped (torch would silently fall back). Exit code 1
when any quantity fails its bound or any learned test fails outright.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bounds import OPS  # noqa: E402  (the operators the checks use)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "tests" / "README.md"
START, END = "<!-- robustness:start -->", "<!-- robustness:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--capabilities", nargs="+", default=["default", "avx2", "avx512"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="run combinations side by side while their threads fit these cores")
    p.add_argument("-k", default=None, help="pytest -k expression (a subset of the tests)")
    p.add_argument("--tests", nargs="*", default=["tests"], help="test paths (tests)")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "robustness.jsonl",
                   help="raw records; combinations already in it are not rerun")
    p.add_argument("--fresh", action="store_true", help="ignore the records in --out")
    p.add_argument("--update-readme", action="store_true",
                   help="write the table between the robustness markers of tests/README.md")
    p.add_argument("--annotate", action="store_true",
                   help="write each quantity's measured range in a comment above its check")
    return p.parse_args(argv)


def capability_of(requested: str) -> str:
    """The capability torch actually uses when asked for ``requested`` on this CPU."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY=requested)
    out = subprocess.run([sys.executable, "-c", "import torch; "
                          "print(torch.backends.cpu.get_cpu_capability())"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().lower()


def _env(combo: dict, record: Path) -> dict[str, str]:
    threads = str(combo["threads"])
    return dict(os.environ, GPTSCOPE_TEST_SEED=str(combo["seed"]),
                ATEN_CPU_CAPABILITY=combo["capability"], GPTSCOPE_TEST_THREADS=threads,
                OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                GPTSCOPE_RECORD=str(record), PYTHONPATH=str(ROOT / "src"))


def start(combo: dict, args: argparse.Namespace, workdir: Path) -> tuple:
    record = workdir / f"s{combo['seed']}-{combo['capability']}-t{combo['threads']}.jsonl"
    record.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "learned", "-q", "-rf", "-p",
           "no:cacheprovider", *args.tests]
    if args.k:
        cmd += ["-k", args.k]
    log = open(record.with_suffix(".log"), "w")  # closed when the run is collected
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(combo, record), stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, log, record, time.time()


def collect(combo: dict, proc, log, record: Path, began: float) -> list[dict]:
    """The run's records, plus one for each test that failed outright (an assert that is
    not a bound, or an error)."""
    log.close()
    text = Path(log.name).read_text(errors="replace")
    rows = [json.loads(line) for line in record.read_text().splitlines()] \
        if record.exists() else []
    failed = [line.split()[1] for line in text.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not failed):
        failed.append(f"pytest exit {proc.returncode}: {text.strip().splitlines()[-1:]}")
    rows += [{"quantity": "(test failed)", "test": name, "ok": False, "value": None}
             for name in failed]
    seconds = time.time() - began
    for row in rows:
        row.update(combo, seconds=seconds)
    return rows


def latest(rows: list[dict]) -> list[dict]:
    """One record per (combination, test, quantity): the newest, so reruns replace."""
    kept: dict[tuple, dict] = {}
    for row in rows:
        kept[(*_key(row), row["test"], row["quantity"])] = row
    return list(kept.values())


def run_all(combos: list[dict], args: argparse.Namespace) -> list[dict]:
    """Run the combinations, as many at once as their threads fit in ``args.cores``."""
    rows: list[dict] = []
    pending, running = list(combos), []
    with tempfile.TemporaryDirectory() as tmp:
        while pending or running:
            busy = sum(c["threads"] for c, *_ in running)
            while pending and (not running or busy + pending[0]["threads"] <= args.cores):
                combo = pending.pop(0)
                running.append((combo, *start(combo, args, Path(tmp))))
                busy += combo["threads"]
                print(f"started {combo}", file=sys.stderr)
            time.sleep(1)
            for item in [r for r in running if r[1].poll() is not None]:
                running.remove(item)
                done = collect(*item)
                rows += done
                with open(args.out, "a", encoding="utf-8") as f:
                    f.writelines(json.dumps(r) + "\n" for r in done)
                bad = sum(not r["ok"] for r in done)
                print(f"done {item[0]} in {time.time() - item[4]:.0f}s: {len(done)} records, "
                      f"{bad} failing", file=sys.stderr)
    return rows


def _key(row: dict) -> tuple:
    return row["seed"], row["capability"], row["threads"]


def table(rows: list[dict]) -> tuple[str, bool]:
    """Markdown: one line per quantity; and whether every bound held."""
    by_quantity: dict[str, list[dict]] = defaultdict(list)
    failures = []
    for row in rows:
        if row["quantity"] == "(test failed)":
            failures.append(row)
        else:
            by_quantity[row["quantity"]].append(row)
    lines = ["| quantity | test | bound | runs | min | median | max | worst margin | |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    all_ok = not failures
    for name in sorted(by_quantity):
        group = by_quantity[name]
        values = [r["value"] for r in group]
        # Judged against the newest record's bound: a bound moved after a sweep applies to
        # the values measured before it too.
        op, bound = group[-1]["op"], group[-1]["bound"]
        worst = min(values) if op.startswith(">") else max(values)
        margin = worst - bound if op.startswith(">") else bound - worst
        ok = all(OPS[op](v, bound) for v in values)
        all_ok &= ok
        test = group[0]["test"].removeprefix("tests/").split("[")[0].replace(".py::", ": ")
        lines.append(f"| `{name}` | {test} | {op} {bound:g} | {len(values)} | {min(values):.4g} | "
                     f"{statistics.median(values):.4g} | {max(values):.4g} | {margin:+.3g} | "
                     f"{'OK' if ok else 'FAIL'} |")
    combos = sorted({_key(r) for r in rows})
    summary = (f"{len(combos)} runs: seeds {sorted({c[0] for c in combos})}, capabilities "
               f"{sorted({c[1] for c in combos})}, threads {sorted({c[2] for c in combos})}.")
    for row in failures:
        summary += f"\n\nFAILED outright: {row['test']} (seed {row['seed']}, " \
                   f"{row['capability']}, {row['threads']} threads)"
    return summary + "\n\n" + "\n".join(lines), all_ok


MEASURED = "# measured over "  # the annotation's prefix: rewritten, never duplicated
CHECK = re.compile(r'^(\s*).*\bcheck\(f?"([\w.{}+\-]+)"')
DEF = re.compile(r"^\s*def (test_\w+)\(")  # the enclosing test, not a nested helper


def spreads(rows: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """(test file, test function) -> quantity -> (min, max, runs)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["quantity"] != "(test failed)":
            path, _, function = row["test"].partition("::")
            values[(path, function.split("[")[0])][row["quantity"]].append(row["value"])
    return {key: {q: (min(v), max(v), len(v)) for q, v in by_q.items()}
            for key, by_q in values.items()}


def annotation(name: str, measured: dict[str, tuple[float, float, int]]) -> str | None:
    """The comment for a check named ``name`` (an f-string's fields match any word)."""
    pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", r"(\\w+)", re.escape(name)) + "$")
    found = sorted((m.groups(), measured[q]) for q in measured if (m := pattern.match(q)))
    if not found:
        return None
    runs = max(r for _, (_, _, r) in found)
    parts = [" ".join(g) + (" " if g else "") + f"{lo:.3g} to {hi:.3g}"
             for g, (lo, hi, _) in found]
    return f"{MEASURED}{runs} runs: {'; '.join(parts)}"


def annotate(rows: list[dict], root: Path = ROOT / "tests") -> list[Path]:
    """Write (or rewrite) the measured-range comment above every ``check("name", ...)``,
    from the records of the test function it sits in."""
    measured, changed = spreads(rows), []
    for path in sorted(root.rglob("test_*.py")):
        rel = f"tests/{path.relative_to(root).as_posix()}"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        out: list[str] = []
        function = ""
        for line in lines:
            if d := DEF.match(line):
                function = d.group(1)
            m = CHECK.match(line)
            note = annotation(m.group(2), measured.get((rel, function), {})) if m else None
            if note is not None:
                if out and out[-1].strip().startswith(MEASURED):
                    out.pop()
                out.append(f"{m.group(1)}{note}\n")
            out.append(line)
        if out != lines:
            path.write_text("".join(out), encoding="utf-8")
            changed.append(path)
    return changed


def update_readme(text: str) -> None:
    page = README.read_text(encoding="utf-8")
    if START not in page or END not in page:
        raise SystemExit(f"{README} has no {START} ... {END} section to fill")
    head, rest = page.split(START, 1)
    tail = rest.split(END, 1)[1]
    stamp = time.strftime("%Y-%m-%d")
    cpu = platform_line()
    README.write_text(f"{head}{START}\nMeasured {stamp} on {cpu}.\n\n{text}\n{END}{tail}",
                      encoding="utf-8")


def platform_line() -> str:
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        args.out.unlink(missing_ok=True)
    old = [json.loads(line) for line in args.out.read_text().splitlines()] \
        if args.out.exists() else []
    caps = []
    for cap in args.capabilities:
        actual = capability_of(cap)
        if actual != cap.lower():
            print(f"skipping {cap}: this CPU gives {actual}", file=sys.stderr)
        else:
            caps.append(cap)
    selection = " ".join(args.tests) + (f" -k {args.k}" if args.k else "")
    combos = [{"seed": s, "capability": c, "threads": t, "selection": selection}
              for t in args.threads for c in caps for s in args.seeds]
    done = {_key(r) for r in old if r.get("selection") == selection}
    todo = [c for c in combos if _key(c) not in done]
    wanted = {_key(c) for c in combos}
    rows = latest([r for r in old if _key(r) in wanted] + run_all(todo, args))
    if args.k:  # other tests' records of these combinations are not this selection's
        rows = [r for r in rows if r.get("selection") == selection]
    text, ok = table(rows)
    print(text)
    if args.update_readme:
        update_readme(text)
    if args.annotate:
        for path in annotate(rows):
            print(f"annotated {path.relative_to(ROOT)}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
