"""Offline-to-online finetuning on one machine: the platform's main job.

    python -m launch.finetune                                       # CPU-sized default: Hopper medium-replay,
                                                                    # IDQL recipe 1 (μ frozen, argmax exploration)
    python -m launch.finetune --config=configs/finetune_implicit.py # IDQL recipe 2: μ finetuned, implicit exploration
    python -m launch.finetune --pretrained=runs/.../checkpoint.pt # skip pretraining
    python -m launch.finetune --resume                            # continue after Ctrl-C / SIGTERM
    python -m launch.finetune --launcher=ray [--ray_address=auto] # the roles placed by Ray (launch/ray_roles.py)

1. pretrains offline (launch.pretrain) unless --pretrained is given;
2. starts the learner (which hosts the replay server, or with online.replay_in_learner=False
   next to launch/replay_server.py), one evaluator and K actors as child processes
   (each also runs alone: launch/learner.py, replay_server.py, evaluator.py, actor.py);
3. supervises them (launch/supervision.py): an actor or the evaluator that dies is restarted (with
   --launcher=ray, Ray restarts the actors itself and the supervisor counts their lives); a
   learner that dies is restarted from its last checkpoint, the replay's too when it hosts it
   (`online.replay_checkpoint_interval_s` is the loss window; summary.json says what was lost);
   a child that fails during start-up ends the run with its own error. The run ends after
   `online.total_env_steps` environment steps (exit 0) or on Ctrl-C / SIGTERM (exit 130,
   "interrupted, resumable"), stopping the children in order (actors, learner, evaluator,
   replay) so that learner and replay are checkpointed and no process is left behind; if
   the supervisor itself is killed, learner and replay order themselves (launch/orphan_stop.py);
4. forwards every role's log lines to wandb (x axis: environment steps; the evaluator's under
   eval/<weighting>/<mode>_N<n>/...), draws the finetuning curve to finetune_curve.png, and prints
   a summary with one `wandb sync` command for the job's offline runs: its pretraining and its
   online phase, two wandb runs in one group named after the job.

The run directory is named as launch.pretrain's (launch/run_names.py: a hash of the settings the
command line changes, kept in overrides.json); --run_dir names it outright (the study does).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # the supervisor reads replay counters through Reverb (TF); see replay/__init__.py

from absl import flags

from errors import EXIT_INTERRUPTED, UserFacingError
from launch import cli
from launch.supervision import (Child, InsertPoll, LogForwarder, LostWork, actor_transitions, checkpoints_note,
                                last_learner_step, learner_started, restored_figures)

_CONFIG = cli.define_config_file("configs/finetune.py")      # a bad field or file: one line, exit 2
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining checkpoint; skips offline pretraining.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue this run (pretraining, learner and replay) where it stopped.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "ray"], "local: the roles are child processes of "
                              "this one; ray: Ray places them on a cluster (launch/ray_roles.py).")
_RAY_ADDRESS = flags.DEFINE_string("ray_address", None, "With --launcher=ray: join this cluster ('auto' or "
                                   "HOST:PORT); without it a local cluster on 127.0.0.1 is started.")
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory (default: <workdir>/<name>-<algorithm>-<dataset>"
                               "[-<hash of the settings the command line changes>]-s<seed>, launch/run_names.py).")

ROOT = Path(__file__).resolve().parents[1]


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


def check_checkpoint_file(path: str, flag: str = "--pretrained") -> None:
    """A checkpoint given by flag is a file torch.save wrote (a zip archive), checked before any work.

    Why: a text file given as --pretrained reached the learner process, where torch's pickle reader
    failed with `KeyError: 101` (the first character's code) in a start-up failure of many lines."""
    import zipfile

    p = Path(path)
    if not p.exists():
        raise UserFacingError(f"No pretraining checkpoint at {p} ({flag}).")
    if p.is_dir():
        what = f"a directory; the checkpoint of a pretraining run is {p / 'checkpoint.pt'}"
    elif zipfile.is_zipfile(p):
        return
    elif p.stat().st_size == 0:
        what = "an empty file"
    else:
        head = p.open("rb").read(4096)
        try:
            head.decode("utf-8")
            what = "a text file"
        except UnicodeDecodeError:
            what = "a file of another kind"
    raise UserFacingError(f"{flag}={p} is not a checkpoint written by launch.pretrain (a torch zip file): "
                          f"it is {what}.")


def run(cfg, pretrained: str | None, resume: bool, launcher: str = "local", ray_address: str | None = None,
        run_dir: Path | None = None, settings=None) -> dict:
    """One finetuning job in `run_dir` (default: launch/run_names.py names it from `cfg` and `settings`,
    what the command line changed in the config file)."""
    import portpicker

    from data import ensure_default_dataset, load_dataset
    from data.rewards import apply_config
    from launch import pretrain
    from launch.run_logger import RunLogger, format_duration, sync_command
    from launch.run_names import eval_tag, extraction_weighting, weighting_label
    from learner.config_check import check_config
    from replay.sampler import table_stats
    from replay.writer import connect_with_retry

    check_config(cfg)          # online.* included
    if pretrained:
        check_checkpoint_file(pretrained)
    o = cfg.online
    if launcher == "ray" and ray_address:
        from launch.ray_roles import check_cluster_address
        check_cluster_address(ray_address)       # before pretraining: a wrong address costs seconds, not minutes
    if launcher == "ray" and ray_address and not o.allow_remote:
        o.allow_remote = True   # actors on other nodes must reach the replay: the cluster's network is private
        print("ray: online.allow_remote=True (actors on other nodes connect to the replay port)", flush=True)
    if run_dir is None:
        from launch.run_names import resumable_directory, saved_finetune_config
        run_dir = resumable_directory(cfg, settings, saved_finetune_config) if resume \
            else pretrain.run_directory(cfg, settings)
    run_dir = Path(run_dir)
    state_path = run_dir / "finetune_state.json"
    if state_path.exists() and not resume:
        raise UserFacingError(f"{run_dir} already holds a finetuning run. Continue it with --resume, or start "
                              f"a new one with another --config.seed, --config.name or --config.workdir.")
    if settings is not None:
        settings.write(run_dir)         # overrides.json: what the command line changed, named by the hash
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
        summary = pretrain.train(pre_cfg, resume=pre_ckpt.exists(), run_dir=pre_dir, job=run_dir.name)
        if summary["stopped"]:
            return {"stopped": True, "run_dir": str(run_dir)}
        ckpt = pre_ckpt
    state["pretrained"] = str(ckpt)
    state_path.write_text(json.dumps(state, indent=2))
    if launcher == "ray":   # Ray's start-up (~4 s) overlaps the dataset's, wandb's and the learner's own
        from launch.ray_roles import start_ray_in_background
        per_actor = float(o.get("ray_actor_cpus", 1.0))
        ray_start = start_ray_in_background(
            ray_address, num_cpus=max(os.cpu_count() or 1, 1 + int(o.num_actors) * int(per_actor)))

    # ---- 2. what every role needs: the config and the dataset's description ----
    ensure_default_dataset(cfg.dataset)
    dataset = load_dataset(cfg.dataset, env_id=cfg.env_id or None, action_bounds=cfg.get("action_bounds", ""))
    transform = apply_config(dataset, cfg.get("domain", ""), cfg.get("reference_scores", ""), cfg.reward_scale)
    config_json = run_dir / "config.json"
    config_json.write_text(cfg.to_json(indent=2))
    from data.dataset import dataset_meta
    meta = dataset_meta(dataset, transform)     # sizes, env, rewards, references, action bounds (data/bounds.py)
    (run_dir / "dataset_meta.json").write_text(json.dumps(meta, indent=2))
    # The run's secret (owner-only; kept on --resume, whose restored transitions carry its tags): the
    # learner tags its weights with it, actors their transitions, and each side takes only tagged ones.
    from replay.auth import KEY_FILE_NAME, create_key_file
    key_file = run_dir / KEY_FILE_NAME
    create_key_file(key_file)

    # The run logger (a slow wandb import) and the signal handlers come before any child starts: a Ctrl-C
    # or SIGTERM from here on is an orderly stop, never a KeyboardInterrupt with children left running.
    logger = RunLogger(run_dir, cfg.to_dict(), cfg.wandb, run_name=run_dir.name,
                       run_id=state.get("wandb_run_id"), step_key="env_steps",
                       group=run_dir.name, job_type="finetune")     # one group with its pretraining
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
    if launcher == "ray":
        from launch.ray_roles import RayChild

        def make_child(name, args, env=None):
            if name in ("learner", "replay_server"):   # the driver's node: its own children, started while
                return Child(name, args, run_dir, env)  # Ray comes up (their seat is reserved below)
            role = name.split("_")[0]
            return RayChild(name, args, run_dir, env, num_cpus=per_actor if role == "actor" else 0.0,
                            ray_restarts=int(o.actor_restart_limit) if role == "actor" else 0)
    else:
        def make_child(name, args, env=None):
            return Child(name, args, run_dir, env)
    # Reverb binds every interface; for a local run a preloaded shim keeps the port on loopback (replay/loopback.py)
    from replay.loopback import is_loopback, listening_addresses, loopback_env
    server_env, open_why = ({}, "online.allow_remote=True") if o.allow_remote else loopback_env(port, run_dir)
    if hosted:
        learner = make_child("learner", learner_args + ["--host_replay", *serving, "--serve_after_stop_s=600"],
                             env=server_env)
        server = learner
    else:
        server = make_child("replay_server", ["launch.replay_server", f"--config_json={config_json}",
                                              f"--obs_dim={dataset.obs_dim}", f"--act_dim={dataset.act_dim}",
                                              *serving], env=server_env)
        learner = make_child("learner", learner_args + [f"--replay_address={local_address}"])

    def wait_for_server(what: str) -> str:
        """The server's address once it is up; a server that exits first ends the run with its own words."""
        deadline = time.time() + 300
        while not address_file.exists():
            if not server.alive() or time.time() > deadline:
                why = server.exit_reason() if not server.alive() else f"{server.name} did not start within 300 s"
                server.stop(30)
                raise UserFacingError(f"{what}: {why}.\nIts last output ({server.out_path}):\n{server.tail()}")
            time.sleep(0.2)
        return address_file.read_text().strip()

    def connect_while_alive(what: str):
        """A client of the local server: given up at once, with the cause, if the server's process ends."""
        from replay.writer import ReplayUnavailableError
        deadline = time.time() + 60
        while True:
            try:
                return connect_with_retry(local_address, 5.0, log=lambda *_: None)
            except ReplayUnavailableError:
                if not server.alive():
                    raise UserFacingError(f"{what}: {server.exit_reason()}.\nIts last output "
                                          f"({server.out_path}):\n{server.tail()}") from None
                if time.time() > deadline:
                    raise

    server.start()
    address = wait_for_server("The replay server did not start")
    where = listening_addresses(port)
    if where and all(map(is_loopback, where)):
        print(f"replay port {port} listens on loopback only ({', '.join(sorted(set(where)))})", flush=True)
    else:
        print(f"replay port {port} listens on every interface ({open_why or 'the loopback shim did not take'}): "
              "whoever reaches it can read the run's weights and transitions (README, 'Who can reach the "
              "replay port')", flush=True)
    client = connect_while_alive("The replay server stopped during start-up")
    if launcher == "ray":   # the evaluator and the actors are Ray's to place: Ray must be up now
        from launch.pretrain import pick_device
        from launch.ray_roles import reserve_learner_seat
        try:
            ray_start.wait()
        except Exception as e:
            server.stop(30)
            where = f"joining the cluster at {ray_address}" if ray_address else "starting a local cluster"
            raise UserFacingError(f"Ray failed while {where}: {type(e).__name__}: {e}") from e
        for signum in old:   # Ray's core worker put its own SIGTERM handler (which exits at once) over ours
            signal.signal(signum, on_signal)
        reserve_learner_seat(1.0, 1.0 if pick_device(cfg.device).type == "cuda" else 0.0)
    env_steps = start_env_steps = table_stats(client)["inserts"]
    if resume:   # evaluations past what the replay restored scored a stretch that is gone: set aside, not redrawn
        from learner.log_rows import set_aside
        forwarder.rewound("evaluator", set_aside(run_dir / "logs" / "evaluator.jsonl",
                                                 lambda r: r.get("env_steps", 0) > start_env_steps))
    evaluator = make_child("evaluator", ["launch.evaluator", *common, f"--replay_address={address}",
                                         f"--seed={cfg.seed}"])
    actors = [make_child(f"actor_{k}", ["launch.actor", *common, f"--replay_address={address}",
                                        f"--actor_id={k}", f"--seed={cfg.seed}"])
              for k in range(int(o.num_actors))]
    for child in ([] if hosted else [learner]) + [evaluator, *actors]:
        child.start()

    print(f"=== online finetuning: {o.num_actors} actors x {o.envs_per_actor} envs, exploration "
          f"{o.exploration} with {weighting_label(cfg, extraction_weighting(cfg, o.exploration_weighting))}, "
          f"evaluation {eval_tag(cfg, o.eval_mode, o.num_candidates)}, "
          f"μ {'finetuned' if o.finetune_mu else 'frozen'}, replay {address} ===", flush=True)
    if o.allow_remote:
        print(f"  actors on other machines: python -m launch.actor --replay_address={address} "
              f"--config_json=<copy of {config_json}> --run_dir=<dir> --actor_id=<k>; copy dataset_meta.json "
              f"and {KEY_FILE_NAME} (owner-only, chmod 600) beside the config", flush=True)
    failure = None
    losses: list[LostWork] = []
    limits = {"actor": int(o.actor_restart_limit), "evaluator": int(o.get("evaluator_restart_limit", 5)),
              "learner": int(o.get("learner_restart_limit", 3))}
    t_online, last_print = time.time(), 0.0

    def log_restarts(kind: str) -> None:
        """The run's restarts of actors (or of the evaluator) so far, to wandb."""
        logger.log({f"supervisor/{kind}_restarts": sum(c.restarts for c in (actors if kind == "actor"
                                                                               else [evaluator]))}, env_steps)

    def restart_learner() -> LostWork:
        """Start a dead learner again from its last checkpoint (with the replay's, when it hosted it) and
        count what the crash cost; the evaluator, which scored the lost stretch too, restarts behind it."""
        nonlocal client
        seen_step, seen_inserts = last_learner_step(run_dir / "logs"), env_steps
        if hosted:
            evaluator.stop(60)          # its rows past the restored replay go to logs/lost/ while it is down
            address_file.unlink(missing_ok=True)
        learner.start(["--resume", f"--incarnation={learner.restarts}"])
        if hosted:
            wait_for_server(f"The learner did not come back after restart {learner.restarts}")
            client = connect_while_alive(f"The learner stopped during restart {learner.restarts}")
        deadline = time.time() + 300
        while True:     # it says where it resumed once it has loaded its checkpoint
            try:
                step, inserts = restored_figures(learner.output())
                break
            except ValueError:
                if not learner.alive() or time.time() > deadline:
                    raise UserFacingError(f"The learner did not come back after restart {learner.restarts}: "
                                          f"{learner.exit_reason()}.\n{learner.tail()}") from None
                time.sleep(0.2)
        lost = LostWork(restored_step=step, updates=max(0, seen_step - step), restored_inserts=inserts,
                        transitions=max(0, seen_inserts - inserts) if inserts is not None else 0)
        forwarder.rewound("learner", [])
        if hosted:
            from learner.log_rows import set_aside
            moved = set_aside(run_dir / "logs" / "evaluator.jsonl", lambda r: r.get("env_steps", 0) > inserts)
            forwarder.rewound("evaluator", moved)
            evaluator.start()
        return lost

    inserts_poll = InsertPoll(lambda: table_stats(client)["inserts"], lambda: server.alive(),
                              say=lambda m: print(m, flush=True))
    try:
        # ---- 4. supervise: actors and evaluator are restarted as they die, the learner from its checkpoint ----
        while stop["signal"] is None:
            time.sleep(1.0)
            for child in (*actors, evaluator):
                kind = "evaluator" if child is evaluator else "actor"
                for why in child.lives_restarted():      # restarted by Ray itself (launch/ray_roles.py)
                    print(f"  {why}; Ray restarted it ({child.restarts}/{limits[kind]})", flush=True)
                    log_restarts(kind)
                if child.alive():
                    continue
                if child.restarts >= limits[kind] or child.restarts_itself:
                    failure = f"{child.exit_reason()} ({child.restarts + 1} deaths, {limits[kind]} restarts allowed); " \
                              f"last output:\n{child.tail()}"
                    break
                child.restarts += 1
                print(f"  {child.exit_reason()}; restarting ({child.restarts}/{limits[kind]})", flush=True)
                log_restarts(kind)
                child.start()
            if not failure and not hosted and not server.alive():
                failure = f"{server.exit_reason()}; last output:\n{server.tail()}"
            if not failure and not learner.alive():
                if learner.restarts == 0 and not learner_started(learner.output()):   # e.g. a bad checkpoint
                    failure = f"{learner.exit_reason()} during start-up; last output:\n{learner.tail()}"
                elif learner.restarts >= limits["learner"]:
                    failure = f"{learner.exit_reason()} ({learner.restarts + 1} deaths, {limits['learner']} restarts " \
                              f"allowed); last output:\n{learner.tail()}"
                else:
                    learner.restarts += 1
                    print(f"  {learner.exit_reason()}; restarting it from its last checkpoint "
                          f"({learner.restarts}/{limits['learner']})", flush=True)
                    lost = restart_learner()
                    losses.append(lost)
                    print(f"  learner back at step {lost.restored_step}: lost {lost.updates} updates and "
                          f"{lost.transitions} transitions (at least; summary.json)", flush=True)
                    logger.log({"supervisor/learner_restarts": learner.restarts,
                                "supervisor/lost_updates": sum(x.updates for x in losses),
                                "supervisor/lost_transitions": sum(x.transitions for x in losses)}, env_steps)
            if failure:
                break
            polled = inserts_poll.read()     # None: the server is down (a dying learner) or missed a poll
            if polled is None:
                continue
            env_steps = polled
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
        draw_curve(evals, run_dir / "finetune_curve.png", f"{cfg.algorithm} finetuning on {dataset.name}\n"
                   f"evaluation {eval_tag(cfg, o.eval_mode, o.num_candidates)}")
    learner_steps = forwarder.last.get("learner", {}).get("learner_step", 0)
    summary = {"run_dir": str(run_dir), "stopped": interrupted, "failure": failure,
               "env_steps": env_steps, "learner_steps": learner_steps,
               "wall_time_s": time.time() - t_start,
               "updates_per_env_step": learner_steps / env_steps if env_steps else 0.0,
               "updates_per_env_step_after_warmup": learner_steps / max(1, env_steps - o.min_replay_size),
               "score_after_pretraining": evals[0].get("score_mean") if evals else None,
               "score_final": evals[-1].get("score_mean") if evals else None,
               "evaluations": evals, "actor_restarts": sum(a.restarts for a in actors),
               "evaluator_restarts": evaluator.restarts, "learner_restarts": learner.restarts,
               # what learner crashes cost (launch/supervision.py LostWork: lower bounds, see there)
               "lost": {"updates": sum(x.updates for x in losses),
                        "transitions": sum(x.transitions for x in losses),
                        "crashes": [x.to_dict() for x in losses],
                        # every transition the local actors stepped minus those the replay holds or held
                        "actor_transitions": actor_transitions(run_dir / "logs"),
                        "actor_transitions_not_in_replay": actor_transitions(run_dir / "logs") - env_steps
                        if not o.allow_remote else None},
               "wandb_run_id": logger.run_id}
    if summary["score_final"] is not None:
        logger.log({"summary/score_final": summary["score_final"]}, env_steps)
    logger.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if failure:
        raise UserFacingError(f"Finetuning stopped: {failure}\n{checkpoints_note(run_dir)}")
    print(f"\n=== {cfg.algorithm} finetuning on {dataset.name} {'(interrupted)' if interrupted else ''} ===")
    fmt = lambda v: f"{v:.1f}" if v is not None else "n/a"   # noqa: E731
    print(f"normalised score after pretraining: {fmt(summary['score_after_pretraining'])}   "
          f"at the end: {fmt(summary['score_final'])}  ({o.eval_episodes} episodes, "
          f"{eval_tag(cfg, o.eval_mode, o.num_candidates)})")
    print(f"environment steps: {env_steps}   learner steps: {learner_steps}   updates per env step: "
          f"{summary['updates_per_env_step']:.2f} ({summary['updates_per_env_step_after_warmup']:.2f} after the "
          f"{o.min_replay_size}-step warm-up)   wall time: {format_duration(summary['wall_time_s'])}"
          f"   restarts: actors {summary['actor_restarts']}, evaluator {evaluator.restarts}, learner "
          f"{learner.restarts}" + (f" (lost {summary['lost']['updates']} updates, {summary['lost']['transitions']} "
                                   f"transitions)" if losses else ""))
    print(f"curve: {run_dir / 'finetune_curve.png'}   logs: {run_dir / 'logs'}   wandb: {run_dir / 'wandb'}")
    own_pretraining = [ckpt.parent] if run_dir in ckpt.parents else []   # not a checkpoint given by --pretrained
    sync = sync_command([*own_pretraining, run_dir])
    if sync:
        print(f"upload this job's offline wandb runs (pretraining and finetuning, group {run_dir.name}): {sync}")
    return summary


def main(argv):
    del argv
    try:
        summary = run(_CONFIG.value, _PRETRAINED.value, _RESUME.value, _LAUNCHER.value, _RAY_ADDRESS.value,
                      run_dir=_RUN_DIR.value or None, settings=cli.settings_from_flags())
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        if _LAUNCHER.value == "ray":
            from launch.ray_roles import stop_ray
            stop_ray()
    if summary.get("stopped"):   # Ctrl-C / SIGTERM: checkpointed; a status of its own, not 0 and not an error's
        print("interrupted, resumable: continue with the same flags plus --resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    cli.run(main)
