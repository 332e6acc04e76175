"""The comparison study: every method at the same budget, offline then online; writes docs/results.md.

    python -m launch.results                          # --budget=small: ~1 h on 2 CPU cores
    python -m launch.results --budget=tiny --out_dir=/tmp/r --runs_dir=/tmp/r/runs   # smoke test
    python -m launch.results --only_report            # rebuild results.md and the PNGs from existing runs

1. offline pretraining (launch.pretrain, one single-threaded process per run, at most
   `max_parallel_pretrain` at a time) of IQL + AWR, IDQL (argmax over Q), AlignIQL η=+1 and
   η=−1 and AlignIQL-hard, on each dataset and seed of the budget (configs/results.py);
2. online finetuning (launch.finetune, one run at a time: it starts 5 processes) from the
   pretraining checkpoints of `finetune.methods`, with both of IDQL's recipes
   (configs/finetune_argmax.py: μ frozen + argmax; configs/finetune.py: μ finetuned + implicit);
3. the report: <out_dir>/results.md with the tables (the LAST evaluation, mean ± std over
   seeds, never the best), learning curves under <out_dir>/figures/, the bandit figure
   (docs/bandit_figure.py) and the commands that reproduce the papers' tables on a GPU box.

Every run has its own directory under <runs_dir>/<budget>/{pretrain,finetune}/ and is done
when its summary.json is there: rerunning the command skips finished runs and resumes
interrupted ones (--resume), so a crash or Ctrl-C loses at most the runs in flight since
their last checkpoint. Each run's output goes to <runs_dir>/<budget>/logs/<run>.log.
"""
from __future__ import annotations

import ctypes
import datetime
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from absl import app, flags

from configs import results as study

ROOT = Path(__file__).resolve().parents[1]

_BUDGET = flags.DEFINE_enum("budget", "small", ["tiny", "small", "medium"], "Budget (configs/results.py).")
_OUT_DIR = flags.DEFINE_string("out_dir", "docs", "Where results.md and figures/ are written.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/results", "Run directories go under <runs_dir>/<budget>/.")
_DATASETS = flags.DEFINE_list("datasets", None, "Dataset ids (default: the budget's).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (default: the budget's).")
_ONLY_REPORT = flags.DEFINE_bool("only_report", False, "Only regenerate results.md and the PNGs from existing runs.")
_WANDB = flags.DEFINE_string("wandb_mode", "disabled", "wandb mode of every run (metrics.jsonl is always written).")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 0, "Pretraining runs at a time (0: the budget's).")
_NOTE = flags.DEFINE_string("note", None, "A remark about this budget's runs (e.g. other load on the machine), kept in "
                            "<runs_dir>/<budget>/study.json and printed in results.md.")
# Internal: one final evaluation, run by the study as a subprocess.
_EVAL_CKPT = flags.DEFINE_string("evaluate_checkpoint", None, "(internal) Evaluate this checkpoint, write --eval_out.")
_EVAL_CONFIG = flags.DEFINE_string("eval_config_json", None, "(internal) Config of the checkpoint (finetuning runs).")
_EVAL_OUT = flags.DEFINE_string("eval_out", None, "(internal) Where the final evaluation's JSON goes.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 20, "(internal) Episodes of the final evaluation.")
_EVAL_MODES = flags.DEFINE_list("eval_modes", ["argmax"], "(internal) Extraction modes of the final evaluation.")
_EVAL_N = flags.DEFINE_integer("eval_num_candidates", 16, "(internal) N of the final evaluation.")

FINAL_EVAL_SEED_OFFSET = 20_000_000   # never an in-training (100,000), evaluator (10,000,000) or actor seed


# ----------------------------------------------------------------------------- configuration

def fmt_value(v) -> str:
    """A value as ml_collections' command-line parser reads it back."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (tuple, list)):
        return repr(tuple(v))
    return str(v)


def as_flags(overrides: dict) -> list[str]:
    return [f"--config.{k}={fmt_value(v)}" for k, v in overrides.items()]


def load_config_file(path: str):
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return module.get_config()


def apply(cfg, overrides: dict):
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return cfg


def slug(dataset: str) -> str:
    s = dataset.replace("/", "_").replace(".hdf5", "").replace(".h5", "")
    return Path(s).name


def short(dataset: str) -> str:
    """'local/hopper/medium-v0' -> 'hopper-medium'."""
    parts = dataset.replace(".hdf5", "").split("/")
    return "-".join(parts[-2:]).removesuffix("-v0") if len(parts) >= 2 else parts[-1]


@dataclass
class Run:
    kind: str                   # "pretrain" | "finetune"
    method: str
    dataset: str
    seed: int
    recipe: str = ""
    run_dir: Path = Path()
    args: list[str] = field(default_factory=list)
    log: Path = Path()
    needs: Path | None = None   # a finetuning run's pretraining checkpoint
    episodes: int = 0           # final evaluations: episodes

    @property
    def name(self) -> str:
        return self.run_dir.name

    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def done(self) -> bool:
        if self.kind == "final":
            return final_eval(self.run_dir, self.episodes) is not None
        s = self.summary()
        if s is None:
            return False
        return not s.get("stopped") and not s.get("failure")


def pretrain_overrides(c, method: str, dataset: str, seed: int, workdir: Path) -> dict:
    pre = c.pretrain
    o = {"workdir": str(workdir), "name": method, "seed": seed, "dataset": dataset,
         "num_threads": pre.num_threads, "tau": c.tau,
         "num_critic_steps": pre.steps, "num_actor_steps": pre.steps,
         "eval.interval": pre.eval_interval, "eval.episodes": pre.eval_episodes,
         "eval.modes": tuple(pre.eval_modes), "eval.num_candidates": (pre.num_candidates,),
         "eval.max_episode_steps": pre.max_episode_steps, "wandb.mode": _WANDB.value}
    o |= study.flat(pre.extra)
    o |= study.METHODS[method][1]
    return o


def final_eval(run_dir: Path, episodes: int) -> dict | None:
    path = Path(run_dir) / "final_eval.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("episodes") == episodes else None


def final_eval_runs(c, pre_runs: list[Run], ft_runs: list[Run]) -> list[Run]:
    """One evaluation of every finished run's last checkpoint, K episodes on common seeds."""
    k = int(c.pretrain.final_eval_episodes)
    online_n = int(study.flat(c.finetune.online).get("num_candidates", c.pretrain.num_candidates))
    runs = []
    for r in pre_runs:
        modes = list(c.pretrain.eval_modes)
        if "argmax" not in modes:
            modes.insert(0, "argmax")
        args = ["launch.results", f"--evaluate_checkpoint={r.run_dir / 'checkpoint.pt'}",
                f"--eval_out={r.run_dir / 'final_eval.json'}", f"--eval_episodes={k}",
                f"--eval_modes={','.join(modes)}", f"--eval_num_candidates={c.pretrain.num_candidates}"]
        runs.append(Run("final", r.method, r.dataset, r.seed, "", r.run_dir, args,
                        r.log.with_name(r.log.stem + ".final.log"), needs=r.run_dir / "summary.json", episodes=k))
    for r in ft_runs:
        args = ["launch.results", f"--evaluate_checkpoint={r.run_dir / 'learner_checkpoint.pt'}",
                f"--eval_config_json={r.run_dir / 'config.json'}", f"--eval_out={r.run_dir / 'final_eval.json'}",
                f"--eval_episodes={k}", "--eval_modes=argmax", f"--eval_num_candidates={online_n}"]
        runs.append(Run("final", r.method, r.dataset, r.seed, r.recipe, r.run_dir, args,
                        r.log.with_name(r.log.stem + ".final.log"), needs=r.run_dir / "summary.json", episodes=k))
    return runs


def evaluate_checkpoint(ckpt: str, out: str, episodes: int, modes: list[str], num_candidates: int,
                        config_json: str | None) -> dict:
    """The final evaluation of one run: its last checkpoint, `episodes` episodes per mode.

    Seeds: config.seed + FINAL_EVAL_SEED_OFFSET for the environments and the candidate generator,
    the same for a pretrained checkpoint and the runs finetuned from it (common random numbers).
    """
    import ml_collections
    import torch

    from actor.evaluator import evaluate
    from launch.pretrain import load_offline_data
    from learner.agent import Learner
    from learner.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt, map_location="cpu")
    cfg = ml_collections.ConfigDict(json.loads(Path(config_json).read_text() if config_json else state["config"]))
    dataset, _transform, env_fn = load_offline_data(cfg)
    learner = Learner(cfg, dataset.obs_dim, dataset.act_dim, torch.device("cpu"))
    learner.load_state_dict(state["learner"])
    learner.train(False)
    has_ref = dataset.ref_min_score is not None and dataset.ref_max_score is not None
    seed = int(cfg.seed) + FINAL_EVAL_SEED_OFFSET
    results = {}
    for mode in (["gaussian"] if cfg.algorithm == "iql" else modes):
        policy = learner.acting_policy() if mode == "gaussian" else learner.acting_policy(
            weighting=cfg.eval.weighting or None, mode=mode, num_candidates=num_candidates)
        t0 = time.time()
        r = evaluate(policy, env_fn, episodes, seed=seed, device=torch.device("cpu"),
                     max_episode_steps=cfg.eval.max_episode_steps,
                     normalize=dataset.normalized_score if has_ref else None)
        results[mode] = {**r.summary(), "seconds": time.time() - t0}
        print(f"{mode}: {results[mode]}", flush=True)
    data = {"checkpoint": str(ckpt), "episodes": episodes, "seed": seed, "num_candidates": num_candidates,
            "weighting": cfg.eval.weighting or "", "results": results}
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out)
    return data


