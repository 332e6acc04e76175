"""Offline-to-online finetuning on one machine: the platform's main job.

    python -m launch.finetune                                     # CPU-sized default (~10 min on 2 cores)
    python -m launch.finetune --config=configs/finetune_argmax.py # IDQL recipe 1: μ frozen, argmax exploration
    python -m launch.finetune --pretrained=runs/.../checkpoint.pt # skip pretraining
    python -m launch.finetune --resume                            # continue after Ctrl-C / SIGTERM

1. pretrains offline (launch.pretrain) unless --pretrained is given;
2. starts the learner (which hosts the replay server, or with online.replay_in_learner=False
   next to launch/replay_server.py), one evaluator and K actors as child processes
   (each also runs alone: launch/learner.py, replay_server.py, evaluator.py, actor.py);
3. supervises them: an actor that dies is restarted; the run ends after
   `online.total_env_steps` environment steps or on Ctrl-C / SIGTERM, stopping the
   children in order (actors, learner, evaluator, replay) so that learner and replay are
   checkpointed and no process is left behind;
4. forwards every role's log lines to wandb (x axis: environment steps), draws the
   finetuning curve to finetune_curve.png, and prints a summary.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # the supervisor reads replay counters through Reverb (TF); see replay/__init__.py

from absl import app, flags
from ml_collections import config_flags

from errors import ConfigError, UserFacingError

_CONFIG = config_flags.DEFINE_config_file("config", "configs/finetune.py", "Config file (see configs/).")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining checkpoint; skips offline pretraining.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue this run (pretraining, learner and replay) where it stopped.")

ROOT = Path(__file__).resolve().parents[1]


def check_online_config(o) -> None:
    def bad(field, value, why):
        raise ConfigError(f"Invalid setting config.online.{field}={value!r}: {why}.")
    if int(o.num_actors) < 0 or (int(o.num_actors) == 0 and not o.allow_remote):
        bad("num_actors", o.num_actors, "at least 1 local actor is needed unless online.allow_remote=True "
            "lets actors on other machines feed the replay")
    for field in ("envs_per_actor", "num_candidates", "sampler_workers", "prefetch_batches", "total_env_steps",
                  "min_replay_size", "online_batch_size", "offline_batch_size", "publish_interval",
                  "weight_sync_interval", "eval_interval", "eval_episodes", "log_interval"):
        if int(o[field]) < 1:
            bad(field, o[field], "must be at least 1")
    if o.get("actor_mu_dtype", "float32") not in ("float32", "bfloat16"):
        bad("actor_mu_dtype", o.actor_mu_dtype, "choose 'float32' or 'bfloat16'")
    if o.exploration not in ("implicit", "argmax"):
        bad("exploration", o.exploration, "choose 'implicit' or 'argmax'")
    if o.eval_mode not in ("implicit", "argmax"):
        bad("eval_mode", o.eval_mode, "choose 'implicit' or 'argmax'")
    if o.updates_per_env_step <= 0:
        bad("updates_per_env_step", o.updates_per_env_step, "must be positive")
    if o.mu_lr_schedule not in ("continue", "constant"):
        bad("mu_lr_schedule", o.mu_lr_schedule, "choose 'continue' (μ's cosine schedule goes on, IDQL's reference) "
            "or 'constant' (online.mu_lr throughout)")
    if o.mu_lr_horizon < 1.0:
        bad("mu_lr_horizon", o.mu_lr_horizon, "the horizon is a multiple of the pretraining μ steps, at least 1")
    if o.mu_lr < 0:
        bad("mu_lr", o.mu_lr, "must be non-negative")
    if o.min_replay_size > o.replay_max_size:
        bad("min_replay_size", o.min_replay_size, "larger than replay_max_size: learning would never start")


def _die_with_parent():
    """Children get SIGTERM if the supervisor dies, even by SIGKILL: nothing is left behind."""
    os.setsid()   # own process group: a terminal's Ctrl-C reaches only the supervisor, which stops them in order
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One role's process; its output goes to logs/<name>.out."""

    def __init__(self, name: str, args: list[str], run_dir: Path, env: dict | None = None):
        self.name, self.args, self.run_dir = name, args, run_dir
        self.extra_env = env or {}
        self.restarts = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
               **self.extra_env}
        out = open(self.run_dir / "logs" / f"{self.name}.out", "a")
        self.proc = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        if not self.alive():
            return
        self.signal_stop()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop within {timeout:.0f}s; killing it", flush=True)
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        path = self.run_dir / "logs" / f"{self.name}.out"
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:]) if path.exists() else ""


