"""One benchmark at two commits, in one run, side by side: what a change cost or gained.

    python -m bench.before_after --before=3b82a6b^ --bench=bench.replay_throughput --repeats=2 -- --inserts=5000
    python -m bench.before_after --before=3b82a6b^ --bench=bench.learner_feed -- --seconds=3
    python -m bench.before_after --before=5c72361 --bench=bench.pretrain_processes --bench_from_here -- --only="two processes"

The `--before` commit is checked out in a temporary git worktree; the benchmark then runs
there and here alternately (before, after, before, after, ...), so that a change in the
machine's load during the run falls on both sides. Every output line of the form
`label: number ...`, and every row of the benches' shared table (`| bench | configuration |
measure | value | unit | note |`, bench/learner_throughput.py), is a figure; the table gives each figure's median over the repeats at
both commits and their ratio (after / before). Figures only one side prints are listed
with the other side empty.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"^\s*(?P<label>[^:|]{3,80}?):\s+(?P<value>-?[\d,]*\.?\d+)")


def figures(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) >= 5:
            try:
                out[" / ".join(cells[:3]) + f" ({cells[4]})"] = float(cells[3].replace(",", ""))
            except ValueError:
                pass                      # the header, its rule, or a row without a number
            continue
        m = FIGURE.match(line)
        if m:
            out[m.group("label").strip()] = float(m.group("value").replace(",", ""))
    return out


def run_bench(where: Path, module: str, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(where), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=where, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{module} failed in {where} (status {proc.returncode}):\n{proc.stderr[-2000:]}")
    return figures(proc.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare against (e.g. HEAD~3, a1b2c3d^)")
    ap.add_argument("--bench", required=True, help="benchmark module, e.g. bench.replay_throughput")
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, alternating")
    ap.add_argument("--bench_from_here", action="store_true",
                    help="run this checkout's benchmark file in both trees (a benchmark newer than --before; it "
                         "must then use only what both commits have, e.g. each commit's own default config)")
    ap.add_argument("rest", nargs="*", help="arguments for the benchmark (after --)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        before_dir = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_dir), args.before], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            if args.bench_from_here:     # the same measuring code on both sides; what it measures is each tree's
                bench_file = Path(*args.bench.split(".")).with_suffix(".py")
                (before_dir / bench_file).write_bytes((ROOT / bench_file).read_bytes())
            rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip()
            runs = {"before": [], "after": []}
            for i in range(args.repeats):
                for side, where in (("before", before_dir), ("after", ROOT)):
                    print(f"run {i + 1}/{args.repeats}: {side} ({rev if side == 'before' else 'working tree'})",
                          flush=True)
                    runs[side].append(run_bench(where, args.bench, args.rest))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_dir)], cwd=ROOT, capture_output=True)

    labels = list(dict.fromkeys([k for r in runs["after"] + runs["before"] for k in r]))
    print(f"\n{args.bench} {' '.join(args.rest)}: before = {rev}, after = working tree; median of "
          f"{args.repeats} alternating runs per side\n")
    print("| figure | before | after | after / before |\n|---|---:|---:|---:|")
    for label in labels:
        b = [r[label] for r in runs["before"] if label in r]
        a = [r[label] for r in runs["after"] if label in r]
        mb, ma = (statistics.median(b) if b else None), (statistics.median(a) if a else None)
        ratio = f"{ma / mb:.2f}" if mb and ma is not None else ""
        fmt = lambda v: "" if v is None else f"{v:,.1f}"   # noqa: E731
        print(f"| {label} | {fmt(mb)} | {fmt(ma)} | {ratio} |")


if __name__ == "__main__":
    main()