def plan(c, root: Path) -> tuple[list[Run], list[Run]]:
    """All runs of the study, seed-major so that an early stop leaves whole seeds."""
    pre_runs, ft_runs = [], []
    logs = root / "logs"
    for seed in c.seeds:
        for dataset in c.datasets:
            for method in c.methods:
                overrides = pretrain_overrides(c, method, dataset, seed, root / "pretrain")
                run_dir = root / "pretrain" / f"{method}-{overrides['algorithm']}-{slug(dataset)}-s{seed}"
                args = ["launch.pretrain", f"--config={c.pretrain.base_config}", *as_flags(overrides)]
                pre_runs.append(Run("pretrain", method, dataset, seed, "", run_dir, args, logs / f"{run_dir.name}.log"))
    for seed in c.seeds:
        for dataset in c.datasets:
            for method in c.finetune.methods:
                pre_over = pretrain_overrides(c, method, dataset, seed, root / "pretrain")
                pre_cfg = apply(load_config_file(c.pretrain.base_config), pre_over)
                ckpt = root / "pretrain" / f"{method}-{pre_over['algorithm']}-{slug(dataset)}-s{seed}" / "checkpoint.pt"
                for recipe in c.recipes:
                    config_file = study.RECIPES[recipe][1]
                    ft_default = study.flat(load_config_file(config_file))
                    # Same networks and hyperparameters as the checkpoint: every field the
                    # pretraining config sets differently from the recipe's config file.
                    same = {k: v for k, v in study.flat(pre_cfg).items()
                            if k not in ("name", "workdir") and not k.startswith("online.")
                            and ft_default.get(k, object()) != v}
                    name = f"{method}-{recipe}"
                    same |= {"name": name, "workdir": str(root / "finetune")}
                    same |= {f"online.{k}": v for k, v in study.flat(c.finetune.online).items()}
                    run_dir = root / "finetune" / f"{name}-{pre_over['algorithm']}-{slug(dataset)}-s{seed}"
                    args = ["launch.finetune", f"--config={config_file}", f"--pretrained={ckpt}", *as_flags(same)]
                    ft_runs.append(Run("finetune", method, dataset, seed, recipe, run_dir, args,
                                       logs / f"{run_dir.name}.log", needs=ckpt))
    return pre_runs, ft_runs


# ----------------------------------------------------------------------------- running

def _die_with_parent():
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG: no orphans if we are killed
    except OSError:
        pass


class Runner:
    """Starts runs as subprocesses, at most `parallel` at a time; SIGINT/SIGTERM stop them cleanly."""

    def __init__(self, root: Path):
        self.root = root
        self.stop = False
        self.running: dict[int, tuple[Run, subprocess.Popen, float]] = {}
        self.jobs_file = root / "jobs.jsonl"

    def on_signal(self, signum, _frame):
        if not self.stop:
            print(f"\n{signal.Signals(signum).name}: stopping the runs in flight (they checkpoint); "
                  f"rerun the same command to continue.", flush=True)
        self.stop = True
        for _, proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def start(self, run: Run) -> None:
        marker = {"pretrain": "checkpoint.pt", "finetune": "finetune_state.json"}.get(run.kind)
        resume = marker is not None and (run.run_dir / marker).exists()
        args = [sys.executable, "-m", *run.args] + (["--resume"] if resume else [])
        run.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(run.log, "a") as out:
            out.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')} "
                      f"{'resume' if resume else 'start'}: {' '.join(args)}\n")
            out.flush()
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent)
        self.running[proc.pid] = (run, proc, time.time())

    def run_all(self, runs: list[Run], parallel: int, label: str) -> dict:
        todo = [r for r in runs if not r.done()]
        skipped = len(runs) - len(todo)
        print(f"=== {label}: {len(runs)} runs, {skipped} already done, {len(todo)} to run, "
              f"{parallel} at a time ===", flush=True)
        t0, finished, failed, loads = time.time(), 0, [], []
        while (todo or self.running) and not (self.stop and not self.running):
            while todo and len(self.running) < parallel and not self.stop:
                run = todo.pop(0)
                print(f"  start  {run.name}", flush=True)
                self.start(run)
            time.sleep(1.0)
            if int(time.time()) % 30 == 0:
                loads.append(os.getloadavg()[0])
            for pid, (run, proc, started) in list(self.running.items()):
                if proc.poll() is None:
                    continue
                del self.running[pid]
                wall = time.time() - started
                ok = proc.returncode == 0 and run.done()
                finished += 1
                if not ok:
                    failed.append(run.name)
                with open(self.jobs_file, "a") as f:
                    f.write(json.dumps({"kind": run.kind, "run": run.name, "method": run.method,
                                        "dataset": run.dataset, "seed": run.seed, "recipe": run.recipe,
                                        "start": started, "end": time.time(), "wall_s": wall,
                                        "rc": proc.returncode, "done": ok}) + "\n")
                left = len(todo) + len(self.running)
                eta = (time.time() - t0) / finished * left / 1.0 if finished else float("nan")
                status = "done  " if ok else ("stopped" if self.stop else "FAILED")
                print(f"  {status} {run.name} in {wall:5.0f}s (rc {proc.returncode})"
                      f" | {left} left, ~{eta / 60:.0f} min" + ("" if ok or self.stop else f" | log: {run.log}"), flush=True)
        return {"label": label, "wall_s": time.time() - t0, "ran": finished, "failed": failed,
                "load_avg_mean": float(np.mean(loads)) if loads else None}


def machine_info() -> dict:
    import torch
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "host": platform.node()}


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


# ----------------------------------------------------------------------------- collecting results

