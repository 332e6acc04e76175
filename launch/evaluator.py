r"""The online evaluator process (started by launch/finetune.py beside the actors).

    python -m launch.evaluator --config_json=runs/<run>/config.json --replay_address=localhost:PORT \
        --seed=0 --run_dir=runs/<run>

Scores the latest published weights with the evaluation policy
(`online.eval_mode`, N = `online.num_candidates`, the algorithm's weighting)
on its own environments (seeds seed + 10,000,000 + j, never an actor's):
once as soon as weights exist (the "after pretraining" point; not again when
it is restarted or the run resumed, which continue its curve), then every
`online.eval_interval` environment steps, counted as items ever inserted into
the replay table so the x axis is the whole run's, not one actor's; and once
more on SIGTERM / stop if newer weights arrived since the last evaluation.
Rows go to <run_dir>/logs/evaluator.jsonl. Each row's `tag` names the evaluation policy with its
weighting (`align_eta-1/implicit_N16`, launch/run_names.py): the supervisor logs the row to wandb
under `eval/<tag>/...`, so runs evaluated with different weightings never share a key.

Every evaluation uses the same environment seeds and generator seed, so two
weight versions are compared on the same episodes' starts (common random numbers).

Only weights tagged with the run's key (`run_key` beside the config, or
--key_file) are evaluated; `weights_rejected` in its rows counts the others.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from absl import flags

from launch import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Called only when run as a program, so importing run_evaluator defines no flags."""
    flags.DEFINE_string("config_json", None, "Run config written by the supervisor (cfg.to_json()).")
    flags.DEFINE_string("dataset_meta", None, "dataset_meta.json; default: beside --config_json.")
    flags.DEFINE_string("key_file", None, "The run's secret (owner-only); default: run_key beside --config_json.")
    flags.DEFINE_string("replay_address", None, "Replay server HOST:PORT.")
    flags.DEFINE_integer("seed", None, "Run seed; default: the config's seed.")
    flags.DEFINE_string("run_dir", None, "Run directory (logs/ goes there); default: the config's folder.")
    flags.DEFINE_float("connect_timeout_s", 60.0, "Give up if the replay server does not answer for this long.")
    flags.mark_flags_as_required(["config_json", "replay_address"])


def score_normalizer(meta: Mapping[str, Any]):
    """D4RL score 100·(R − min)/(max − min), or None when the dataset has no usable references."""
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    if lo is None or hi is None or float(hi) == float(lo):
        return None
    lo, hi = float(lo), float(hi)
    return lambda returns: 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)


def meta_domain(meta: Mapping[str, Any]) -> str:
    """The dataset's domain from dataset_meta.json: as recorded (config.domain applied), else inferred
    from its env id and dataset name as the loader does (runs made before the domain was recorded)."""
    from data.dataset import infer_domain

    return meta.get("domain") or infer_domain(meta.get("env_id"), meta.get("dataset"))


