"""Reading the study's run directories into records: one per (task, method[, recipe]) and seed.

Headline numbers are the final evaluation of each run's last checkpoint (study.evaluate,
final_eval.json) when it exists, else the run's last in-training evaluation (marked ‡ in the
report). Never the best checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from configs import results as budgets
from study.plan import Run, final_eval, final_result, load_config_file


def dataset_info(datasets: list[str], root: Path) -> dict:
    """Behaviour data return and score per dataset (cached in <root>/datasets.json)."""
    cache = root / "datasets.json"
    info = json.loads(cache.read_text()) if cache.exists() else {}
    missing = [d for d in datasets if d not in info]
    if missing:
        from data import ensure_default_dataset, load_dataset
        for d in missing:
            ensure_default_dataset(d)      # builds a registered local dataset once, before any run starts
            ds = load_dataset(d, check_env=False)
            r = np.asarray(ds.episode_returns, dtype=np.float64)
            score = None
            if ds.ref_min_score is not None and ds.ref_max_score is not None:
                score = 100.0 * (r - ds.ref_min_score) / (ds.ref_max_score - ds.ref_min_score)
            info[d] = {"transitions": int(ds.size), "episodes": int(len(r)), "env_id": ds.env_id,
                       "return_mean": float(r.mean()) if len(r) else None,
                       "return_std": float(r.std()) if len(r) else None,
                       "score_mean": float(score.mean()) if score is not None and len(r) else None,
                       "score_std": float(score.std()) if score is not None and len(r) else None,
                       "ref_min": ds.ref_min_score, "ref_max": ds.ref_max_score}
        root.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(info, indent=2))
    return info


def mode_tags(history_row: dict, mode: str) -> list[str]:
    """The row's evaluation prefixes of extraction `mode`, in the key layout of the run's time:
    `eval/<mode>_N<n>` before keys named the weighting, `eval/<weighting>/<mode>_N<n>` since."""
    from launch.run_names import eval_tags, parse_eval_tag

    return [t for t in eval_tags({k: v for k, v in history_row.items() if k.endswith("/return_mean")})
            if parse_eval_tag(t).mode == mode]


def primary_tag(history_row: dict) -> str | None:
    """The evaluation the tables report: the argmax extraction (or IQL's Gaussian mean)."""
    for mode in ("gaussian", "argmax", "implicit"):
        tags = mode_tags(history_row, mode)
        if tags:
            return tags[0]
    return None


def offline_records(runs: list[Run], episodes: int, num_candidates: int) -> dict:
    """(dataset, method) -> one record per seed: curves of the in-training evaluations, the last of them
    (t_*), and the headline numbers (score, return, gap, *_implicit): the final evaluation of the last
    checkpoint on `episodes` episodes at N = `num_candidates` when it exists, else the last in-training
    evaluation."""
    out: dict = {}
    for run in runs:
        s = run.summary()
        if not s or not s.get("history"):
            continue
        tag = primary_tag(s["history"][-1])
        if tag is None:
            continue
        curve = [(h["step"], h.get(f"{tag}/score_mean"), h[f"{tag}/return_mean"], h[f"{tag}/alignment_gap"])
                 for h in s["history"] if f"{tag}/return_mean" in h]
        last = s["history"][-1]
        imp = next(iter(mode_tags(last, "implicit")), None)
        curve_imp = [(h["step"], h.get(f"{imp}/score_mean"), h[f"{imp}/return_mean"], h[f"{imp}/alignment_gap"])
                     for h in s["history"] if imp and f"{imp}/return_mean" in h]
        rec = {"seed": run.seed, "curve": curve, "curve_implicit": curve_imp, "tag": tag.removeprefix("eval/"),
               "step": last["step"],
               "t_score": last.get(f"{tag}/score_mean"), "t_return": last[f"{tag}/return_mean"],
               "t_gap": last[f"{tag}/alignment_gap"],
               "t_score_implicit": last.get(f"{imp}/score_mean") if imp else None,
               "t_gap_implicit": last.get(f"{imp}/alignment_gap") if imp else None}
        fe = final_eval(run.run_dir, episodes)
        p = final_result(fe, "gaussian") or final_result(fe, "argmax", num_candidates)
        if p:
            i = final_result(fe, "implicit", num_candidates) or {}
            rec |= {"final": True, "score": p.get("score_mean"), "return": p.get("return_mean"),
                    "gap": p.get("alignment_gap"), "score_implicit": i.get("score_mean"),
                    "gap_implicit": i.get("alignment_gap")}
        else:
            rec |= {"final": False, "score": rec["t_score"], "return": rec["t_return"], "gap": rec["t_gap"],
                    "score_implicit": rec["t_score_implicit"], "gap_implicit": rec["t_gap_implicit"]}
        out.setdefault((run.dataset, run.method), []).append(rec)
    return out


def bc_records(runs: list[Run], episodes: int) -> dict:
    """(dataset, "bc") -> one record per seed: the BC baseline, i.e. the final evaluation at N = 1 of the
    pretraining checkpoints of configs/results.py `BC["from_method"]` (one sample from μ, no critic)."""
    out: dict = {}
    for run in runs:
        if run.method != budgets.BC["from_method"]:
            continue
        r = final_result(final_eval(run.run_dir, episodes), "argmax", budgets.BC["num_candidates"])
        if r:
            out.setdefault((run.dataset, "bc"), []).append(
                {"seed": run.seed, "final": True, "score": r.get("score_mean"), "return": r.get("return_mean"),
                 "gap": r.get("alignment_gap"), "score_implicit": None, "gap_implicit": None, "t_score": None})
    return out


def recipe_eval_mode(recipe: str) -> str:
    """The policy a finetuning recipe evaluates (its config file's online.eval_mode)."""
    if recipe not in budgets.RECIPES:
        return "argmax"
    return str(load_config_file(budgets.RECIPES[recipe][1]).online.eval_mode)


def online_records(runs: list[Run], pre_runs: list[Run], episodes: int, num_candidates: int) -> dict:
    """(dataset, method, recipe) -> one record per seed: the evaluator's rows ("evals", "first", "last") and
    the headline start / end: final evaluations (same seeds, the recipe's evaluation policy at N = `num_candidates`) of the pretrained
    and the finetuned checkpoint when both exist, else the evaluator's first and last rows."""
    pre_by = {(r.dataset, r.method, r.seed): r for r in pre_runs}
    out: dict = {}
    for run in runs:
        s = run.summary()
        if not s or not s.get("evaluations") or s.get("failure"):
            continue
        evals = sorted(s["evaluations"], key=lambda r: r["env_steps"])
        rec = {"seed": run.seed, "evals": evals, "first": evals[0], "last": evals[-1],
               "env_steps": s.get("env_steps"), "wall_s": s.get("wall_time_s"),
               "updates_per_env_step": s.get("updates_per_env_step_after_warmup"), "stopped": s.get("stopped")}
        # Each recipe is judged by the policy it explores and evaluates with (its config's online.eval_mode):
        # the implicit recipe's lift is that of the implicit policy, not of an argmax it never runs.
        mode = recipe_eval_mode(run.recipe)
        end = final_result(final_eval(run.run_dir, episodes), mode, num_candidates)
        pre = pre_by.get((run.dataset, run.method, run.seed))
        start = final_result(final_eval(pre.run_dir, episodes), mode, num_candidates) if pre else None
        if end and start:
            rec |= {"final": True, "start": start, "end": end}
        else:
            rec |= {"final": False, "start": evals[0], "end": evals[-1]}
        out.setdefault((run.dataset, run.method, run.recipe), []).append(rec)
    return out


def measured_rates(pre_runs: list[Run], ft_runs: list[Run], invocations: list[dict]) -> str:
    """Learner steps/s of the pretraining processes and env steps/s of the finetuning runs, as measured."""
    diff, iql = [], []
    for r in pre_runs:
        try:
            with open(r.run_dir / "metrics.jsonl") as f:
                rates = [json.loads(line)["train/steps_per_second"] for line in f if "train/steps_per_second" in line]
        except OSError:
            continue
        if rates:
            (iql if r.method == "iql" else diff).append(float(np.mean(rates)))
    env_rates = []
    for r in ft_runs:
        try:
            rows = [json.loads(line) for line in open(r.run_dir / "logs" / "learner.jsonl")]
        except OSError:
            continue
        # The online phase only: from the first to the last learner row (after warm-up).
        rows = [x for x in rows if "replay_inserts" in x and "time" in x]
        if len(rows) >= 2 and rows[-1]["time"] > rows[0]["time"]:
            env_rates.append((rows[-1]["replay_inserts"] - rows[0]["replay_inserts"]) / (rows[-1]["time"] - rows[0]["time"]))
    parts = []
    if diff:
        parts.append(f"pretraining {np.mean(diff):.0f} learner steps/s per diffusion-method process"
                     + (f", {np.mean(iql):.0f} for IQL" if iql else "") + " (planned: 70 on a quiet machine)")
    if env_rates:
        parts.append(f"finetuning {np.mean(env_rates):.0f} env steps/s after warm-up (planned: 50)")
    loads = [p["load_avg_mean"] for i in invocations for p in i.get("phases", []) if p.get("load_avg_mean")]
    if loads:
        parts.append(f"mean 1-min load average {np.mean(loads):.1f} on {os.cpu_count()} cores while runs were going")
    return "; ".join(parts) or "n/a"