def primary_tag(history_row: dict) -> str | None:
    """The evaluation the tables report: the argmax extraction (or IQL's Gaussian mean)."""
    tags = sorted({k.rsplit("/", 1)[0] for k in history_row if k.startswith("eval/") and k.endswith("/return_mean")})
    for prefix in ("eval/gaussian", "eval/argmax", "eval/implicit"):
        for t in tags:
            if t.startswith(prefix):
                return t
    return tags[0] if tags else None


def offline_records(runs: list[Run], episodes: int) -> dict:
    """(dataset, method) -> one record per seed: curves of the in-training evaluations, the last of them
    (t_*), and the headline numbers (score, return, gap, *_implicit): the final evaluation of the last
    checkpoint on `episodes` episodes when it exists, else the last in-training evaluation."""
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
        imp = next((t.rsplit("/", 1)[0] for t in sorted(last) if t.startswith("eval/implicit")
                    and t.endswith("/return_mean")), None)
        curve_imp = [(h["step"], h.get(f"{imp}/score_mean"), h[f"{imp}/return_mean"], h[f"{imp}/alignment_gap"])
                     for h in s["history"] if imp and f"{imp}/return_mean" in h]
        rec = {"seed": run.seed, "curve": curve, "curve_implicit": curve_imp, "tag": tag.removeprefix("eval/"),
               "step": last["step"],
               "t_score": last.get(f"{tag}/score_mean"), "t_return": last[f"{tag}/return_mean"],
               "t_gap": last[f"{tag}/alignment_gap"],
               "t_score_implicit": last.get(f"{imp}/score_mean") if imp else None,
               "t_gap_implicit": last.get(f"{imp}/alignment_gap") if imp else None}
        fe = final_eval(run.run_dir, episodes)
        if fe:
            res = fe["results"]
            p, i = res.get("gaussian") or res.get("argmax") or {}, res.get("implicit") or {}
            rec |= {"final": True, "score": p.get("score_mean"), "return": p.get("return_mean"),
                    "gap": p.get("alignment_gap"), "score_implicit": i.get("score_mean"),
                    "gap_implicit": i.get("alignment_gap")}
        else:
            rec |= {"final": False, "score": rec["t_score"], "return": rec["t_return"], "gap": rec["t_gap"],
                    "score_implicit": rec["t_score_implicit"], "gap_implicit": rec["t_gap_implicit"]}
        out.setdefault((run.dataset, run.method), []).append(rec)
    return out


def online_records(runs: list[Run], pre_runs: list[Run], episodes: int) -> dict:
    """(dataset, method, recipe) -> one record per seed: the evaluator's rows ("evals", "first", "last") and
    the headline start / end: final evaluations (same seeds) of the pretrained and the finetuned checkpoint
    when both exist, else the evaluator's first and last rows."""
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
        end = final_eval(run.run_dir, episodes)
        pre = pre_by.get((run.dataset, run.method, run.seed))
        start = final_eval(pre.run_dir, episodes) if pre else None
        if end and start and end.get("num_candidates") == start.get("num_candidates") and \
                "argmax" in end["results"] and "argmax" in start["results"]:
            rec |= {"final": True, "start": start["results"]["argmax"], "end": end["results"]["argmax"]}
        else:
            rec |= {"final": False, "start": evals[0], "end": evals[-1]}
        out.setdefault((run.dataset, run.method, run.recipe), []).append(rec)
    return out


def mstd(values) -> tuple[float, float] | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v))


def pm(values, digits: int = 1) -> str:
    r = mstd(values)
    return "n/a" if r is None else f"{r[0]:.{digits}f} ± {r[1]:.{digits}f}"


# ----------------------------------------------------------------------------- figures

def _plt():
    import logging

    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt
    return plt


COLOURS = {"iql": "#7f7f7f", "idql": "#1f77b4", "aligniql_pos": "#2ca02c", "aligniql_neg": "#d62728",
           "aligniql_hard": "#9467bd"}


def _band(ax, xs: dict, label: str, colour: str, dashed: bool = False):
    """xs: x -> list of y over seeds; line = mean, band = ± std."""
    x = sorted(k for k, v in xs.items() if v)
    if not x:
        return
    m = np.array([np.mean(xs[k]) for k in x])
    s = np.array([np.std(xs[k]) for k in x])
    n = max(len(xs[k]) for k in x)
    ax.plot(x, m, marker="s" if dashed else "o", ms=3, color=colour, ls="--" if dashed else "-",
            label=f"{label} (n={n})")
    ax.fill_between(x, m - s, m + s, color=colour, alpha=0.15)