def last_row(path: Path) -> Optional[dict]:
    """The last complete row of a JSONL log, or None (no file, or nothing complete in it)."""
    import json

    if not path.exists():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def run_evaluator(cfg, meta: Mapping[str, Any], replay_address: str, seed: int, run_dir,
                  stop_event: Optional[threading.Event] = None, *, key: bytes, connect_timeout_s: float = 60.0,
                  poll_interval_s: float = 2.0, log=None) -> list[dict]:
    """Evaluate until `stop_event` is set (or SIGTERM in the main thread); returns the rows written.

    `key`: the run's secret; weights not tagged with it are never loaded (replay/auth.py)."""
    import torch

    from actor.actor_loop import (EVAL_SEED_OFFSET, JsonlLog, StopEvent, StopRequested, SignalStop, default_log,
                                  env_source, load_weights, meta_action_bounds, stop_aware_log, wait_for_first_weights)
    from actor.envs import make_env
    from actor.evaluator import evaluate
    from data.goals import scores_by_success
    from data.rewards import RewardTransform
    from launch.run_names import eval_tag
    from networks.factory import build_acting_modules, make_policy, natural_weighting
    from replay import ONLINE_TABLE, WEIGHTS_TABLE
    from replay.sampler import table_stats
    from replay.weights import WeightSubscriber
    from replay.writer import connect_with_retry

    stop_event = stop_event if stop_event is not None else StopEvent()
    log = log or default_log("evaluator")
    o = cfg.online
    interval = max(1, int(o.eval_interval))
    source = env_source(meta)
    by_success = scores_by_success(meta_domain(meta))   # AntMaze: score = success rate in % (data/goals.py)
    normalize = None if by_success else score_normalizer(meta)
    reward_transform = RewardTransform.from_dict(meta["reward_transform"])
    eval_seed = int(seed) + EVAL_SEED_OFFSET
    device = torch.device("cpu")
    earlier = last_row(Path(run_dir) / "logs" / "evaluator.jsonl")
    jsonl = JsonlLog(Path(run_dir) / "logs" / "evaluator.jsonl")
    rows: list[dict] = []

    modules = build_acting_modules(cfg, int(meta["obs_dim"]), int(meta["act_dim"]), device)
    weighting = natural_weighting(cfg, cfg.eval.weighting)
    policy = make_policy(cfg, modules, weighting, o.eval_mode, int(o.num_candidates))
    tag = eval_tag(cfg, o.eval_mode, int(o.num_candidates), weighting)
    log(f"evaluating {tag}: {int(o.eval_episodes)} episodes every {interval} environment steps")
    state = {"version": None, "evaluated": None, "subscriber": None}

    bounds = meta_action_bounds(meta, log)    # the policy acts in [-1, 1]; the envs map into their own units

    def env_fn(s: int):
        return make_env(source, s, action_bounds=bounds)

    def take(got) -> None:
        if got is not None:
            load_weights(modules, got[1], got[0])
            state["version"] = got[0]

    def evaluate_now(env_steps: int, trigger: str) -> None:
        t0 = time.monotonic()
        result = evaluate(policy, env_fn, int(o.eval_episodes), seed=eval_seed, device=device,
                          max_episode_steps=int(cfg.eval.max_episode_steps), normalize=normalize,
                          reward_transform=reward_transform, discount=float(cfg.discount),
                          score_by_success=by_success)
        s = result.summary()
        row = {"role": "evaluator", "time": time.time(), "env_steps": int(env_steps),
               "weights_version": state["version"],
               "weights_rejected": state["subscriber"].rejected if state["subscriber"] else 0,
               "return_mean": s["return_mean"], "return_std": s["return_std"],
               "score_mean": s.get("score_mean"), "score_std": s.get("score_std"),
               "success_rate": s.get("success_rate"),
               "alignment_gap": s["alignment_gap"], "length_mean": s["length_mean"],
               "q_mean": s["q_mean"], "v_mean": s["v_mean"], "mode": o.eval_mode,
               # the critic's error on the actions taken: Q(s, a) − the discounted return that followed
               "q_chosen_mean": s.get("q_chosen_mean"), "mc_return_mean": s.get("mc_return_mean"),
               "q_minus_return": s.get("q_minus_return"),
               "num_candidates": int(o.num_candidates), "weighting": weighting, "tag": tag,
               "episodes": int(o.eval_episodes), "trigger": trigger,
               "eval_seconds": time.monotonic() - t0}
        jsonl.write(row)
        rows.append(row)
        state["evaluated"] = state["version"]
        score = f"score {row['score_mean']:.1f} ± {row['score_std']:.1f}, " if row["score_mean"] is not None else ""
        if row["success_rate"] is not None:
            score += f"success {100 * row['success_rate']:.1f} %, "
        log(f"[{trigger}] env steps {env_steps}, weights v{state['version']}: {score}"
            f"return {row['return_mean']:.1f} ± {row['return_std']:.1f}, "
            f"alignment gap {row['alignment_gap']:+.3f}"
            + (f", Q of actions taken − return after them {row['q_minus_return']:+.1f}"
               if row["q_minus_return"] is not None else "") + f" ({row['eval_seconds']:.1f}s)")

    try:
        with SignalStop(stop_event):
            try:
                client = connect_with_retry(replay_address, connect_timeout_s,
                                            log=stop_aware_log(stop_event, log),
                                            tables=[ONLINE_TABLE, WEIGHTS_TABLE])
                subscriber = WeightSubscriber(replay_address, connect_timeout_s=connect_timeout_s, key=key, log=log)
                state["subscriber"] = subscriber
            except StopRequested:
                return rows

            def env_steps() -> int:
                return int(table_stats(client, ONLINE_TABLE)["inserts"])

            first = wait_for_first_weights(subscriber, stop_event, log, connect_timeout_s)
            if first is None:
                return rows
            take(first)
            steps = env_steps()
            if earlier is None:
                evaluate_now(steps, "startup")
            else:   # restarted by the supervisor, or the run resumed: the curve goes on, no second start-up point
                log(f"continuing after the evaluation at {earlier['env_steps']} env steps")
                steps = max(steps, int(earlier["env_steps"]))
            next_at = (steps // interval + 1) * interval
            failing_since = None
            while not stop_event.wait(poll_interval_s):
                try:
                    steps = env_steps()
                    failing_since = None
                except Exception as e:  # the server may be busy writing a checkpoint
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > connect_timeout_s:
                        from replay.writer import ReplayUnavailableError
                        raise ReplayUnavailableError(
                            f"The replay server at {replay_address} stopped answering ({e}). "
                            "Check whether the learner / replay process died.") from None
                    continue
                if steps >= next_at and steps >= int(o.total_env_steps):
                    continue    # the run ends here: its final evaluation scores the last weights, once
                if steps >= next_at:
                    if steps >= next_at + interval:
                        log(f"evaluation fell behind the actors: evaluating at {steps} env steps, "
                            f"skipping the points between {next_at} and {steps}")
                    try:
                        take(subscriber.poll())
                    except Exception as e:  # a busy server must not cost the evaluation
                        log(f"weight poll failed ({type(e).__name__}: {e}); evaluating version {state['version']}")
                    evaluate_now(steps, "interval")
                    next_at = (steps // interval + 1) * interval
            # Stopped: score the final weights if they were never scored.
            try:
                take(subscriber.poll())
                if state["version"] != state["evaluated"]:
                    evaluate_now(env_steps(), "final")
            except Exception as e:
                log(f"no final evaluation: the replay server is gone ({type(e).__name__}: {e})")
            return rows
    finally:
        jsonl.close()


def main(argv):
    del argv
    import torch

    torch.set_num_threads(1)   # shares the cores with learner and actors (see configs/quickstart.py)
    from actor.actor_loop import load_run_inputs
    from errors import UserFacingError
    from launch.priority import lower_priority
    from replay.auth import key_path_beside, load_key

    try:
        cfg, meta, run_dir, seed = load_run_inputs(FLAGS.config_json, FLAGS.dataset_meta, FLAGS.run_dir, FLAGS.seed)
        key = load_key(FLAGS.key_file or key_path_beside(FLAGS.config_json))
        lower_priority(int(cfg.online.get("evaluator_nice", 0)), "evaluator")   # yields the cores to the learner (launch/priority.py)
        run_evaluator(cfg, meta, FLAGS.replay_address, seed, run_dir, key=key,
                      connect_timeout_s=FLAGS.connect_timeout_s)
    except UserFacingError as e:
        print(f"evaluator: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
