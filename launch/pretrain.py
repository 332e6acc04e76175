"""Offline pretraining: Q, V and the diffusion behaviour model μ on a D4RL-style dataset.

    python -m launch.pretrain                                   # CPU-sized default, local Hopper data
    python -m launch.pretrain --config=configs/locomotion.py --config.dataset=mujoco/hopper/medium-v0
    python -m launch.pretrain --config=configs/quickstart.py --resume   # continue the same run

Evaluates every `eval.interval` steps for each extraction mode and N, checkpoints
every `checkpoint_interval` steps and on Ctrl-C / SIGTERM, logs to wandb
(offline unless an API key is configured) and to <run dir>/metrics.jsonl, under keys that
name the weighting (`eval/align_eta-1/argmax_N16/score_mean`). The run directory is
<workdir>/<name>-<algorithm>-<dataset>-s<seed>, with a hash of the settings the command line
changes before -s<seed> when it changes any (kept in overrides.json): launch/run_names.py.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from absl import flags

import torch

from errors import UserFacingError
from launch import cli



def define_flags():
    """Only when run as a program: launch.finetune imports this module and has flags of its own."""
    cli.define_config_file("configs/quickstart.py")
    flags.DEFINE_bool("resume", False, "Continue the run in the run directory from its last checkpoint.")
    flags.DEFINE_string("run_dir", None, "Run directory (default: <workdir>/<name>-<algorithm>-<dataset>"
                        "[-<hash of the settings the command line changes>]-s<seed>, launch/run_names.py).")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserFacingError(f"config.device={name!r} but this machine has no CUDA device; use 'auto' or 'cpu'.")
    return torch.device(name)


def run_directory(cfg, settings=None) -> Path:
    """<workdir>/<name>-<algorithm>-<dataset slug>[-<settings hash>]-s<seed> (launch/run_names.py)."""
    from launch.run_names import run_directory as named

    return named(cfg, settings)


def saved_config(run_dir: Path) -> dict | None:
    """The flat config a pretraining run in `run_dir` saved in its checkpoint, or None (no run there)."""
    from launch.run_names import flat
    from learner.checkpoint import load_checkpoint

    path = Path(run_dir) / "checkpoint.pt"
    return flat(json.loads(load_checkpoint(path)["config"])) if path.exists() else None


def load_offline_data(cfg):
    """The dataset, its reward transform and its environment factory, checked against each other."""
    from actor.envs import make_env
    from data import ensure_default_dataset, load_dataset
    from data.rewards import apply_config

    ensure_default_dataset(cfg.dataset)          # builds a registered local dataset on first use
    dataset = load_dataset(cfg.dataset, env_id=cfg.env_id or None,   # also checks it against its env
                           action_bounds=cfg.get("action_bounds", ""))  # actions mapped into [-1, 1] (data/bounds.py)
    if not dataset.action_bounds.is_identity:
        print(f"dataset {dataset.name}: actions mapped from {dataset.action_bounds.describe()} into the learner's "
              f"[-1, 1], and back where they meet the environment", flush=True)

    def env_fn(seed: int):
        return make_env(dataset, seed=seed)

    # config.domain / config.reference_scores over the guesses; the console says which were given
    transform = apply_config(dataset, cfg.get("domain", ""), cfg.get("reference_scores", ""), cfg.reward_scale)
    return dataset, transform, env_fn


def evaluate_all(policy_for, cfg, dataset, env_fn, device, step: int, reward_transform=None) -> dict[str, float]:
    """One evaluation per (mode, N): raw return, normalised score, alignment gap and, given the
    reward transform, the critic's calibration on the actions taken (Q − the return that followed).

    `policy_for(mode, N)` builds the acting policy (networks.factory.evaluation_policies over the
    learner's own networks, or over networks rebuilt in the evaluation process, launch/eval_worker.py).
    """
    from actor.evaluator import evaluate
    from data.goals import scores_by_success
    from launch.run_names import eval_tag

    out: dict[str, float] = {}
    by_success = scores_by_success(dataset.domain)      # AntMaze: score = success rate in % (data/goals.py)
    has_ref = dataset.ref_min_score is not None and dataset.ref_max_score is not None
    combos = [("gaussian", 1)] if cfg.algorithm == "iql" else [
        (mode, int(n)) for mode in cfg.eval.modes for n in cfg.eval.num_candidates]
    for mode, n in combos:
        result = evaluate(policy_for(mode, n), env_fn, cfg.eval.episodes, seed=cfg.seed + cfg.eval.seed_offset,
                          device=device, max_episode_steps=cfg.eval.max_episode_steps,
                          normalize=dataset.normalized_score if has_ref and not by_success else None,
                          reward_transform=reward_transform, discount=cfg.discount if reward_transform else None,
                          score_by_success=by_success)
        tag = f"eval/{eval_tag(cfg, mode, n)}"      # names the weighting: runs of two weightings never share a key
        for key, value in result.summary().items():
            out[f"{tag}/{key}"] = value
    return out


def print_eval(metrics: dict[str, float], step: int) -> None:
    tags = sorted({k.rsplit("/", 1)[0] for k in metrics})
    for tag in tags:
        score = metrics.get(f"{tag}/score_mean")
        score_txt = f"score {score:6.1f} ± {metrics[f'{tag}/score_std']:5.1f} | " if score is not None else ""
        success = metrics.get(f"{tag}/success_rate")
        score_txt += f"success {100 * success:5.1f} % | " if success is not None else ""
        print(f"  [eval @ {step}] {tag.removeprefix('eval/'):>24}: {score_txt}"
              f"return {metrics[f'{tag}/return_mean']:8.1f} ± {metrics[f'{tag}/return_std']:6.1f} | "
              f"alignment gap E_π[Q]−V {metrics[f'{tag}/alignment_gap']:+.3f}"
              + (f" | Q of actions taken − return after them {metrics[f'{tag}/q_minus_return']:+.1f}"
                 if f"{tag}/q_minus_return" in metrics else ""), flush=True)


def train(cfg, resume: bool, run_dir: Path | None = None, settings=None, job: str | None = None) -> dict:
    """Pretrain into `run_dir` (default: run_directory(cfg, settings), i.e. <workdir>/<name>-<algorithm>-<data>
    [-<hash of `settings`, what the command line changed>]-s<seed>). `job`: the finetuning job this
    pretraining belongs to (its wandb group, so both phases show together)."""
    from learner.agent import Learner
    from learner.calibration import DatasetCalibration, describe
    from learner.checkpoint import (check_same_architecture, load_checkpoint, restore_rng_state, rng_state,
                                    save_checkpoint)
    from learner.config_check import check_config
    from learner.fast_path import PretrainStep, set_matmul_precision
    from networks.linear import set_cpu_matmul
    from launch.eval_worker import BackgroundEvaluation, evaluates_in_background
    from networks.factory import evaluation_policies
    from learner.nonfinite import NonFiniteWatch
    from learner.offline_buffer import OfflineBuffer
    from launch.run_logger import RunLogger, format_duration, sync_command
    from launch.run_names import weighting_label
    from data.dataset import dataset_meta
    from learner.behavior_worker import BehaviorWorker, is_sync_step, resolve_processes
    from errors import TrainingDiverged

    check_config(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    # "two": μ trains in a second process (learner/behavior_worker.py); one torch thread each
    two_processes = resolve_processes(cfg, device) == "two"
    if two_processes and not cfg.num_threads:
        torch.set_num_threads(1)
    set_matmul_precision(cfg.matmul_precision, device)
    set_cpu_matmul(cfg.cpu_matmul)
    if run_dir is None:
        from launch.run_names import resumable_directory
        run_dir = resumable_directory(cfg, settings, saved_config) if resume else run_directory(cfg, settings)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise UserFacingError(f"{run_dir} already holds a run. Continue it with --resume, or start a new one "
                              f"with another --config.seed, --config.name or --config.workdir.")
    if settings is not None:
        settings.write(run_dir)         # overrides.json: what the command line changed, named by the hash

    dataset, transform, env_fn = load_offline_data(cfg)
    print(f"dataset {dataset.name}: {dataset.size} transitions, obs {dataset.obs_dim}, act {dataset.act_dim}, "
          f"env {dataset.env_id}, domain {dataset.domain}; reward r <- {transform.scale:.4g}*r + {transform.shift:g}; "
          f"device {device}", flush=True)
    torch.manual_seed(cfg.seed)
    buffer = OfflineBuffer.from_dataset(dataset, transform, device)
    learner = Learner(cfg, dataset.obs_dim, dataset.act_dim, device)
    calibration = DatasetCalibration(dataset, transform, cfg.discount, device, seed=cfg.seed)

    step, history, run_id = 0, [], None
    behavior_rng = None          # "two": the worker's RNG state at the last sync point (kept in checkpoints)
    if resume:
        state = load_checkpoint(ckpt_path, map_location=device)
        check_same_architecture(ckpt_path, state["config"], cfg, "To continue it, add")
        learner.load_state_dict(state["learner"])
        restore_rng_state(state["rng"])
        step, history, run_id = state["step"], json.loads(state["eval_history"]), state["wandb_run_id"] or None
        behavior_rng = state.get("behavior_rng")    # absent: a one-process checkpoint; the worker seeds afresh
        print(f"resumed {run_dir} at step {step}", flush=True)

    logger = RunLogger(run_dir, cfg.to_dict(), cfg.wandb, run_name=f"{job}-pretrain" if job else run_dir.name,
                       run_id=run_id, group=job, job_type="pretrain")

    def checkpoint():
        save_checkpoint(ckpt_path, {"learner": learner.state_dict(), "rng": rng_state(), "step": step,
                                    "config": cfg.to_json(), "eval_history": json.dumps(history),
                                    "wandb_run_id": logger.run_id or "", "reward_transform": transform.to_dict(),
                                    "dataset": dataset.name, "obs_dim": dataset.obs_dim,
                                    "act_dim": dataset.act_dim,
                                    # what acting needs without the dataset (launch.api.load_policy, study.evaluate)
                                    "dataset_meta": dataset_meta(dataset, transform)}
                        | ({"behavior_rng": behavior_rng} if worker is not None else {}))

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    total = max(cfg.num_critic_steps, cfg.num_actor_steps)
    batch_size = max(cfg.critic_batch_size, cfg.actor_batch_size)
    watch = NonFiniteWatch(device, step)     # NaN / inf: summed on the device, read when logging or saving
    # sample, update, observe, advance the schedules: eager, compiled or a CUDA graph (learner/fast_path.py)
    learner_step = PretrainStep(learner, buffer, batch_size, watch, cfg.learner_step)
    # evaluations: here, stopping the learner, or of snapshots in another process (launch/eval_worker.py)
    background = None
    if evaluates_in_background(cfg.eval.background, device):
        background = BackgroundEvaluation(cfg, dataset.obs_dim, dataset.act_dim)
    calibration_at: dict[int, dict] = {}     # the critic's calibration at each snapshot's step
    worker = None
    if two_processes:
        worker = BehaviorWorker(cfg, learner, buffer.obs, buffer.act, behavior_rng)
    behavior_metrics: dict[str, torch.Tensor] = {}

    def take_behavior(at: int) -> dict[str, torch.Tensor]:
        """"two": μ as the worker left it after min(at, num_actor_steps) steps, loaded into `learner`
        (evaluation, calibration and checkpoints read it there); μ's metrics when μ trained at `at`."""
        nonlocal behavior_rng, behavior_metrics
        due = min(at, cfg.num_actor_steps)
        if due > learner.actor_steps:
            snap = worker.snapshot(due)
            learner.load_behavior_state_dict(snap["behavior"])
            behavior_rng, behavior_metrics = snap["rng"], snap["metrics"]
            if not snap["finite"]:
                raise TrainingDiverged(f"μ's loss became NaN or inf by actor step {due} (in the behaviour-model "
                                       f"process). Training stopped; the last good checkpoint in {run_dir} is "
                                       f"intact. Try a lower diffusion.lr.")
        return behavior_metrics if due == at else {}

    def record(at: int, results: dict) -> None:
        results |= calibration_at.pop(at, {})
        logger.log(results, at)
        history.append({"step": at, **results})
        print_eval({k: v for k, v in results.items() if k.startswith("eval/")}, at)
        print(f"  [eval @ {at}] {describe(results)}", flush=True)

    def finish_evaluations(wait: bool) -> None:
        if background is None:
            return
        if wait and background.pending:
            print(f"waiting for the evaluations of steps {background.pending} ...", flush=True)
        for at, results in background.collect(wait=wait):
            record(at, results)

    learner.train(True)
    t_last, step_last = time.time(), step
    print(f"training {cfg.algorithm} (evaluated with {weighting_label(cfg)}) for {total} steps "
          f"(critic {cfg.num_critic_steps}, actor "
          f"{cfg.num_actor_steps}{', μ in a second process' if two_processes else ''}) -> {run_dir}", flush=True)
    try:
        while step < total:
            if worker is None:
                metrics = learner_step(train_actor=learner.actor_steps < cfg.num_actor_steps,
                                       train_critic=learner.critic_steps < cfg.num_critic_steps)
            elif learner.critic_steps < cfg.num_critic_steps:
                metrics = learner_step(train_actor=False, train_critic=True)     # μ: in the worker
            else:
                metrics = {}                  # only μ still trains, in the worker: on to the next sync point
            step += 1
            at_log = step % cfg.log_interval == 0 or step == total
            at_ckpt = step % cfg.checkpoint_interval == 0 or step == total
            # "two": a signal stops at the next sync point, where μ's snapshot is due anyway
            stopping = ((stop["signal"] is not None and (worker is None or is_sync_step(cfg, step, total)))
                        or step == cfg.stop_after_steps)
            if worker is not None and is_sync_step(cfg, step, total):
                metrics = take_behavior(step) | metrics       # μ's loss first, as the one-process step has it
            if at_log or at_ckpt or stopping:
                watch.check(step, metrics, f"Training stopped; the last good checkpoint in {run_dir} is intact. "
                                           f"Try a lower learning rate, or for AlignIQL-hard a smaller multipliers.lr.")
            if at_log:
                now = time.time()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                scalars = {f"train/{k}": float(v) for k, v in metrics.items()}
                scalars["train/steps_per_second"] = rate
                scalars |= calibration.measure(learner)
                logger.log(scalars, step)
                losses = " ".join(f"{k.split('/')[-1]} {float(v):.4g}" for k, v in metrics.items()
                                  if k.startswith("loss/"))
                print(f"step {step:>8}/{total} | {rate:7.1f} steps/s | left {format_duration((total - step) / rate)}"
                      f" | {losses}", flush=True)
            if step % cfg.eval.interval == 0 or step == total:
                if background is not None:
                    calibration_at[step] = calibration.measure(learner)
                    background.submit(step, learner.acting_params())
                else:
                    learner.train(False)
                    results = evaluate_all(evaluation_policies(cfg, learner.modules), cfg, dataset, env_fn, device,
                                           step, reward_transform=transform)
                    learner.train(True)
                    record(step, results | calibration.measure(learner))
            if at_log:
                finish_evaluations(wait=False)
            if step == total or (stopping and stop["signal"] is None):
                finish_evaluations(wait=True)     # the history a checkpoint keeps is complete
            if at_ckpt or stopping:
                checkpoint()
            if stopping:
                why = stop["signal"] or f"stop_after_steps={cfg.stop_after_steps}"
                print(f"stopped at step {step} ({why}); checkpoint saved in {ckpt_path}. "
                      f"Continue with the same flags plus --resume.", flush=True)
                return {"step": step, "stopped": True, "interrupted": stop["signal"] is not None,
                        "run_dir": str(run_dir), "history": history}
    finally:
        if worker is not None:
            worker.close()
        if background is not None:
            dropped = background.close()
            if dropped:
                print(f"evaluations of steps {dropped} were not finished and are not in the history", flush=True)
        logger.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)

    final = history[-1] if history else {}
    summary = {"step": step, "stopped": False, "run_dir": str(run_dir), "final_eval": final,
               "wandb_run_id": logger.run_id, "history": history}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n=== {cfg.algorithm} on {dataset.name}, weighting {weighting_label(cfg)}: final evaluation after "
          f"{step} steps "
          f"({cfg.eval.episodes} episodes each) ===")
    print_eval({k: v for k, v in final.items() if k.startswith("eval/")}, step)
    if "calibration/q_data" in final:
        print(f"  {describe(final)}")
    print(f"run directory: {run_dir} (checkpoint.pt, metrics.jsonl, summary.json, wandb/)")
    if job is None and sync_command([run_dir]):
        print(f"upload the offline wandb run: {sync_command([run_dir])}")
    return summary


def main(argv):
    del argv
    from errors import EXIT_INTERRUPTED

    try:
        summary = train(flags.FLAGS.config, flags.FLAGS.resume, run_dir=flags.FLAGS.run_dir or None,
                        settings=cli.settings_from_flags())
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if summary.get("interrupted"):
        print("interrupted, resumable: continue with the same flags plus --resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