def offline_figure(records: dict, dataset: str, methods: list[str], behaviour: dict, path: Path) -> Path | None:
    """Left: the argmax extraction (the papers' evaluation, the tables' ranking); right: implicit."""
    plt = _plt()
    has_implicit = any(r.get("curve_implicit") for m in methods for r in records.get((dataset, m), []))
    fig, axes = plt.subplots(1, 2 if has_implicit else 1, figsize=(13 if has_implicit else 7, 4.4),
                             sharey=True, squeeze=False)
    key, any_line = "score", False
    for col, (curve_key, what) in enumerate([("curve", "argmax extraction (IQL: Gaussian mean)"),
                                             ("curve_implicit", "implicit extraction (draw by weight)")]):
        if col >= axes.shape[1]:
            break
        ax = axes[0, col]
        for method in methods:
            recs = [r for r in records.get((dataset, method), []) if r.get(curve_key)]
            if not recs:
                continue
            use_score = recs[0][curve_key][0][1] is not None
            key = "score" if use_score else "return"
            xs: dict = {}
            for r in recs:
                for step, score, ret, _gap in r[curve_key]:
                    xs.setdefault(step, []).append(score if use_score else ret)
            label = study.METHODS[method][0]
            if method == "idql" and curve_key == "curve_implicit":
                label = "IDQL (eval.weighting=greedy: the argmax policy again)"
            _band(ax, xs, label, COLOURS.get(method, None), dashed=(method == "idql"))
            any_line = True
            fkey = "score" if curve_key == "curve" else "score_implicit"
            fin = [r[fkey] for r in recs if r["final"] and r[fkey] is not None]
            if fin and use_score:
                x_end = max(r["step"] for r in recs)
                spread = 0.012 * x_end * (methods.index(method) - (len(methods) - 1) / 2)
                ax.errorbar([x_end + spread], [np.mean(fin)], yerr=[np.std(fin)],
                            fmt="D", ms=6, mfc="none", capsize=3, color=COLOURS.get(method, None))
        b = behaviour.get(f"{key}_mean")
        if b is not None:
            ax.axhline(b, color="k", ls="--", lw=1, label=f"behaviour data ({b:.1f})")
        ax.set_xlabel("learner step")
        ax.set_ylabel("normalised score" if key == "score" else "return")
        ax.set_title(what, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if not any_line:
        plt.close(fig)
        return None
    fig.suptitle(f"offline pretraining on {dataset}: in-training evaluations (lines), final evaluation of the last "
                 f"checkpoint (diamonds); mean ± std over seeds\nIDQL dashed: under argmax it is the same policy as "
                 f"AlignIQL η=−1 (the lines coincide)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def online_figure(records: dict, dataset: str, recipe: str, methods: list[str], interval: int,
                  behaviour: dict, path: Path, final_x: int = 0, final_k: int = 0) -> Path | None:
    """Lines: the run's evaluator (few episodes); diamonds: final evaluations of start and end checkpoints."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    any_line = False
    for method in methods:
        recs = records.get((dataset, method, recipe), [])
        if not recs:
            continue
        xs: dict = {}
        for r in recs:
            per_bin = {}
            for row in r["evals"]:
                # The pretrained weights (version 0) are the curve's start whenever the evaluator got to
                # them; later evaluations land a few steps after each multiple of the interval.
                x = 0 if row.get("weights_version") == 0 else int(row["env_steps"] // interval) * interval
                per_bin[x] = row   # the last one in a bin
            for x, row in per_bin.items():
                xs.setdefault(x, []).append(row["score_mean"] if row.get("score_mean") is not None
                                            else row["return_mean"])
        _band(ax, xs, study.METHODS[method][0], COLOURS.get(method, None), dashed=(method == "idql"))
        any_line = True
        fin = [r for r in recs if r["final"]]
        if fin and final_x:
            ys = [[r["start"].get("score_mean") for r in fin], [r["end"].get("score_mean") for r in fin]]
            if all(y is not None for row in ys for y in row):
                off_x = 0.01 * final_x * (1 if method == "idql" else -1)
                ax.errorbar([off_x, final_x + off_x], [np.mean(y) for y in ys], yerr=[np.std(y) for y in ys],
                            fmt="D", ms=6, mfc="none", capsize=3, color=COLOURS.get(method, None),
                            label=f"{study.METHODS[method][0]}: final evaluations ({final_k} ep.)")
    if not any_line:
        plt.close(fig)
        return None
    b = behaviour.get("score_mean")
    if b is not None:
        ax.axhline(b, color="k", ls="--", lw=1, label=f"behaviour data ({b:.1f})")
    ax.set_xlabel("environment steps (online)")
    ax.set_ylabel("normalised score (argmax)")
    ax.set_title(f"online finetuning on {dataset}\n{study.RECIPES[recipe][0]}: mean ± std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the report

# AlignIQL (seeds/001) Table 1 (AlignIQL, IDQL and IQL columns) and Table 3 (η, N); IDQL's
# locomotion N is its appendix E "-A" value (128).
LOCOMOTION = [  # (D4RL name, env, kind, η, N, AlignIQL, IDQL, IQL)
    ("halfcheetah-medium-expert", "halfcheetah", "medium-expert", -1, 16, 89.1, 89.2, 86.7),
    ("hopper-medium-expert", "hopper", "medium-expert", -1, 16, 107.1, 108.2, 91.5),
    ("walker2d-medium-expert", "walker2d", "medium-expert", -1, 256, 111.9, 111.7, 109.6),
    ("halfcheetah-medium", "halfcheetah", "medium", -1, 256, 46.0, 46.0, 47.4),
    ("hopper-medium", "hopper", "medium", -1, 64, 56.1, 56.3, 66.3),
    ("walker2d-medium", "walker2d", "medium", -1, 256, 78.5, 77.6, 78.3),
    ("halfcheetah-medium-replay", "halfcheetah", "medium-replay", -1, 64, 41.1, 41.1, 44.2),
    ("hopper-medium-replay", "hopper", "medium-replay", -1, 256, 74.8, 86.2, 94.7),
    ("walker2d-medium-replay", "walker2d", "medium-replay", -1, 256, 76.5, 85.1, 73.9),
]
ANTMAZE = [  # (D4RL name, Minari id, η, N, AlignIQL, IDQL, IQL); η of large-diverse is illegible in Table 3
    ("antmaze-umaze", "D4RL/antmaze/umaze-v1", 1, 16, 94.8, 93.4, 87.5),
    ("antmaze-umaze-diverse", "D4RL/antmaze/umaze-diverse-v1", 1, 16, 82.4, 75.2, 62.2),
    ("antmaze-medium-play", "D4RL/antmaze/medium-play-v1", -1, 64, 80.5, 85.0, 71.2),
    ("antmaze-medium-diverse", "D4RL/antmaze/medium-diverse-v1", -1, 16, 85.5, 74.4, 70.0),
    ("antmaze-large-play", "D4RL/antmaze/large-play-v1", 1, 64, 65.2, 60.0, 39.6),
    ("antmaze-large-diverse", "D4RL/antmaze/large-diverse-v1", None, 64, 66.4, 58.4, 47.5),
]
ADROIT = [  # AlignIQL Table 2: (task, Minari id, AlignIQL (η=1), AlignIQL-A, IDQL)
    ("pen-human", "D4RL/pen/human-v2", "76.0 ± 4.8", "76.0 ± 4.8", "70.7 ± 8.4"),
    ("hammer-human", "D4RL/hammer/human-v2", "2.0 ± 0.7", "2.7 ± 1.2", "2.8 ± 0.8"),
    ("door-human", "D4RL/door/human-v2", "6.0 ± 3.6", "7.3 ± 4.9", "5.2 ± 1.3"),
    ("relocate-human", "D4RL/relocate/human-v2", "0.28 ± 0.34", "0.3 ± 0.1", "0.09 ± 0.02"),
    ("pen-expert", "D4RL/pen/expert-v2", "116.0 ± 4.3", "139.2 ± 6.5", "132.9 ± 4.5"),
    ("hammer-expert", "D4RL/hammer/expert-v2", "124.7 ± 1.9", "124.7 ± 1.91", "126.5 ± 0.7"),
    ("door-expert", "D4RL/door/expert-v2", "104.6 ± 0.5", "105.2 ± 0.2", "105.0 ± 0.1"),
    ("relocate-expert", "D4RL/relocate/expert-v2", "106.0 ± 1.5", "107.7 ± 2.7", "108.3 ± 1.3"),
]
IDQL_FINETUNE = [  # IDQL Table 3: (dataset, Minari id, -Max pretrain, -Max final, -Imp pretrain, -Imp final)
    ("antmaze-umaze", "D4RL/antmaze/umaze-v1", 92.0, 99.0, 93.5, 99.5),
    ("antmaze-umaze-diverse", "D4RL/antmaze/umaze-diverse-v1", 78.7, 85.6, 78.4, 73.0),
    ("antmaze-medium-play", "D4RL/antmaze/medium-play-v1", 83.3, 97.8, 84.4, 94.0),
    ("antmaze-medium-diverse", "D4RL/antmaze/medium-diverse-v1", 84.7, 98.0, 84.0, 98.7),
    ("antmaze-large-play", "D4RL/antmaze/large-play-v1", 60.1, 88.0, 60.3, 90.0),
    ("antmaze-large-diverse", "D4RL/antmaze/large-diverse-v1", 61.1, 90.7, 61.4, 93.0),
]


def reproduction_section() -> list[str]:
    L = ["## Reproducing the papers' tables (GPU, real D4RL data)", "",
         "Paper-size settings are the config files' defaults (AlignIQL: batch 512/512, μ = LN-ResNet "
         "256×1024×3, T = 5, 1.5M critic / 3M μ steps, evaluation every 250k steps with 50 episodes; "
         "IDQL: critic batch 256, actor batch 1024). The papers report the mean of the **last** evaluation "
         "over 10 seeds (`$S` = 0 … 9 below). Datasets need internet once: `pip install \"minari[hdf5]==0.5.3\" "
         "gymnasium-robotics`, then `minari download <id>` (the store is `$MINARI_DATASETS_PATH`, "
         "default `~/.minari`).", "",
         "### Locomotion (AlignIQL Table 1, η and N from its Table 3; τ = 0.7)", "",
         "Minari's `mujoco/<env>/medium-v0` datasets were re-collected on the v5 environments, so they are "
         "not D4RL's `-v2` data and scores need not match the papers to the decimal. For the exact D4RL "
         "data (and for the medium-replay / medium-expert rows) download D4RL's v2 HDF5 files "
         "(`<env>-<kind>-v2.hdf5`, keys `observations, actions, rewards, terminals, timeouts`) and pass the "
         "path; the platform maps them to the v5 environments and D4RL's reference scores.", "",
         "```bash",
         "minari download mujoco/hopper/medium-v0 mujoco/halfcheetah/medium-v0 mujoco/walker2d/medium-v0",
         "# AlignIQL (η, N per row below), IDQL (greedy argmax-Q, N = 128) and IQL, 10 seeds each:",
         "for S in 0 1 2 3 4 5 6 7 8 9; do",
         "  python -m launch.pretrain --config=configs/locomotion.py --config.dataset=mujoco/hopper/medium-v0 \\",
         "      --config.eta=-1 --config.eval.num_candidates='(64,)' --config.seed=$S",
         "  python -m launch.pretrain --config=configs/idql_locomotion.py --config.dataset=mujoco/hopper/medium-v0 --config.seed=$S",
         "  python -m launch.pretrain --config=configs/iql_locomotion.py --config.dataset=mujoco/hopper/medium-v0 --config.seed=$S",
         "  python -m launch.pretrain --config=configs/locomotion.py --config.algorithm=aligniql_hard \\",
         "      --config.dataset=mujoco/hopper/medium-v0 --config.eval.num_candidates='(16,64,256)' --config.seed=$S",
         "done",
         "# D4RL v2 files instead of Minari (all nine rows), e.g.:",
         "python -m launch.pretrain --config=configs/locomotion.py --config.dataset=/data/d4rl/hopper-medium-replay-v2.hdf5 \\",
         "    --config.eta=-1 --config.eval.num_candidates='(256,)' --config.seed=0",
         "```", "",
         "| D4RL dataset | `--config.dataset` | η | N | paper AlignIQL | paper IDQL | paper IQL |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for name, env, kind, eta, n, a, i, q in LOCOMOTION:
        ds = f"`mujoco/{env}/medium-v0` or `…/{name}-v2.hdf5`" if kind == "medium" else f"`…/{name}-v2.hdf5`"
        L.append(f"| {name} | {ds} | {eta:+d} | {n} | {a} | {i} | {q} |")
    L += ["| average (locomotion) | | | | 75.7 | 78.0 | 76.9 |", "",
          "Per row: `python -m launch.pretrain --config=configs/locomotion.py --config.dataset=<dataset> "
          "--config.eta=<η> --config.eval.num_candidates='(<N>,)' --config.seed=$S`. Paper numbers: AlignIQL "
          "Table 1 (AlignIQL, IDQL and IQL columns; IDQL rerun by the AlignIQL authors). AlignIQL-hard is "
          "only reported as averages (AlignIQL Table 4: locomotion 69.7 / 71.0 at N = 16 / 64; AntMaze "
          "54.2 / 57.9 / 56.7 at N = 16 / 64 / 256).", "",
          "### AntMaze (AlignIQL Table 1, η and N from Table 3; τ = 0.9, r ← r − 1)", "",
          "```bash",
          "minari download D4RL/antmaze/umaze-v1 D4RL/antmaze/umaze-diverse-v1 D4RL/antmaze/medium-play-v1 \\",
          "    D4RL/antmaze/medium-diverse-v1 D4RL/antmaze/large-play-v1 D4RL/antmaze/large-diverse-v1",
          "python -m launch.pretrain --config=configs/antmaze.py --config.dataset=D4RL/antmaze/large-play-v1 \\",
          "    --config.eta=1 --config.eval.num_candidates='(64,)' --config.seed=$S",
          "python -m launch.pretrain --config=configs/antmaze.py --config.algorithm=idql --config.eval.weighting=greedy \\",
          "    --config.critic_batch_size=256 --config.actor_batch_size=1024 --config.eval.num_candidates='(32,)' \\",
          "    --config.dataset=D4RL/antmaze/large-play-v1 --config.seed=$S        # IDQL-A (N = 32)",
          "```", "",
          "| D4RL dataset | `--config.dataset` | η | N | paper AlignIQL | paper IDQL | paper IQL |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for name, mid, eta, n, a, i, q in ANTMAZE:
        e = f"{eta:+d}" if eta is not None else "+1 (†)"
        L.append(f"| {name} | `{mid}` | {e} | {n} | {a} | {i} | {q} |")
    L += ["| average (AntMaze) | | | | 79.1 | 74.4 | 63.0 |", "",
          "(†) The η entry of the large-diverse row is illegible in our copy of AlignIQL Table 3; +1 as for "
          "large-play is our guess.", "",
          "### Adroit (AlignIQL Table 2; η = 1, τ = 0.7, argmax extraction at evaluation)", "",
          "```bash",
          "pip install gymnasium-robotics",
          "minari download D4RL/pen/human-v2 D4RL/hammer/human-v2 D4RL/door/human-v2 D4RL/relocate/human-v2 \\",
          "    D4RL/pen/expert-v2 D4RL/hammer/expert-v2 D4RL/door/expert-v2 D4RL/relocate/expert-v2",
          "python -m launch.pretrain --config=configs/adroit.py --config.dataset=D4RL/pen/human-v2 --config.seed=$S",
          "python -m launch.pretrain --config=configs/adroit.py --config.eta=-1 --config.dataset=D4RL/pen/human-v2 --config.seed=$S   # the η = −1 half of AlignIQL-A",
          "```", "",
          "The paper does not give N for Adroit; configs/adroit.py evaluates N = 16, 64 and 256.", "",
          "| task | `--config.dataset` | paper AlignIQL (η = 1) | paper AlignIQL-A (best of η = ±1) | paper IDQL |",
          "|---|---|---:|---:|---:|"]
    for name, mid, a, aa, i in ADROIT:
        L.append(f"| {name} | `{mid}` | {a} | {aa} | {i} |")
    L += ["", "### Online finetuning on AntMaze (IDQL Table 3, pretraining → after 1M online steps)", "",
          "IDQL appendix D.3: pretrain the critic for 1M and μ for 2M steps, then 1M online environment "
          "steps with one V+Q update per step (recipe -Imp: also 2 μ steps per environment step), 5,000 "
          "warm-up steps, 128 online + 128 offline transitions per batch, evaluation every 25k steps "
          "with 25 episodes. `configs/finetune*.py` start from the CPU-size quickstart, so the paper-size "
          "networks and τ are given on the command line (they must match the checkpoint):", "",
          "```bash",
          "minari download D4RL/antmaze/large-play-v1",
          "python -m launch.pretrain --config=configs/antmaze.py --config.dataset=D4RL/antmaze/large-play-v1 \\",
          "    --config.algorithm=idql --config.eval.weighting=greedy --config.critic_batch_size=256 \\",
          "    --config.actor_batch_size=1024 --config.num_critic_steps=1000000 --config.num_actor_steps=2000000 \\",
          "    --config.eval.num_candidates='(64,)' --config.seed=$S",
          "FT=\"--config.dataset=D4RL/antmaze/large-play-v1 --config.algorithm=idql --config.eval.weighting=greedy \\",
          "    --config.tau=0.9 --config.exp_alpha=0.5 --config.iql.temperature=10 --config.num_threads=0 \\",
          "    --config.critic_batch_size=256 --config.actor_batch_size=1024 \\",
          "    --config.diffusion.width=256 --config.diffusion.inner=1024 --config.diffusion.num_blocks=3 \\",
          "    --config.online.total_env_steps=1000000 --config.online.min_replay_size=5000 \\",
          "    --config.online.eval_interval=25000 --config.online.eval_episodes=25 --config.online.num_candidates=64 \\",
          "    --config.online.num_actors=8 --config.seed=$S\"",
          "CKPT=runs/antmaze-idql-D4RL_antmaze_large-play-v1-s$S/checkpoint.pt",
          "python -m launch.finetune --config=configs/finetune_argmax.py --pretrained=$CKPT $FT   # IDQL-Max",
          "python -m launch.finetune --config=configs/finetune.py --pretrained=$CKPT $FT          # IDQL-Imp",
          "```", "",
          "| dataset | `--config.dataset` | paper IDQL-Max (μ frozen, argmax) | paper IDQL-Imp (μ finetuned, implicit) |",
          "|---|---|---:|---:|"]
    for name, mid, a0, a1, b0, b1 in IDQL_FINETUNE:
        L.append(f"| {name} | `{mid}` | {a0} → {a1} | {b0} → {b1} |")
    L += ["| total | | 459.9 → 559.1 | 462.0 → 548.2 |", "",
          "Cal-QL, RLPD and IQL columns of that table are not reproduced here. For AlignIQL finetuning "
          "use `--config.algorithm=aligniql --config.eta=1` (and drop `--config.eval.weighting`) with an "
          "AlignIQL checkpoint."]
    return L


def bandit_section(out_dir: Path) -> list[str]:
    from docs import bandit_figure
    res = bandit_figure.compute()
    bandit_figure.draw(res, out_dir / "figures" / "bandit.png")
    v = res["bandit"].v
    L = ["## The weightings on a one-dimensional bandit", "",
         "`python -m docs.bandit_figure` (seconds): one state, μ a mixture of three action clusters with "
         f"low / medium / high Q plus noise, N = {len(res['bandit'].q)} candidates, V = the exact "
         f"τ-expectile of Q under μ (τ = {res['tau']}), the platform's own `networks.extraction` weights and "
         "`expected_q`; AlignIQL-hard's α, β solved from Eq. 11 with `learner.losses.multiplier_losses`.", "",
         "![bandit](figures/bandit.png)", "",
         f"| weighting | E_π[Q] (implicit) | alignment gap E_π[Q] − V | Q of the argmax candidate |",
         "|---|---:|---:|---:|"]
    for label, row in res["rows"].items():
        L.append(f"| {label.replace(chr(10), ' — ').replace('|', chr(92) + '|')} | {row['implicit']:.3f} | {row['implicit'] - v:+.3f} | "
                 f"{row['argmax']:.3f} |")
    L += ["", f"V = {v:.3f}, E_μ[Q] = {res['mean_q']:.3f}. AlignIQL-hard's multipliers make the implicit policy "
          "satisfy E_π[Q] = V (Eq. 10) by construction; IDQL's expectile weights do too, because V is exactly "
          "the expectile their loss defines (IDQL's implicit actor is aligned for the optimal V of *its own* "
          "loss); the quantile and exponential weights are not aligned with an expectile V; AlignIQL's "
          "closed form exp(−ηA²) is aligned only approximately; η = −1 (AWR-like) and greedy pick "
          "higher-Q actions than V and are misaligned by design.", ""]
    return L


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


def write_report(c, root: Path, out_dir: Path, pre_runs: list[Run], ft_runs: list[Run]) -> Path:
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    ds_info = dataset_info(c.datasets, root)
    study_file = root / "study.json"
    st = json.loads(study_file.read_text()) if study_file.exists() else {"invocations": []}
    inv = st["invocations"]
    pre, ft = c.pretrain, c.finetune
    k = int(pre.final_eval_episodes)
    off = offline_records(pre_runs, k)
    onl = online_records(ft_runs, pre_runs, k)
    online = {**load_config_file(study.RECIPES["argmax"][1]).online.to_dict(), **study.flat(ft.online)}
    method_labels = {m: study.METHODS[m][0] for m in c.methods}

    L = ["# Results: does it learn what the papers say?", "",
         f"Generated by `python -m launch.results --budget={c.budget}` (this file, the PNGs under `figures/`); "
         f"rerun with `--only_report` to rebuild it from the run directories under `{root}`. "
         f"Last generated {datetime.datetime.now().isoformat(timespec='minutes')}.", ""]

    # ---- budget ----
    base = apply(load_config_file(pre.base_config), study.flat(pre.extra))
    wall_total = sum(i.get("wall_s", 0.0) for i in inv)
    wall_pre = sum(p.get("wall_s", 0.0) for i in inv for p in i.get("phases", []) if p["label"] == "pretraining")
    wall_ft = sum(p.get("wall_s", 0.0) for i in inv for p in i.get("phases", []) if p["label"] == "finetuning")
    wall_fe = sum(p.get("wall_s", 0.0) for i in inv for p in i.get("phases", [])
                  if p["label"].startswith("final evaluation"))
    mach = inv[-1]["machine"] if inv else machine_info()
    est = study.estimate_seconds(c)
    sizes = ", ".join(f"{ds_info[d]['transitions']:,} transitions / {ds_info[d]['episodes']} episodes"
                      for d in c.datasets if d in ds_info)
    L += ["## Budget (the same for every method)", "",
          f"| | |", "|---|---|",
          f"| datasets | {', '.join(f'`{d}`' for d in c.datasets)} (made locally by `data.make` from the behaviour "
          f"policies in `data/behavior/`; {sizes}) |",
          f"| seeds | {len(c.seeds)} ({', '.join(map(str, c.seeds))}) |",
          f"| pretraining | {pre.steps:,} learner steps (critic and μ / Gaussian actor each; papers: 1.5M / 3M), "
          f"batch {base.critic_batch_size} / {base.actor_batch_size}, critic {tuple(base.critic_hidden)}, "
          f"μ LN-ResNet width {base.diffusion.width}, inner {base.diffusion.inner}, {base.diffusion.num_blocks} "
          f"blocks, T = {base.diffusion.num_steps}; `{pre.base_config}` |",
          f"| offline evaluation | every {pre.eval_interval:,} steps, {pre.eval_episodes} episodes, "
          f"mode {', '.join(pre.eval_modes)}, N = {pre.num_candidates} (IQL: the Gaussian's mean) |",
          f"| final evaluation | every run's last checkpoint once more on {k} episodes, seeds shared by a "
          f"pretrained checkpoint and the runs finetuned from it (the tables' numbers) |",
          f"| online finetuning | from the pretraining checkpoints of "
          f"{', '.join(method_labels.get(m, m) for m in ft.methods)}; recipes "
          f"{'; '.join(study.RECIPES[r][0] for r in c.recipes)}; {online['total_env_steps']:,} environment steps "
          f"(papers: 1M), {online['min_replay_size']:,} warm-up, {online['updates_per_env_step']:g} V+Q update "
          f"per env step, batch {online['online_batch_size']} online + {online['offline_batch_size']} offline, "
          f"{online['num_actors']} actors × {online['envs_per_actor']} envs, N = {online['num_candidates']}, "
          f"evaluation every {online['eval_interval']:,} env steps with {online['eval_episodes']} episodes (argmax) |",
          f"| runs | {len(pre_runs)} pretraining ({c.max_parallel_pretrain} at a time, 1 torch thread each) + "
          f"{len(ft_runs)} finetuning (one at a time, 5 processes) |",
          f"| machine | {mach.get('cpu')}, {mach.get('cores')} cores, GPU: {mach.get('gpu')}; Python "
          f"{mach.get('python')}, torch {mach.get('torch')} |",
          f"| wall time (measured) | {wall_total / 60:.1f} min in total over {len(inv)} invocation(s): "
          f"pretraining {wall_pre / 60:.1f} min, finetuning {wall_ft / 60:.1f} min, final evaluation "
          f"{wall_fe / 60:.1f} min (planned from quiet-machine rates: {est['total_s'] / 60:.0f} min) |",
          f"| measured rates | {measured_rates(pre_runs, ft_runs, inv)} |"]
    L += [f"| note | {n} |" for n in st.get("notes", [])] + [""]

    # ---- offline table ----
    L += ["## Offline pretraining: the last checkpoint", "",
          f"Normalised score = 100·(return − random)/(expert − random) with the dataset's references. "
          f"Each cell: mean ± std over seeds (population std) of each run's **last** checkpoint (step "
          f"{pre.steps:,}; never the best one), evaluated once more after training on {k} episodes "
          f"(the in-training evaluations average only {pre.eval_episodes}; the last of them is in the "
          f"last column). Alignment gap = E_π[Q] − V (AlignIQL Def. 3.1) averaged over the states the "
          f"evaluation visited, exact over the N = {pre.num_candidates} candidates for the extraction evaluated "
          f"(argmax: the chosen candidate's Q − V; implicit: the weight-averaged Q − V). **argmax** (the papers' "
          f"evaluation) is what the scores rank by; **implicit** draws the action by weight (the policy the "
          f"weights define). IQL's Gaussian actor is evaluated at its mean. IDQL runs with "
          f"`eval.weighting=greedy` (argmax over Q), which both modes use: its implicit column is the same greedy "
          f"policy drawn with a different random stream, a measure of evaluation noise.", "",
          f"| dataset | method | score, argmax | return, argmax | alignment gap, argmax | score, implicit | "
          f"alignment gap, implicit | last in-training evaluation, argmax ({pre.eval_episodes} ep.) | seeds |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in c.datasets:
        b = ds_info.get(d, {})
        if b.get("return_mean") is not None:
            L.append(f"| {short(d)} | behaviour data ({b['episodes']} episodes) | "
                     f"{b['score_mean']:.1f} ± {b['score_std']:.1f}* | {b['return_mean']:.0f} ± {b['return_std']:.0f}* "
                     f"| | | | | |")
        for m in c.methods:
            recs = off.get((d, m), [])
            if not recs:
                L.append(f"| {short(d)} | {method_labels[m]} | not run | | | | | | 0 |")
                continue
            mark = "" if all(r["final"] for r in recs) else " ‡"
            imp_s, imp_g = [r["score_implicit"] for r in recs], [r["gap_implicit"] for r in recs]
            L.append(f"| {short(d)} | {method_labels[m]} | {pm([r['score'] for r in recs])}{mark} | "
                     f"{pm([r['return'] for r in recs], 0)} | {pm([r['gap'] for r in recs], 3)} | "
                     f"{pm(imp_s) if mstd(imp_s) else '–'} | {pm(imp_g, 3) if mstd(imp_g) else '–'} | "
                     f"{pm([r['t_score'] for r in recs])} | {len(recs)} |")
    L += ["", "\\* behaviour data: mean ± std over the dataset's complete episodes. ‡ no final evaluation yet: "
          "the last in-training evaluation.", ""]
    for d in c.datasets:
        p = offline_figure(off, d, c.methods, ds_info.get(d, {}), figures / f"offline_{slug(d)}.png")
        if p:
            L += [f"![offline {d}](figures/{p.name})", ""]

    # ---- online table ----
    L += ["## Online finetuning: after pretraining → at the end", "",
          f"Argmax extraction (N = {online['num_candidates']}), the papers' evaluation policy. \"After "
          f"pretraining\" and \"at the end\" are the final evaluations ({k} episodes, the same environment and "
          f"candidate seeds for both) of the pretrained checkpoint and of the learner's last checkpoint; the "
          f"next-to-last column gives the finetuning run's own evaluator, first → last evaluation "
          f"({online['eval_episodes']} episodes each). Mean ± std over seeds.", "",
          "| dataset | pretrained method | recipe | score after pretraining | score at the end | change | "
          f"return at the end | alignment gap at the end | evaluator: first → last ({online['eval_episodes']} ep.) "
          "| env steps | seeds |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worse = []
    for d in c.datasets:
        for m in ft.methods:
            for r in c.recipes:
                recs = onl.get((d, m, r), [])
                if not recs:
                    L.append(f"| {short(d)} | {method_labels.get(m, m)} | {r} | not run | | | | | | | 0 |")
                    continue
                mark = "" if all(x["final"] for x in recs) else " ‡"
                first = [x["start"].get("score_mean") for x in recs]
                last = [x["end"].get("score_mean") for x in recs]
                delta = [b - a for a, b in zip(first, last) if a is not None and b is not None]
                ev = (f"{pm([x['first'].get('score_mean') for x in recs])} → "
                      f"{pm([x['last'].get('score_mean') for x in recs])}")
                L.append(f"| {short(d)} | {method_labels.get(m, m)} | {r} | {pm(first)}{mark} | {pm(last)}{mark} | "
                         f"{pm(delta)} | {pm([x['end']['return_mean'] for x in recs], 0)} | "
                         f"{pm([x['end']['alignment_gap'] for x in recs], 3)} | {ev} | "
                         f"{pm([x['env_steps'] for x in recs], 0)} | {len(recs)} |")
                dm = mstd(delta)
                if dm:
                    worse.append((short(d), method_labels.get(m, m), r, dm))
    L += ["", "‡ no final evaluation yet: the evaluator's first and last rows."]
    L.append("")
    for d in c.datasets:
        for r in c.recipes:
            p = online_figure(onl, d, r, ft.methods, int(online["eval_interval"]), ds_info.get(d, {}),
                              figures / f"online_{slug(d)}_{r}.png", int(online["total_env_steps"]), k)
            if p:
                L += [f"![online {d} {r}](figures/{p.name})", ""]

    # ---- what the numbers say (generated from them) ----
    L += ["## Reading the numbers", ""]
    for d in c.datasets:
        for key, mode in (("score", "argmax"), ("score_implicit", "implicit")):
            ranked = [(mstd([r[key] for r in off.get((d, m), [])]), m) for m in c.methods]
            ranked = sorted([(ms, m) for ms, m in ranked if ms], key=lambda t: -t[0][0])
            if len(ranked) < 2:
                continue
            chain, prev = "", None
            for ms, m in ranked:
                sep = "" if prev is None else (" = " if abs(prev - ms[0]) < 1e-9 else " > ")
                chain += f"{sep}{method_labels[m]} {ms[0]:.1f}"
                prev = ms[0]
            spread = ranked[0][0][0] - ranked[-1][0][0]
            noise = max(ms[1] for ms, _ in ranked)
            L.append(f"- {short(d)}, {mode}: {chain}. The spread between first and last ({spread:.1f} points) is "
                     f"{'smaller' if spread <= noise else 'larger'} than the largest seed-std ({noise:.1f}).")
    for d in c.datasets:
        a, b = off.get((d, "idql"), []), off.get((d, "aligniql_neg"), [])
        pairs = [(x["score"], y["score"]) for x in a for y in b if x["seed"] == y["seed"]]
        if pairs:
            same = all(x is not None and y is not None and abs(x - y) < 1e-6 for x, y in pairs)
            L.append(f"- {short(d)}: IDQL (greedy) and AlignIQL η=−1 with **argmax** extraction are the same policy — "
                     f"argmax of exp(A) is argmax of Q — and both train μ, V and Q identically; per seed their argmax "
                     f"scores are {'identical' if same else 'not identical (run-to-run nondeterminism)'} "
                     f"({len(pairs)} seed pairs). They differ only with implicit extraction (exp(A) against "
                     f"expectile weights) and in the implicit finetuning recipe.")
    for d in c.datasets:
        hard = [r for r in pre_runs if r.dataset == d and r.method == "aligniql_hard" and r.done()]
        stats = []
        for r in hard:
            rows = []
            try:
                with open(r.run_dir / "metrics.jsonl") as f:
                    rows = [json.loads(line) for line in f if '"train/stats/alpha_mean"' in line]
            except OSError:
                pass
            if rows:
                stats.append((rows[0], rows[-1]))
        if stats:
            a0, a1 = np.mean([x[0]["train/stats/alpha_mean"] for x in stats]), np.mean([x[1]["train/stats/alpha_mean"] for x in stats])
            b1 = np.mean([x[1]["train/stats/beta_mean"] for x in stats])
            q0, q1 = np.mean([x[0]["train/stats/q_mean"] for x in stats]), np.mean([x[1]["train/stats/q_mean"] for x in stats])
            gi = mstd([x["gap_implicit"] for x in off.get((d, "aligniql_hard"), [])])
            L.append(f"- {short(d)}: AlignIQL-hard's multiplier networks (Adam {base.multipliers.lr:g}, the paper's rate) "
                     f"chase a critic that is still growing: mean α(s) went {a0:+.2f} → {a1:+.2f} while mean Q went "
                     f"{q0:.1f} → {q1:.1f} (β ends at {b1:+.3f}), so Eq. 9–10 do not hold yet"
                     + (f" and its implicit policy is not aligned (implicit gap {gi[0]:+.3f})" if gi else "")
                     + "; in the bandit, where they are solved to convergence, the gap is 0.")
    for d in c.datasets:
        b = ds_info.get(d, {}).get("score_mean")
        if b is None:
            continue
        parts = []
        for key, mode in (("score", "argmax"), ("score_implicit", "implicit")):
            above = [(method_labels[m], mstd([r[key] for r in off.get((d, m), [])])) for m in c.methods]
            above = [(lab, ms[0]) for lab, ms in above if ms is not None]
            if not above:
                continue
            better = [f"{lab} ({v:.1f})" for lab, v in above if v > b]
            parts.append(f"{mode}: {', '.join(better) if better else 'none'} of {len(above)}")
        L.append(f"- {short(d)}: methods whose final mean score beats the behaviour data's {b:.1f} — "
                 + "; ".join(parts) + ".")
    seen_noise: set = set()
    for d in c.datasets:
        for m in ft.methods:
            t = {r["seed"]: r["t_score"] for r in off.get((d, m), [])}
            f = {r["seed"]: r["score"] for r in off.get((d, m), []) if r["final"]}
            e = {x["seed"]: x["first"].get("score_mean") for r in c.recipes for x in onl.get((d, m, r), [])}
            seeds = [sd for sd in t if sd in e and sd in f]
            triple = tuple((round(t[sd], 6), round(e[sd], 6), round(f[sd], 6)) for sd in seeds)
            if seeds and triple in seen_noise:
                continue
            seen_noise.add(triple)
            if seeds:
                L.append(f"- Evaluation noise, {short(d)}, {method_labels.get(m, m)} (argmax; IDQL's checkpoints are "
                         f"the same policy): the same pretrained "
                         f"checkpoints score (per seed) "
                         + ", ".join(f"{t[sd]:.1f} / {e[sd]:.1f} / {f[sd]:.1f}" for sd in seeds)
                         + f" in the in-training evaluation / the finetuning evaluator's first evaluation (both "
                         f"{pre.eval_episodes} episodes, different seeds) / the final evaluation ({k} episodes).")
    if worse:
        down = [w for w in worse if w[3][0] < 0 and -w[3][0] > w[3][1]]
        up = [w for w in worse if w[3][0] > 0 and w[3][0] > w[3][1]]
        fmt = lambda ws: "; ".join(f"{m} / {r} on {d} ({dm[0]:+.1f} ± {dm[1]:.1f})" for d, m, r, dm in ws)  # noqa: E731
        L.append(f"- Online finetuning, change of the final-evaluation score (mean ± std over seeds), where the mean "
                 f"exceeds one std: worse — {fmt(down) or 'none'}; better — {fmt(up) or 'none'}; every other "
                 f"run's change is within one std of zero.")
    L += [f"- Budget caveat: {pre.steps:,} pretraining steps are {100 * pre.steps / 1_500_000:.2g}% of the "
          f"papers' critic steps, networks are smaller, and even the final evaluations average only {k} "
          f"episodes, so differences of a few points are noise; these numbers test that "
          f"each method learns and behaves as its paper describes at small scale, not the papers' final scores.",
          ""]
    failed = [r.name for r in pre_runs + ft_runs if not r.done()]
    if failed:
        L += [f"Runs not (yet) finished: {len(failed)} — " + ", ".join(f"`{n}`" for n in failed[:20])
              + (" …" if len(failed) > 20 else "") + ". Rerun the command to complete them.", ""]

    L += bandit_section(out_dir)
    L += reproduction_section()
    path = out_dir / "results.md"
    path.write_text("\n".join(L) + "\n")
    return path


# ----------------------------------------------------------------------------- main

def main(argv):
    del argv
    import torch
    torch.set_num_threads(1)
    if _EVAL_CKPT.value:
        evaluate_checkpoint(_EVAL_CKPT.value, _EVAL_OUT.value, _EVAL_EPISODES.value, list(_EVAL_MODES.value),
                            _EVAL_N.value, _EVAL_CONFIG.value)
        return
    c = study.get_config(_BUDGET.value)
    if _DATASETS.value:
        c.datasets = list(_DATASETS.value)
    if _SEEDS.value:
        c.seeds = [int(s) for s in _SEEDS.value]
    if _MAX_PARALLEL.value:
        c.max_parallel_pretrain = _MAX_PARALLEL.value
    root = Path(_RUNS_DIR.value) / c.budget
    out_dir = Path(_OUT_DIR.value)
    root.mkdir(parents=True, exist_ok=True)
    pre_runs, ft_runs = plan(c, root)
    if _NOTE.value:
        study_file = root / "study.json"
        st = json.loads(study_file.read_text()) if study_file.exists() else {"invocations": []}
        st.setdefault("notes", []).append(_NOTE.value)
        study_file.write_text(json.dumps(st, indent=2))

    if not _ONLY_REPORT.value:
        est = study.estimate_seconds(c)
        print(f"budget {c.budget}: {est['pretrain_runs']} pretraining runs + {est['finetune_runs']} finetuning "
              f"runs; planned wall time ~{est['total_s'] / 60:.0f} min (pretraining {est['pretrain_s'] / 60:.0f}, "
              f"finetuning {est['finetune_s'] / 60:.0f}) on a quiet 2-core machine", flush=True)
        dataset_info(c.datasets, root)            # build missing local datasets once, before the runs
        runner = Runner(root)
        old = {s: signal.signal(s, runner.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.time()
        invocation = {"start": t0, "budget": c.budget, "machine": machine_info(), "phases": []}
        try:
            invocation["phases"].append(runner.run_all(pre_runs, c.max_parallel_pretrain, "pretraining"))
            ready = [r for r in ft_runs if r.needs is not None and (r.needs.parent / "summary.json").exists()]
            if len(ready) < len(ft_runs):
                print(f"  {len(ft_runs) - len(ready)} finetuning runs wait for pretraining runs that did not finish",
                      flush=True)
            if not runner.stop:
                invocation["phases"].append(runner.run_all(ready, 1, "finetuning"))
            if not runner.stop:
                finals = [r for r in final_eval_runs(c, pre_runs, ft_runs) if r.needs.exists()]
                invocation["phases"].append(runner.run_all(finals, c.max_parallel_pretrain,
                                                           f"final evaluation ({c.pretrain.final_eval_episodes} "
                                                           f"episodes per checkpoint)"))
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
    app.run(main)
