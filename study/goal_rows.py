"""The report's goal-reaching rows: offline → after finetuning on local PointMaze, from `study.lift` records.

Why a separate source: the study's budget (methods × both recipes at locomotion's τ) does not fit
a maze task, whose settings differ (τ = 0.9, r − 1, a fixed-goal evaluation env; configs/pointmaze.py).
Its finetuning evidence is a `study.lift` run of its own job on several seeds (the pretrained and the
final checkpoint of each seed on the same seeded episodes); these rows put that evidence beside the
locomotion tables, with the command that made it, so the report holds every task the platform claims.
"""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from study.lift import paired_change, steps_to


def goal_rows_section(lift_files: list[str], out_dir: Path, threshold: float = 0.8) -> list[str]:
    """Markdown lines: one row per lift record (`lift_files`: its .json beside its .md, paths from the
    repository root); a missing record is named in its row, not skipped."""
    if not lift_files:
        return []
    L = ["## Goal-reaching: PointMaze, offline → after finetuning", "",
         "Each row is a `study.lift` run of a maze finetuning job (its own config, not the budget above): per "
         "seed, the pretrained and the last checkpoint evaluated on the same seeded episodes with the job's "
         "evaluation policy; lift and success change are means over seeds with 95 % bootstrap intervals; "
         f"\"steps to {100 * threshold:.0f} %\" is when the run's own evaluator first saw that success rate "
         "(median over the seeds that reached it). Score: D4RL maze2d's normalised return (time spent at the "
         "goal; random 0, the noise-free planner-controller 100).", "",
         "| dataset | job | seeds | episodes per checkpoint | score after pretraining → final | lift [95 % CI] | "
         f"success after pretraining → final | success change [95 % CI] | steps to {100 * threshold:.0f} % | report |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in lift_files:
        path = Path(name)
        if not path.exists():
            L.append(f"| – | `{name}` not found: run the command in its config's docstring | | | | | | | | |")
            continue
        record = json.loads(path.read_text())
        rows = record["rows"]
        before, after, (lift, lo, hi) = paired_change(rows, "score_mean")
        cells = [record.get("dataset", "?"), f"`{record['config']}` ({rows[0]['policy']})", str(len(rows)),
                 str(record.get("episodes", "?")),
                 f"{sum(before) / len(before):.1f} → {sum(after) / len(after):.1f}", f"{lift:+.1f} [{lo:+.1f}, {hi:+.1f}]"]
        if all("success_rate" in r["pretrained"] and "success_rate" in r["final"] for r in rows):
            sb, sa, (ds, dlo, dhi) = paired_change(rows, "success_rate", 100.0)
            reached = sorted(s for s in (steps_to(r.get("success_curve") or [], threshold) for r in rows) if s is not None)
            median = statistics.median(reached) if reached else None
            cells += [f"{sum(sb) / len(sb):.0f} % → {sum(sa) / len(sa):.0f} %", f"{ds:+.1f} [{dlo:+.1f}, {dhi:+.1f}]",
                      (f"{median:,.0f} ({len(reached)} of {len(rows)} seeds)" if reached else
                       f"not reached (0 of {len(rows)})")]
        else:
            cells += ["–", "–", "–"]
        cells.append(f"[{path.with_suffix('.md').name}]({os.path.relpath(path.with_suffix('.md'), out_dir)})")
        L.append("| " + " | ".join(cells) + " |")
    return L + [""]
