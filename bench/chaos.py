"""Faults at random points of one finetuning run, and what the run made of them.

    python -m bench.chaos                           # the default job, tiny networks, 3 faults, seed 0
    python -m bench.chaos --seed=3 --faults=learner,actor,learner,evaluator --total_env_steps=8000

Starts `launch.finetune` as a user would, SIGKILLs one process of each named role at seeded random
points of the online phase (fractions of its environment steps, a few seconds apart), lets the run finish, then checks what a user relies on:
the run completed (exit 0); every fault was survived (the summary's restarts match the kills); the
learner's step never goes back in logs/learner.jsonl, nor the environment steps in the curve; no
log row appears twice; no process is left behind; and every transition the actors stepped is in
the replay or lost within the loss window (at least the crash count; at most one checkpoint
interval of inserts per learner crash plus what writers held unconfirmed, 2 x 16 per death; an
actor killed outright counts only to its last log row, so then the replay may hold more than the
actors counted). It prints the figures (faults, restarts, updates and
transitions lost) and exits 1 on any violation. tests/test_finetune.py runs it on a tiny budget.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from learner.log_rows import complete_rows

ROOT = Path(__file__).resolve().parents[1]
PENDING_PER_DEATH = 32          # replay/writer.py: at most 2 x flush_every (16) unconfirmed per writer

TINY = ["--config.num_critic_steps=200", "--config.num_actor_steps=200", "--config.critic_hidden=(64,64)",
        "--config.diffusion.width=32", "--config.diffusion.inner=64", "--config.diffusion.num_blocks=1",
        "--config.checkpoint_interval=200", "--config.eval.interval=200", "--config.eval.episodes=1",
        "--config.eval.num_candidates=(4,)", "--config.eval.modes=('argmax',)",
        "--config.online.num_candidates=4", "--config.online.min_replay_size=300",
        "--config.online.eval_interval=1000", "--config.online.eval_episodes=1",
        "--config.online.log_interval=50", "--config.online.publish_interval=50",
        "--config.online.weight_sync_interval=50", "--config.online.replay_checkpoint_interval_s=5",
        "--config.wandb.mode=disabled"]


def processes_of(run_dir: Path, role: str = "") -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(run_dir) in cmd and f"launch.{role}" in cmd and "launch.finetune" not in cmd:
            found.append(p)
    return found


def rows_of(path: Path) -> list[str]:
    """The raw lines (for the duplicate check); parsed rows come from complete_rows, which skips a
    line cut by a killed writer."""
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def inserted_so_far(logs: Path) -> int:
    """The replay's insert count in the learner's newest log row (0 before the first)."""
    rows = complete_rows(logs / "learner.jsonl")
    return max((int(r.get("env_steps", 0)) for r in rows), default=0)


def run_chaos(workdir: Path, faults: list[str], seed: int, total_env_steps: int, extra_args: list[str],
              env: dict | None = None, say=print, gap_s: float = 4.0, span: tuple[float, float] = (0.15, 0.8)) -> dict:
    """One run with `faults` (role names) killed at random points of its online phase; returns figures
    and violations.

    The faults fall at seeded random fractions (within `span`) of the run's environment steps, read
    from the learner's log, and at least `gap_s` seconds apart (the learner checkpoints every 5 s in
    TINY; a restarted learner gets back first): tied to progress, not to the clock, every fault lands
    before the run ends however fast or loaded the machine is.
    """
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / "supervisor.out"
    args = [sys.executable, "-m", "launch.finetune", f"--config.workdir={workdir}",
            f"--config.online.total_env_steps={total_env_steps}", *extra_args]
    points = sorted(int(rng.uniform(*span) * total_env_steps) for _ in faults)
    with open(out_path, "a") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env or os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    injected: list[dict] = []
    try:
        deadline = time.time() + 900
        run_dir = None
        while run_dir is None or not (run_dir / "logs" / "learner.jsonl").exists():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the run ended or stalled before its online phase:\n{out_path.read_text()[-3000:]}")
            dirs = [d for d in workdir.glob("*/finetune_state.json")]
            run_dir = dirs[0].parent if dirs else None
            time.sleep(0.5)
        t0 = last = time.time()
        for role, point in zip(faults, points):
            while proc.poll() is None and (inserted_so_far(run_dir / "logs") < point or time.time() - last < gap_s):
                time.sleep(0.2)
            victims = processes_of(run_dir, role)
            if proc.poll() is not None or not victims:
                say(f"  no {role} to kill at {time.time() - t0:.0f} s (run over?)")
                continue
            victim = rng.choice(victims)
            victim.send_signal(signal.SIGKILL)
            last = time.time()
            injected.append({"role": role, "at_s": round(last - t0, 1), "at_env_steps": point, "pid": victim.pid})
            say(f"  SIGKILL {role} (pid {victim.pid}) at {last - t0:.1f} s into the online phase, past {point} env steps")
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    return check(run_dir, proc.returncode, injected, out_path)


def max_insert_rate(logs: Path) -> float:
    """An upper bound on the replay's insert rate: the sum over actors of each one's fastest logged
    stepping rate (nothing is inserted that an actor did not step). The learner's rows are averages
    between log rows and miss bursts (a chaos run lost 1,069 in one window against them)."""
    total = 0.0
    for path in logs.glob("actor_*.jsonl"):
        total += max((r["actor_steps_per_second"] for r in complete_rows(path) if "actor_steps_per_second" in r),
                     default=0.0)
    return total


def check(run_dir: Path, returncode: int, injected: list[dict], out_path: Path) -> dict:
    violations = []
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    if returncode != 0 or not summary:
        violations.append(f"the run did not complete (exit {returncode}): {out_path.read_text()[-2000:]}")
    killed = {r: sum(f["role"] == r for f in injected) for r in ("actor", "evaluator", "learner")}
    restarts = {"actor": summary.get("actor_restarts", 0), "evaluator": summary.get("evaluator_restarts", 0),
                "learner": summary.get("learner_restarts", 0)}
    for role in killed:
        if restarts[role] != killed[role]:
            violations.append(f"{role}: {killed[role]} killed, {restarts[role]} restarted")
    logs = run_dir / "logs"
    steps = [r["learner_step"] for r in complete_rows(logs / "learner.jsonl")]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        violations.append("the learner's step goes back (or repeats) in logs/learner.jsonl")
    xs = [r["env_steps"] for r in complete_rows(logs / "evaluator.jsonl")]
    if any(b < a for a, b in zip(xs, xs[1:])):
        violations.append("the curve's environment steps go back in logs/evaluator.jsonl")
    for path in logs.glob("*.jsonl"):
        lines = rows_of(path)
        if len(lines) != len(set(lines)):
            violations.append(f"duplicated rows in {path.name}")
    if processes_of(run_dir):
        violations.append("processes left behind")
    lost = summary.get("lost", {})
    deaths = killed["actor"] + killed["learner"]
    slack = PENDING_PER_DEATH * (deaths + len(list(logs.glob("actor_*.jsonl"))) * killed["learner"])
    not_in_replay = lost.get("actor_transitions_not_in_replay")
    # The loss window: a learner crash loses at most what was inserted since the replay's last checkpoint
    # (the server is down until it is back, so nothing more is accepted), i.e. one checkpoint interval at
    # the fastest insert rate the learner logged, plus what writers held unconfirmed.
    interval = float(json.loads((run_dir / "config.json").read_text())["online"]["replay_checkpoint_interval_s"])
    window = killed["learner"] * max_insert_rate(logs) * (interval + 2.0) + slack   # checked each second, written
    # an actor killed outright is counted to its last log row, so then the replay may hold a few more
    floor = lost.get("transitions", 0) if killed["actor"] == 0 else -float("inf")
    if not_in_replay is not None and not floor <= not_in_replay <= window:
        violations.append(f"{not_in_replay} transitions the actors stepped are not in the replay: not within "
                          f"[{floor}, {window:.0f}] (the crash count; one checkpoint interval of inserts per "
                          f"learner crash + unconfirmed)")
    return {"run_dir": str(run_dir), "faults": injected, "killed": killed, "restarts": restarts,
            "env_steps": summary.get("env_steps"), "learner_steps": summary.get("learner_steps"),
            "updates_lost": lost.get("updates"), "transitions_lost": lost.get("transitions"),
            "actor_transitions": lost.get("actor_transitions"), "not_in_replay": not_in_replay,
            "violations": violations}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", default="actor,evaluator,learner", help="roles to SIGKILL, in order")
    ap.add_argument("--seed", type=int, default=0, help="draws the times and the victims")
    ap.add_argument("--total_env_steps", type=int, default=6000)
    ap.add_argument("--workdir", default=None, help="default: a new temp dir")
    ap.add_argument("overrides", nargs="*", help="more launch.finetune flags (after --)")
    a = ap.parse_args()
    import tempfile

    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="chaos-"))
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    bad = [f for f in faults if f not in ("actor", "evaluator", "learner")]
    if bad:
        sys.exit(f"error: --faults takes actor, evaluator and learner, not {bad}")
    print(f"chaos run in {workdir}: faults {faults}, seed {a.seed}", flush=True)
    r = run_chaos(workdir, faults, a.seed, a.total_env_steps, TINY + a.overrides)
    print(f"faults injected: {len(r['faults'])}")
    print(f"faults survived: {sum(r['restarts'].values())} (restarts: {r['restarts']})")
    print(f"env steps: {r['env_steps']}   learner steps: {r['learner_steps']}")
    print(f"updates lost: {r['updates_lost']}   transitions lost (crash count): {r['transitions_lost']}")
    print(f"transitions not in replay: {r['not_in_replay']} of {r['actor_transitions']} the actors stepped")
    for v in r["violations"]:
        print(f"VIOLATION: {v}")
    print("OK" if not r["violations"] else f"{len(r['violations'])} violations")
    sys.exit(1 if r["violations"] else 0)


if __name__ == "__main__":
    main()
