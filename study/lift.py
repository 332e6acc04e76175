"""Does finetuning make the policy better? The default job on several seeds, with a confidence interval.

    python -m study.lift                                  # configs/finetune.py, seeds 0-4 (~1 h on 2 cores)
    python -m study.lift --seeds=0,1 --runs_dir=/tmp/lift --out=/tmp/lift.md -- --config.online.total_env_steps=4000

For every seed, `launch.finetune` runs the job (pretraining included) into <runs_dir>/; then the
pretrained checkpoint and the last finetuned checkpoint of that seed are both evaluated on the same
`--episodes` seeded episodes (common random numbers, study/evaluate.py) with the job's own
evaluation policy (online.eval_mode, online.num_candidates). The lift of a seed is
final − after pretraining, in normalised score; the report gives its mean with a 95 % bootstrap
interval over seeds (study/stats.py), the worst seed, and every seed's pair. Only the last
checkpoint counts, never the best.

Resumable: a seed whose run finished is not run again, an interrupted one continues (--resume), an
evaluation already written is reused. Arguments after `--` go to launch.finetune (config overrides).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from launch import cli
from study.evaluate import evaluate_checkpoint
from study.paths import repo_relative
from study.stats import paired_difference_ci


ROOT = Path(__file__).resolve().parents[1]


def run_dir_of(runs_dir: Path, seed: int) -> Path | None:
    """A finetuning run directory of `seed` under `runs_dir`, whatever its settings (another lift's runs)."""
    found = sorted(p for p in runs_dir.glob(f"*-s{seed}") if (p / "config.json").exists() or
                   (p / "pretrain").exists())
    return found[0] if found else None


def pretrained_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a finetuning run started from: its own pretraining, or the one it was given."""
    state = run_dir / "finetune_state.json"
    given = json.loads(state.read_text()).get("pretrained") if state.exists() else None
    return Path(given) if given else run_dir / "pretrain" / "checkpoint.pt"


def planned_run_dir(seed: int, runs_dir: Path, config: str, overrides: list[str]) -> Path:
    """The directory launch.finetune gives these flags (launch/run_names.py), found before it starts: the
    same config file, overrides and naming function. A bad config file or field ends here, in one line."""
    from launch.run_names import resumable_directory, saved_finetune_config

    cfg, settings = cli.load_config(config, overrides)
    return resumable_directory(cfg, settings, saved_finetune_config)


def finetune(seed: int, runs_dir: Path, config: str, extra: list[str], pretrained_from: Path | None = None) -> Path:
    overrides = [f"--config.seed={seed}", f"--config.workdir={runs_dir}", "--config.wandb.mode=disabled", *extra]
    planned = planned_run_dir(seed, runs_dir, config, overrides)
    runs_dir.mkdir(parents=True, exist_ok=True)          # after the config's check: a typo leaves no folder
    existing = planned if (planned / "config.json").exists() or (planned / "pretrain").exists() else None
    if existing is not None and (existing / "summary.json").exists():
        print(f"seed {seed}: finished run in {existing}", flush=True)
        return existing
    args = [sys.executable, "-m", "launch.finetune", f"--config={config}", *overrides]
    if existing is not None:
        args.append("--resume")
    elif pretrained_from is not None:
        source = run_dir_of(pretrained_from, seed)
        ckpt = pretrained_checkpoint(source) if source is not None else None
        if ckpt is None or not ckpt.exists():
            raise SystemExit(f"seed {seed}: no pretrained checkpoint of this seed under {pretrained_from}")
        args.append(f"--pretrained={ckpt}")
    print(f"seed {seed}: {' '.join(args[1:])}", flush=True)
    t0 = time.time()
    rc = subprocess.run(args, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    run_dir = planned
    if rc != 0 or not (run_dir / "summary.json").exists():
        raise SystemExit(f"seed {seed}: launch.finetune exited with status {rc}; rerun this command to resume it.")
    print(f"seed {seed}: done in {(time.time() - t0) / 60:.1f} min", flush=True)
    return run_dir


def evaluate_pair(run_dir: Path, episodes: int, mode: str | None = None) -> dict:
    """Scores of the pretrained and the final checkpoint on the same episodes, with the job's policy or,
    with `mode`, that extraction at the job's N (the same checkpoints seen another way)."""
    cfg = json.loads((run_dir / "config.json").read_text())
    own, n = cfg["online"]["eval_mode"], int(cfg["online"]["num_candidates"])
    mode = mode or own
    suffix = "" if mode == own else f"_{mode}"
    out = {}
    for name, ckpt in (("pretrained", pretrained_checkpoint(run_dir)),
                       ("final", run_dir / "learner_checkpoint.pt")):
        path = run_dir / f"lift_eval_{name}{suffix}.json"
        data = json.loads(path.read_text()) if path.exists() else None
        if not data or data.get("episodes") != episodes:
            data = evaluate_checkpoint(str(ckpt), str(path), episodes, [mode], [n],
                                       config_json=str(run_dir / "config.json"))
        out[name] = data["results"][mode][str(n)]
    out["policy"] = f"{mode}, N = {n}"
    return out


def in_run_curve(run_dir: Path) -> dict:
    """The run's own evaluator (the same seeds at every evaluation): its first, peak and last score and,
    on goal-reaching tasks, its success rate over environment steps."""
    curve = [json.loads(line) for line in (run_dir / "logs" / "evaluator.jsonl").read_text().splitlines()
             if line.strip()]
    out = {}
    scores = [r["score_mean"] for r in curve if r.get("score_mean") is not None]
    if scores:
        out["curve"] = {"first": scores[0], "peak": max(scores), "last": scores[-1], "points": len(scores)}
    successes = [(r["env_steps"], r["success_rate"]) for r in curve if r.get("success_rate") is not None]
    if successes:
        out["success_curve"] = successes
    return out


def steps_to(curve: list, threshold: float) -> float | None:
    """Environment steps until the in-run success rate first reaches `threshold` (None: never)."""
    return next((float(steps) for steps, rate in curve if rate >= threshold), None)


def paired_change(rows: list[dict], key: str, scale: float = 1.0):
    """(before, after, (mean, lower, upper)): `key` of each seed's pretrained and final checkpoint, and
    the mean change with its 95 % bootstrap interval over seeds."""
    before = [scale * r["pretrained"][key] for r in rows]
    after = [scale * r["final"][key] for r in rows]
    return before, after, paired_difference_ci(after, before)


def report(rows: list[dict], episodes: int, config: str, extra: list[str], note: str,
           success_threshold: float = 0.8, options: tuple[str, ...] = ()) -> str:
    before, after, (mean, lo, hi) = paired_change(rows, "score_mean")
    lifts = [a - b for a, b in zip(after, before)]
    cmd = " ".join(["python -m study.lift", f"--config={config}",
                    f"--seeds={','.join(str(r['seed']) for r in rows)}", f"--episodes={episodes}", *options,
                    *(["--", *extra] if extra else [])])
    lines = [
        f"# Lift of the finetuning job `{config}`", "",
        f"`{cmd}`", "",
        f"Normalised score of the last checkpoint minus that of the pretrained one, each evaluated on the same "
        f"{episodes} seeded episodes with the job's evaluation policy ({rows[0]['policy']}).", "",
        f"**Lift: {mean:+.1f} (95 % bootstrap interval over {len(rows)} seeds [{lo:+.1f}, {hi:+.1f}]); "
        f"worst seed {min(lifts):+.1f}.**", "",
        "| seed | after pretraining | final | lift | in-run curve: first → peak → last | Q − return after, pretrained → final |",
        "|---:|---:|---:|---:|---:|---:|"]
    for r, lift in zip(rows, lifts):
        cal = " → ".join(f"{r[k]['q_minus_return']:+.1f}" if r[k].get("q_minus_return") is not None else "n/a"
                         for k in ("pretrained", "final"))
        c = r.get("curve")
        curve = f"{c['first']:.1f} → {c['peak']:.1f} → {c['last']:.1f}" if c else "n/a"
        lines.append(f"| {r['seed']} | {r['pretrained']['score_mean']:.1f} ± {r['pretrained']['score_std']:.1f} | "
                     f"{r['final']['score_mean']:.1f} ± {r['final']['score_std']:.1f} | {lift:+.1f} | {curve} | {cal} |")
    if all("success_rate" in r["pretrained"] and "success_rate" in r["final"] for r in rows):
        lines += success_lines(rows, success_threshold)
    if all("termination_rate" in r["pretrained"] and "termination_rate" in r["final"] for r in rows):
        lines += fall_lines(rows, episodes)
    if rows and rows[0].get("also"):
        lines += other_policy_lines(rows, episodes)
    lines += ["", "± is the standard deviation over episodes. The in-run curve is the evaluator's during the run "
              "(its own seeds, the same at every point). The last column is the critic's error on the actions "
              "the policy took (Q minus the discounted return that followed, in the learner's reward scale)."]
    if note:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def other_policy_lines(rows: list[dict], episodes: int) -> list[str]:
    """The same checkpoints and episodes under other evaluation policies (`--also_modes`): what the lift
    would read had the job evaluated another way, so that the choice of evaluation policy is in view."""
    lines = ["", "The same checkpoints and episodes under another evaluation policy:", "",
             "| evaluation policy | after pretraining (mean over seeds) | final | lift, 95 % bootstrap interval | "
             "per seed | falls, before → after |", "|---|---:|---:|---:|---|---:|"]
    for mode in rows[0]["also"]:
        pairs = [r["also"][mode] for r in rows]
        before, after, (mean, lo, hi) = paired_change(pairs, "score_mean")
        falls = " → ".join(str(sum(fall_counts(pairs, k, episodes))) for k in ("pretrained", "final"))
        lines.append(f"| {pairs[0]['policy']} | {sum(before) / len(before):.1f} | {sum(after) / len(after):.1f} | "
                     f"{mean:+.1f} [{lo:+.1f}, {hi:+.1f}] | {', '.join(f'{a - b:+.1f}' for a, b in zip(after, before))} "
                     f"| {falls} of {episodes * len(rows)} |")
    return lines


def fall_counts(rows: list[dict], checkpoint: str, episodes: int) -> list[int]:
    """Per seed, the episodes of `checkpoint` ("pretrained" or "final") that ended in a terminal state."""
    return [round(r[checkpoint].get("termination_rate", 0.0) * episodes) for r in rows]


def fall_lines(rows: list[dict], episodes: int) -> list[str]:
    """Episodes that ended in a terminal state (a fall, on Hopper) before and after: on data where the
    policy that does not fall scores the same before and after, these decide the lift (docs/finetuning.md §7)."""
    counts = {k: fall_counts(rows, k, episodes) for k in ("pretrained", "final")}
    total = episodes * len(rows)
    return ["", f"Episodes that ended in a terminal state (a fall) before the time limit: "
                f"{sum(counts['pretrained'])} of {total} after pretraining, {sum(counts['final'])} of {total} at the "
                f"end (per seed: {', '.join(f'{b} → {a}' for b, a in zip(counts['pretrained'], counts['final']))})."]


def success_lines(rows: list[dict], threshold: float) -> list[str]:
    """Goal-reaching tasks: success before and after with its interval, and how soon the run got there."""
    before, after, (mean, lo, hi) = paired_change(rows, "success_rate", 100.0)
    lines = ["", f"**Success rate: {sum(before) / len(before):.0f} % after pretraining → {sum(after) / len(after):.0f} % "
             f"at the end; change {mean:+.1f} points (95 % bootstrap interval [{lo:+.1f}, {hi:+.1f}]).**", "",
             f"| seed | success after pretraining | final | in-run success: first → last | env steps until the "
             f"in-run success first reached {100 * threshold:.0f} % |", "|---:|---:|---:|---:|---:|"]
    for r, b, a in zip(rows, before, after):
        curve = r.get("success_curve") or []
        reached = steps_to(curve, threshold)
        trend = f"{100 * curve[0][1]:.0f} % → {100 * curve[-1][1]:.0f} %" if curve else "n/a"
        lines.append(f"| {r['seed']} | {b:.0f} % | {a:.0f} % | {trend} | "
                     f"{f'{reached:,.0f}' if reached is not None else 'not reached'} |")
    return lines


def define_flags():
    """Only when run as a program: the module is also imported (tests, other tools)."""
    flags.DEFINE_string("config", "configs/finetune.py", "The finetuning config file (launch.finetune --config).")
    flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds, one finetuning run each.")
    flags.DEFINE_string("runs_dir", "runs/lift", "Where the runs go (config.workdir).")
    flags.DEFINE_integer("episodes", 50, "Evaluation episodes per checkpoint (common seeds). 50: a rare fall "
                         "(~2-5 % of Hopper episodes, ~40 points each) moved a 20-episode mean by 2-5 points.")
    flags.DEFINE_string("out", "docs/lift.md", "The report (markdown); its data beside it as .json.")
    flags.DEFINE_string("note", "", "A remark printed in the report (e.g. other load on the machine).")
    flags.DEFINE_float("success_threshold", 0.8, "Goal-reaching tasks: the in-run success rate whose first "
                       "crossing the report times (environment steps).")
    flags.DEFINE_enum("policy", None, ["implicit", "argmax"], "Judge the lift by this extraction (at the job's N) "
                      "instead of the config's online.eval_mode (training does not depend on it: the evaluator only "
                      "reads the learner's weights).")
    flags.DEFINE_list("also_modes", [], "Also evaluate both checkpoints with these extractions (implicit, argmax) at "
                      "the job's N, on the same episodes: the report shows their lifts beside the job's own.")
    flags.DEFINE_string("pretrained_from", None, "Another lift's runs_dir: start each seed's online phase from that "
                        "seed's pretrained checkpoint (an online setting compared on the same pretrained critics "
                        "and μ; the pretraining settings must match).")


def main(argv):
    extra = list(argv[1:])
    runs_dir = repo_relative(flags.FLAGS.runs_dir)     # records name runs from the repo root
    rows = []
    for seed in (int(s) for s in flags.FLAGS.seeds):
        run_dir = finetune(seed, runs_dir, flags.FLAGS.config, extra,
                           repo_relative(flags.FLAGS.pretrained_from) if flags.FLAGS.pretrained_from else None)
        rows.append({"seed": seed, "run_dir": str(run_dir),
                     **evaluate_pair(run_dir, flags.FLAGS.episodes, flags.FLAGS.policy), **in_run_curve(run_dir)})
        if flags.FLAGS.also_modes:
            rows[-1]["also"] = {m: evaluate_pair(run_dir, flags.FLAGS.episodes, m) for m in flags.FLAGS.also_modes}
        print(f"seed {seed}: {rows[-1]['pretrained']['score_mean']:.1f} -> {rows[-1]['final']['score_mean']:.1f}",
              flush=True)
    own_runs = flags.FLAGS.runs_dir != flags.FLAGS["runs_dir"].default   # a rerun of the printed command reuses them
    options = ([f"--policy={flags.FLAGS.policy}"] if flags.FLAGS.policy else []) + \
        ([f"--also_modes={','.join(flags.FLAGS.also_modes)}"] if flags.FLAGS.also_modes else []) + \
        ([f"--runs_dir={runs_dir}"] if own_runs else [])
    text = report(rows, flags.FLAGS.episodes, flags.FLAGS.config, extra, flags.FLAGS.note,
                  flags.FLAGS.success_threshold, tuple(options))
    out = Path(flags.FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    dataset = json.loads((Path(rows[0]["run_dir"]) / "config.json").read_text())["dataset"] if rows else None
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "config": flags.FLAGS.config, "extra": extra,
                                                    "dataset": dataset, "episodes": flags.FLAGS.episodes}, indent=2))
    print(text)


if __name__ == "__main__":
    define_flags()
    cli.run(main)          # a bad --config file or field (here or after --): one line, exit 2
