"""The comparison study: every method at the same budget, offline then online; writes a report.

    python -m study --budget=converged   # the headline study: docs/results.md from results/converged/
                                         # (~7 h on 2 CPU cores over several sittings; it resumes)
    python -m study --budget=converged --only_report   # rebuild docs/results.md and its PNGs
    python -m study                      # --budget=small: ~1.5 h; docs/small/results.md
    python -m study --budget=tiny --out_dir=/tmp/r --runs_dir=/tmp/r/runs   # smoke test

1. offline pretraining (launch.pretrain, one single-threaded process per run, at most
   `max_parallel_pretrain` at a time) of IQL + AWR, IDQL (argmax over Q), AlignIQL η=+1 and
   η=−1 and AlignIQL-hard, on each dataset and seed of the budget (configs/results.py);
2. online finetuning (launch.finetune, one run at a time: it starts 5 processes) from the
   pretraining checkpoints of `finetune.methods`, with both of IDQL's recipes
   (configs/finetune_argmax.py: μ frozen + argmax; configs/finetune_implicit.py: μ finetuned + implicit);
3. a final evaluation (python -m study.evaluate) of every run's last checkpoint on common seeds;
   AlignIQL η=−1's pretrained checkpoints also with N = 1, the behaviour-cloning baseline;
4. the report: <out_dir>/results.md with the tables (the LAST checkpoint, mean ± std over
   seeds, never the best), the IQM of each method over datasets × seeds with 95 % stratified-
   bootstrap intervals, learning curves under <out_dir>/figures/, the bandit figure
   (docs/bandit_figure.py) and the commands that reproduce the papers' tables on a GPU box.

Every run has its own directory under <runs_dir>/<budget>/{pretrain,finetune}/ and is done
when its summary.json (final evaluation: final_eval.json) is there: rerunning the command skips
finished runs and resumes interrupted ones (--resume), so a crash or Ctrl-C loses at most the
runs in flight since their last checkpoint. Each run's output goes to <runs_dir>/<budget>/logs/<run>.log.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from absl import flags

from configs import results as budgets
from launch import cli
from study.paths import repo_relative
from study.plan import final_eval_runs, plan
from study.records import dataset_info
from study.report import write_report
from study.runner import Runner, machine_info

_BUDGET = flags.DEFINE_enum("budget", "small", ["tiny", "small", "converged", "medium"], "Budget (configs/results.py).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where results.md and figures/ are written (default: the "
                               "budget's report_dir: docs/ for converged, docs/<budget>/ otherwise).")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Run directories go under <runs_dir>/<budget>/ (default: the "
                                "budget's runs_dir: results/ for converged, runs/results/ otherwise).")
_DATASETS = flags.DEFINE_list("datasets", None, "Dataset ids (default: the budget's).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (default: the budget's).")
_ONLY_REPORT = flags.DEFINE_bool("only_report", False, "Only regenerate results.md and the PNGs from existing runs.")
_WANDB = flags.DEFINE_string("wandb_mode", "disabled", "wandb mode of every run (metrics.jsonl is always written).")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 0, "Pretraining runs at a time (0: the budget's).")
_NOTE = flags.DEFINE_string("note", None, "A remark about this budget's runs (e.g. other load on the machine), kept in "
                            "<runs_dir>/<budget>/study.json and printed in results.md.")


def units(c) -> list[tuple[int, str]]:
    """(seed, dataset) in the order they run: seed-major, so that a stop leaves whole seeds."""
    return [(int(seed), dataset) for seed in c.seeds for dataset in c.datasets]


def main(argv):
    del argv
    import torch
    torch.set_num_threads(1)
    c = budgets.get_config(_BUDGET.value)
    if _DATASETS.value:
        c.datasets = list(_DATASETS.value)
    if _SEEDS.value:
        c.seeds = [int(s) for s in _SEEDS.value]
    if _MAX_PARALLEL.value:
        c.max_parallel_pretrain = _MAX_PARALLEL.value
    root = repo_relative(Path(_RUNS_DIR.value or c.runs_dir) / c.budget)   # records name runs from the repo root
    out_dir = Path(_OUT_DIR.value or c.report_dir)
    root.mkdir(parents=True, exist_ok=True)
    pre_runs, ft_runs = plan(c, root, _WANDB.value)
    if _NOTE.value:
        study_file = root / "study.json"
        st = json.loads(study_file.read_text()) if study_file.exists() else {"invocations": []}
        st.setdefault("notes", []).append(_NOTE.value)
        study_file.write_text(json.dumps(st, indent=2))

    if not _ONLY_REPORT.value:
        est = budgets.estimate_seconds(c)
        print(f"budget {c.budget}: {est['pretrain_runs']} pretraining runs + {est['finetune_runs']} finetuning "
              f"runs; planned wall time ~{est['total_s'] / 60:.0f} min (pretraining {est['pretrain_s'] / 60:.0f}, "
              f"finetuning {est['finetune_s'] / 60:.0f}) on a quiet 2-core machine", flush=True)
        dataset_info(c.datasets, root)            # build missing local datasets once, before the runs
        runner = Runner(root)
        old = {s: signal.signal(s, runner.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.time()
        invocation = {"start": t0, "budget": c.budget, "machine": machine_info(), "phases": []}
        try:
            # Unit by unit (a seed's dataset: its pretraining runs, their finetuning runs, the final
            # evaluations), so that a sitting that ends leaves whole units whose small result files
            # (summary.json, final_eval.json, logs) are all a later sitting needs: checkpoints are not kept.
            for seed, dataset in units(c):
                pre_u = [r for r in pre_runs if (r.seed, r.dataset) == (seed, dataset)]
                ft_u = [r for r in ft_runs if (r.seed, r.dataset) == (seed, dataset)]
                finals_u = final_eval_runs(c, pre_u, ft_u)
                if all(r.done() for r in (*pre_u, *ft_u, *finals_u)):
                    print(f"=== seed {seed}, {dataset}: {len(pre_u)} pretraining, {len(ft_u)} finetuning and "
                          f"{len(finals_u)} final evaluation runs already done, 0 to run ===", flush=True)
                    continue
                tag = f"seed {seed}, {dataset}"
                invocation["phases"].append(runner.run_all(pre_u, c.max_parallel_pretrain, f"pretraining ({tag})"))
                ready = [r for r in ft_u if r.needs is not None and (r.needs.parent / "summary.json").exists()]
                if len(ready) < len(ft_u):
                    print(f"  {len(ft_u) - len(ready)} finetuning runs wait for pretraining runs that did not finish",
                          flush=True)
                if not runner.stop:
                    invocation["phases"].append(runner.run_all(ready, 1, f"finetuning ({tag})"))
                if not runner.stop:
                    finals = [r for r in finals_u if r.needs.exists()]
                    invocation["phases"].append(runner.run_all(finals, c.max_parallel_pretrain,
                                                               f"final evaluation ({tag}, {c.pretrain.final_eval_episodes} "
                                                               f"episodes per checkpoint)"))
                if runner.stop:
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            invocation["end"] = time.time()
            invocation["wall_s"] = invocation["end"] - t0
            invocation["interrupted"] = runner.stop
            study_file = root / "study.json"
            st = json.loads(study_file.read_text()) if study_file.exists() else {"invocations": []}
            if any(p["ran"] for p in invocation["phases"]) or runner.stop:
                st["invocations"].append(invocation)
                study_file.write_text(json.dumps(st, indent=2))
        if runner.stop:
            sys.exit(130)

    path = write_report(c, root, out_dir, pre_runs, ft_runs)
    print(f"\nwrote {path} and {out_dir / 'figures'}/*.png", flush=True)
    text = path.read_text()
    start = text.find("## Offline pretraining")
    end = text.find("## Reading the numbers")
    print(text[start:end])


if __name__ == "__main__":
    cli.run(main)