class LogForwarder:
    """Tails every role's JSONL file and sends new rows to the run logger, keyed by env steps."""

    def __init__(self, logs_dir: Path, logger):
        self.logs_dir, self.logger = logs_dir, logger
        self.offsets: dict[Path, int] = {}
        self.evaluations: list[dict] = []
        self.last: dict[str, dict] = {}

    def skip_existing(self) -> None:
        """On resume: rows already sent to wandb count for the curve and summary but are not sent again."""
        logger, self.logger = self.logger, None
        self.poll(0)
        self.logger = logger

    def poll(self, env_steps: int) -> None:
        for path in sorted(self.logs_dir.glob("*.jsonl")):
            with open(path) as f:
                f.seek(self.offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._forward(row, env_steps)

    def _forward(self, row: dict, env_steps: int) -> None:
        role = row.get("role", "unknown")
        self.last[role] = row
        step = int(row.get("env_steps", env_steps))
        if role == "evaluator":
            self.evaluations.append(row)
        prefix = {"evaluator": "eval", "learner": "learner", "actor": "actor"}.get(role, role)
        metrics = {f"{prefix}/{k}": v for k, v in row.items()
                   if isinstance(v, (int, float)) and k not in ("time", "env_steps", "actor_id")}
        if metrics and self.logger is not None:
            self.logger.log(metrics, step)


def draw_curve(evaluations: list[dict], path: Path, title: str) -> None:
    import logging

    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    rows = sorted(evaluations, key=lambda r: r["env_steps"])
    x = [r["env_steps"] for r in rows]
    key = "score_mean" if rows and rows[0].get("score_mean") is not None else "return_mean"
    spread = key.replace("mean", "std")
    y = [r[key] for r in rows]
    s = [r.get(spread, 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, y, marker="o")
    ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("normalised score" if key == "score_mean" else "return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(cfg, pretrained: str | None, resume: bool) -> dict:
    import portpicker

    from data import ensure_default_dataset, load_dataset
    from data.rewards import RewardTransform, reward_transform_for
    from launch import pretrain
    from launch.run_logger import RunLogger, format_duration
    from learner.config_check import check_config
    from replay.sampler import table_stats
    from replay.writer import connect_with_retry

    check_config(cfg)
    check_online_config(cfg.online)
    o = cfg.online
    run_dir = pretrain.run_directory(cfg)
    state_path = run_dir / "finetune_state.json"
    if state_path.exists() and not resume:
        raise UserFacingError(f"{run_dir} already holds a finetuning run. Continue it with --resume, or start "
                              f"a new one with another --config.seed, --config.name or --config.workdir.")
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    # ---- 1. pretraining (or a given checkpoint) ----
    if pretrained or state.get("pretrained"):
        ckpt = Path(pretrained or state["pretrained"])
        if not ckpt.exists():
            raise UserFacingError(f"No pretraining checkpoint at {ckpt}.")
    else:
        pre_cfg = cfg.copy_and_resolve_references()
        pre_dir = run_dir / "pretrain"
        # runs started before pretraining moved up a level kept it in pretrain/<run name>/
        nested = pre_dir / run_dir.name
        if (nested / "checkpoint.pt").exists() and not (pre_dir / "checkpoint.pt").exists():
            pre_dir = nested
        pre_ckpt = pre_dir / "checkpoint.pt"
        print("=== offline pretraining ===", flush=True)
        summary = pretrain.train(pre_cfg, resume=pre_ckpt.exists(), run_dir=pre_dir)
        if summary["stopped"]:
            return {"stopped": True, "run_dir": str(run_dir)}
        ckpt = pre_ckpt
    state["pretrained"] = str(ckpt)
    state_path.write_text(json.dumps(state, indent=2))

    # ---- 2. what every role needs: the config and the dataset's description ----
    ensure_default_dataset(cfg.dataset)
    dataset = load_dataset(cfg.dataset, env_id=cfg.env_id or None)
    transform = reward_transform_for(dataset) if cfg.reward_scale == "auto" else RewardTransform(1.0, 0.0)
    config_json = run_dir / "config.json"
    config_json.write_text(cfg.to_json(indent=2))
    meta = {"obs_dim": dataset.obs_dim, "act_dim": dataset.act_dim, "env_id": dataset.env_id,
            "env_spec_json": dataset.env_spec_json, "reward_transform": transform.to_dict(),
            "ref_min_score": dataset.ref_min_score, "ref_max_score": dataset.ref_max_score,
            "dataset": dataset.name}
    (run_dir / "dataset_meta.json").write_text(json.dumps(meta, indent=2))
    # The run's secret (owner-only; kept on --resume, whose restored transitions carry its tags): the
    # learner tags its weights with it, actors their transitions, and each side takes only tagged ones.
    from replay.auth import KEY_FILE_NAME, create_key_file
    key_file = run_dir / KEY_FILE_NAME
    create_key_file(key_file)

    # The run logger (a slow wandb import) and the signal handlers come before any child starts: a Ctrl-C
    # or SIGTERM from here on is an orderly stop, never a KeyboardInterrupt with children left running.
    logger = RunLogger(run_dir, cfg.to_dict(), cfg.wandb, run_name=run_dir.name,
                       run_id=state.get("wandb_run_id"), step_key="env_steps")
    state["wandb_run_id"] = logger.run_id
    state_path.write_text(json.dumps(state, indent=2))
    forwarder = LogForwarder(run_dir / "logs", logger)
    if resume:
        forwarder.skip_existing()

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    # ---- 3. the processes ----
    # The replay server runs inside the learner (online.replay_in_learner, the default: sampling then skips
    # gRPC) or as a process of its own; either way it restores from and checkpoints to run_dir/replay.
    port = int(o.replay_port) or portpicker.pick_unused_port()
    address_file = run_dir / "logs" / "replay_address"
    stopped_file = run_dir / "logs" / "learner_stopped"
    address_file.unlink(missing_ok=True)
    stopped_file.unlink(missing_ok=True)
    common = [f"--config_json={config_json}", f"--run_dir={run_dir}", f"--key_file={key_file}"]
    serving = [f"--port={port}", f"--checkpoint_dir={run_dir / 'replay'}", f"--address_file={address_file}"] \
        + (["--allow_remote"] if o.allow_remote else [])
    local_address = f"localhost:{port}"
    learner_args = ["launch.learner", *common, f"--pretrained={ckpt}", f"--stopped_file={stopped_file}"] \
        + (["--resume"] if resume else [])
    hosted = bool(o.replay_in_learner)
    # Reverb binds every interface; for a local run a preloaded shim keeps the port on loopback (replay/loopback.py)
    from replay.loopback import is_loopback, listening_addresses, loopback_env
    server_env, open_why = ({}, "online.allow_remote=True") if o.allow_remote else loopback_env(port, run_dir)
    if hosted:
        learner = Child("learner", learner_args + ["--host_replay", *serving, "--serve_after_stop_s=600"], run_dir,
                        env=server_env)
        server = learner
    else:
        server = Child("replay_server", ["launch.replay_server", f"--config_json={config_json}",
                                         f"--obs_dim={dataset.obs_dim}", f"--act_dim={dataset.act_dim}",
                                         *serving], run_dir, env=server_env)
        learner = Child("learner", learner_args + [f"--replay_address={local_address}"], run_dir)
    server.start()
    deadline = time.time() + 300
    while not address_file.exists():
        if not server.alive() or time.time() > deadline:
            server.stop(30)
            raise UserFacingError(f"The replay server did not start ({server.name}):\n{server.tail()}")
        time.sleep(0.2)
    address = address_file.read_text().strip()
    where = listening_addresses(port)
    if where and all(map(is_loopback, where)):
        print(f"replay port {port} listens on loopback only ({', '.join(sorted(set(where)))})", flush=True)
    else:
        print(f"replay port {port} listens on every interface ({open_why or 'the loopback shim did not take'}): "
              "whoever reaches it can read the run's weights and transitions (README, 'Who can reach the "
              "replay port')", flush=True)
    client = connect_with_retry(local_address, 60.0)
    evaluator = Child("evaluator", ["launch.evaluator", *common, f"--replay_address={local_address}",
                                    f"--seed={cfg.seed}"], run_dir)
    actors = [Child(f"actor_{k}", ["launch.actor", *common, f"--replay_address={address}",
                                   f"--actor_id={k}", f"--seed={cfg.seed}"], run_dir)
              for k in range(int(o.num_actors))]
    for child in ([] if hosted else [learner]) + [evaluator, *actors]:
        child.start()

    print(f"=== online finetuning: {o.num_actors} actors x {o.envs_per_actor} envs, exploration "
          f"{o.exploration}, μ {'finetuned' if o.finetune_mu else 'frozen'}, replay {address} ===", flush=True)
    if o.allow_remote:
        print(f"  actors on other machines: python -m launch.actor --replay_address={address} "
              f"--config_json=<copy of {config_json}> --run_dir=<dir> --actor_id=<k>; copy dataset_meta.json "
              f"and {KEY_FILE_NAME} (owner-only, chmod 600) beside the config", flush=True)
    failure = None
    env_steps = start_env_steps = table_stats(client)["inserts"]
    t_online, last_print = time.time(), 0.0
    try:
        # ---- 4. supervise ----
        while stop["signal"] is None:
            time.sleep(1.0)
            for actor in actors:
                if not actor.alive():
                    if actor.restarts >= o.actor_restart_limit:
                        failure = f"{actor.name} died {actor.restarts + 1} times; last output:\n{actor.tail()}"
                        break
                    actor.restarts += 1
                    print(f"  {actor.name} exited (code {actor.proc.returncode}); restarting "
                          f"({actor.restarts}/{o.actor_restart_limit})", flush=True)
                    logger.log({"supervisor/actor_restarts": sum(a.restarts for a in actors)}, env_steps)
                    actor.start()
            for child in dict.fromkeys((server, learner, evaluator)):
                if not child.alive():
                    failure = f"{child.name} exited (code {child.proc.returncode}); last output:\n{child.tail()}"
            if failure:
                break
            env_steps = table_stats(client)["inserts"]
            forwarder.poll(env_steps)
            if time.time() - last_print >= 10:
                last_print = time.time()
                rate = (env_steps - start_env_steps) / max(time.time() - t_online, 1e-9)
                left = (o.total_env_steps - env_steps) / rate if rate > 0 else float("nan")
                lrow = forwarder.last.get("learner", {})
                erow = forwarder.last.get("evaluator", {})
                score = f" | last eval score {erow['score_mean']:.1f}" if erow.get("score_mean") is not None else ""
                print(f"env steps {env_steps:>8}/{o.total_env_steps} | {rate:6.1f} env steps/s | learner step "
                      f"{lrow.get('learner_step', 0):>7} | updates/env step {lrow.get('updates_per_env_step', 0):.2f}"
                      f" | left {format_duration(left) if left == left else '?'}{score}", flush=True)
            if env_steps >= o.total_env_steps:
                break
    finally:
        # ---- 5. stop in order: actors, learner (checkpoint), evaluator (last evaluation), replay (checkpoint) ----
        print("stopping: actors, learner, evaluator, replay server", flush=True)
        for actor in actors:
            actor.stop(30)
        if hosted:
            # SIGTERM once: the learner checkpoints itself and the replay, publishes its last weights and keeps
            # serving them for the evaluator's final evaluation; the second SIGTERM then stops the server.
            learner.signal_stop()
            deadline = time.time() + 180
            while learner.alive() and not stopped_file.exists() and time.time() < deadline:
                time.sleep(0.2)
            evaluator.stop(300)
            env_steps = table_stats(client)["inserts"] if learner.alive() else env_steps
            learner.stop(120)
        else:
            learner.stop(120)
            evaluator.stop(300)
            env_steps = table_stats(client)["inserts"] if server.alive() else env_steps
            server.stop(300)
        forwarder.poll(env_steps)
        for s, h in old.items():
            signal.signal(s, h)

    interrupted = stop["signal"] is not None
    evals = forwarder.evaluations
    if evals:
        draw_curve(evals, run_dir / "finetune_curve.png", f"{cfg.algorithm} finetuning on {dataset.name}")
    learner_steps = forwarder.last.get("learner", {}).get("learner_step", 0)
    summary = {"run_dir": str(run_dir), "stopped": interrupted, "failure": failure,
               "env_steps": env_steps, "learner_steps": learner_steps,
               "wall_time_s": time.time() - t_start,
               "updates_per_env_step": learner_steps / env_steps if env_steps else 0.0,
               "updates_per_env_step_after_warmup": learner_steps / max(1, env_steps - o.min_replay_size),
               "score_after_pretraining": evals[0].get("score_mean") if evals else None,
               "score_final": evals[-1].get("score_mean") if evals else None,
               "evaluations": evals, "actor_restarts": sum(a.restarts for a in actors),
               "wandb_run_id": logger.run_id}
    if summary["score_final"] is not None:
        logger.log({"summary/score_final": summary["score_final"]}, env_steps)
    logger.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if failure:
        raise UserFacingError(f"Finetuning stopped: {failure}\nCheckpoints of learner and replay are in {run_dir}; "
                              f"fix the cause and continue with --resume.")
    print(f"\n=== {cfg.algorithm} finetuning on {dataset.name} {'(interrupted)' if interrupted else ''} ===")
    fmt = lambda v: f"{v:.1f}" if v is not None else "n/a"   # noqa: E731
    print(f"normalised score after pretraining: {fmt(summary['score_after_pretraining'])}   "
          f"at the end: {fmt(summary['score_final'])}  ({o.eval_episodes} episodes, {o.eval_mode})")
    print(f"environment steps: {env_steps}   learner steps: {learner_steps}   updates per env step: "
          f"{summary['updates_per_env_step']:.2f} ({summary['updates_per_env_step_after_warmup']:.2f} after the "
          f"{o.min_replay_size}-step warm-up)   wall time: {format_duration(summary['wall_time_s'])}"
          f"   actor restarts: {summary['actor_restarts']}")
    print(f"curve: {run_dir / 'finetune_curve.png'}   logs: {run_dir / 'logs'}   wandb: {run_dir / 'wandb'}")
    if interrupted:
        print("interrupted: continue with the same flags plus --resume")
    return summary


def main(argv):
    del argv
    try:
        run(_CONFIG.value, _PRETRAINED.value, _RESUME.value)
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
