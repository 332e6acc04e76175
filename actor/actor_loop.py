"""One online actor: vector environments + the latest published policy -> replay transitions.

The actor only ever sees what the learner publishes (acting weights) and what
the supervisor writes into the run directory (the config as JSON and
`dataset_meta.json`), so it can run as its own process, be restarted, or run
on another machine. It never blocks on the learner: it acts with the weights
it has and picks up newer ones every `online.weight_sync_interval` steps.

Reverb (and so TensorFlow) is imported inside the functions that talk to the
server, so the bench and the offline tools can use `VectorActor` without it.
"""
from __future__ import annotations

import json
import os
import math
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from data.rewards import RewardTransform
from errors import ConfigError

# Actor K's environments are seeded seed + K * ENV_SEED_STRIDE + i; the evaluator
# uses seed + EVAL_SEED_OFFSET + j, far from any actor's range.
ENV_SEED_STRIDE = 1000
EVAL_SEED_OFFSET = 10_000_000

META_KEYS = ("obs_dim", "act_dim", "env_id", "env_spec_json", "reward_transform")

Log = Callable[[str], None]


# --------------------------------------------------------------------------- run files
def load_config_json(path) -> "Any":
    """The run's config as written by the supervisor (`cfg.to_json()`)."""
    import ml_collections

    from networks.factory import upgrade_config     # a run recorded before a field was renamed reads as it ran

    path = Path(path)
    try:
        return ml_collections.ConfigDict(upgrade_config(json.loads(path.read_text())))
    except FileNotFoundError:
        raise ConfigError(f"The run config {path} does not exist. Pass --config_json=<run dir>/config.json "
                          "as written by the finetuning supervisor (launch/finetune.py).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"The run config {path} is not valid JSON ({e}); it should be the file the "
                          "supervisor wrote with cfg.to_json().") from None


def load_run_inputs(config_json: str, dataset_meta: str | None, run_dir: str | None, seed: int | None):
    """(cfg, meta, run_dir, seed) for an actor or evaluator program, with the supervisor's defaults:
    dataset_meta.json and the run directory beside the config, the config's seed."""
    base = os.path.dirname(config_json) or "."
    cfg = load_config_json(config_json)
    from networks.linear import set_cpu_matmul
    set_cpu_matmul(cfg.get("cpu_matmul", "auto"))    # the run's CPU matrix-product route, as the learner's
    meta = load_dataset_meta(dataset_meta or os.path.join(base, "dataset_meta.json"))
    return cfg, meta, run_dir or base, cfg.seed if seed is None else seed


def load_dataset_meta(path) -> dict:
    """`dataset_meta.json`: what an actor needs to know about the dataset without loading it."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"The dataset description {path} does not exist. The supervisor writes it beside "
                          "the run config; pass --dataset_meta if it lives elsewhere.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"The dataset description {path} is not valid JSON ({e}).") from None
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"The dataset description {path} lacks {missing}; it must hold {list(META_KEYS)} "
                          "(and ref_min_score / ref_max_score for normalised scores).")
    return meta


def env_source(meta: Mapping[str, Any]) -> str:
    """The stored spec pins kwargs and time limit, so it wins over the bare id."""
    return meta.get("env_spec_json") or meta["env_id"]


def meta_action_bounds(meta: Mapping[str, Any], log: Optional[Log] = print):
    """The action bounds the learner's actions were mapped with (data/bounds.py), for the env wrapper.

    A dataset_meta.json written before the bounds were recorded gives ±1: that run clipped to ±1."""
    from data.bounds import bounds_from_meta

    return bounds_from_meta(meta, "The run's dataset_meta.json", say=log)


def policy_generator(seed: int, stream: int) -> torch.Generator:
    """Private generator so candidate sampling never touches torch's global RNG.

    SeedSequence mixes (seed, stream) so that neighbouring seeds and actor ids
    give unrelated streams.
    """
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0]) >> 1)
    return g


class JsonlLog:
    """Append-only JSON lines, flushed per line so a killed actor loses nothing logged."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", buffering=1)

    def write(self, row: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class StopRequested(BaseException):
    """Raised from inside a blocking replay call to abandon it on stop.

    A BaseException so that the replay package's `except Exception` retry
    loops do not swallow it.
    """


def stop_aware_log(stop_event: threading.Event, log: Log, repeat_s: float = 30.0, grace_s: float = 3.0) -> Log:
    """Log callback for replay calls that wait (connect back-off, rate-limited flush).

    Those calls invoke their log callback on every retry, which is the only
    point where an actor blocked by the rate limiter returns to Python, so
    this is where a stop request breaks out of them: at once when the server
    cannot be reached, but a wait held by the rate limiter gets `grace_s` to
    finish first, because on stop the learner samples on until the actors are
    gone (the supervisor stops actors first; launch/orphan_stop.py), and
    breaking out drops the transitions the server has not confirmed yet (a
sampling learner clears the ≤ 32 pending in well under a second; a learner
that no longer samples must not hold the actor's shutdown much longer).
    Repeats of the same kind of message are shown at most every `repeat_s`.
    """
    last: dict[str, float] = {}
    stop_seen: list[float] = []

    def _log(msg: str) -> None:
        if stop_event.is_set():
            if not stop_seen:
                stop_seen.append(time.monotonic())
            if "rate limiter" not in msg or time.monotonic() - stop_seen[0] >= grace_s:
                raise StopRequested()
        key = re.sub(r"[0-9.]+", "#", msg)
        now = time.monotonic()
        if now - last.get(key, -math.inf) >= repeat_s:
            last[key] = now
            log(msg)

    return _log


class StopEvent(threading.Event):
    """A threading.Event whose `set()` may run in a signal handler.

    threading.Event guards its flag with a non-reentrant lock. A handler that calls `set()` runs in the
    main thread between two bytecodes of whatever the main thread was doing, which may be that same
    Event's `wait()` or `set()` holding the lock: the handler then waits for a lock its own thread
    holds, forever. It happened: an evaluator orphaned by a SIGKILLed supervisor received several
    SIGTERMs (the parent-death signal, then the test's or a user's) and hung, with four handlers stacked
    in Event.set (found with py-spy). A reentrant lock lets the handler's `set()` through.
    """

    def __init__(self):
        super().__init__()
        self._cond = threading.Condition(threading.RLock())


class SignalStop:
    """SIGTERM / SIGINT set the stop event, so shutdown takes the normal path (flush, close, log).

    Installs only in the main thread (Python allows handlers nowhere else);
    tests and supervisors that run the loop in a thread use the event directly.
    Give it a `StopEvent`: a plain threading.Event can deadlock when a signal lands while the
    main thread is inside that event's own methods (see StopEvent). Repeated signals are ignored
    once the event is set.
    """

    def __init__(self, stop_event: threading.Event):
        self.stop_event = stop_event
        self._previous: dict[int, Any] = {}

    def _on_signal(self, *_) -> None:
        if not self.stop_event.is_set():        # a lock-free read: a second signal has nothing to do
            self.stop_event.set()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def default_log(prefix: str) -> Log:
    def _log(msg: str) -> None:
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)
    return _log


def wait_for_first_weights(subscriber, stop_event: threading.Event, log: Log,
                           unreachable_timeout_s: float = 60.0):
    """(version, params) once the learner has published, or None if stopped first.

    Pretraining may take a long time before the first publication, so this
    waits without limit (saying so now and then), but gives up when the
    server itself stops answering for `unreachable_timeout_s`.
    """
    from replay.writer import ReplayUnavailableError

    start = time.monotonic()
    delay, next_log = 0.5, 0.0
    failing_since = None
    while not stop_event.is_set():
        try:
            got = subscriber.poll()
            failing_since = None
        except Exception as e:  # server restarting or gone
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > unreachable_timeout_s:
                raise ReplayUnavailableError(
                    f"The replay server stopped answering while waiting for the learner's first weights "
                    f"({e}). Check whether the learner / replay process died.") from None
            got = None
        if got is not None:
            return got
        waited = time.monotonic() - start
        if waited >= next_log:
            log(f"waiting for the learner's first weights ({waited:.0f}s so far)")
            next_log = max(2 * next_log, 10.0)
        stop_event.wait(delay)
        delay = min(2 * delay, 5.0)
    return None


def load_weights(modules, params: Mapping[str, np.ndarray], version: int) -> None:
    from networks.factory import load_acting_params

    try:
        load_acting_params(modules, params)
    except (RuntimeError, KeyError) as e:
        raise ConfigError(
            f"The published weights (version {version}) do not fit the networks built from the run config "
            f"({str(e).splitlines()[0]}). The actor must get the same config JSON as the learner "
            "(network sizes, algorithm).") from None


# --------------------------------------------------------------------------- acting
class VectorActor:
    """`envs_per_actor` environments stepped together with ONE batched policy call per step.

    Same-step autoreset (actor.envs) makes every step a usable transition;
    the true s' of a finished episode comes from info["final_obs"], the
    returned observation being already the next episode's first.
    """

    def __init__(self, cfg, meta: Mapping[str, Any], seed: int, actor_id: int = 0,
                 num_envs: Optional[int] = None, mode: Optional[str] = None, device="cpu"):
        from actor.envs import make_vector_env
        from networks.factory import build_acting_modules, make_policy, natural_weighting

        o = cfg.online
        self.num_envs = int(num_envs or o.envs_per_actor)
        self.device = torch.device(device)
        self.env_seed = int(seed) + int(actor_id) * ENV_SEED_STRIDE
        # actions in [-1, 1] here and in the replay; the envs map them into their own units (actor/envs.py)
        self.venv = make_vector_env(env_source(meta), self.num_envs, self.env_seed,
                                    action_bounds=meta_action_bounds(meta))
        obs_dim = int(np.prod(self.venv.single_observation_space.shape))
        act_dim = int(np.prod(self.venv.single_action_space.shape))
        if (obs_dim, act_dim) != (int(meta["obs_dim"]), int(meta["act_dim"])):
            self.venv.close()
            raise ConfigError(
                f"The environment {meta['env_id']} has observations of size {obs_dim} and actions of size "
                f"{act_dim}, but the dataset (and so the networks) have {meta['obs_dim']} and {meta['act_dim']}. "
                "dataset_meta.json must describe the dataset the learner was trained on.")
        self.modules = build_acting_modules(cfg, obs_dim, act_dim, self.device)
        self.policy = make_policy(cfg, self.modules, natural_weighting(cfg, o.exploration_weighting),
                                  mode or o.exploration, int(o.num_candidates),
                                  mu_dtype=o.get("actor_mu_dtype", "float32"))   # absent in older runs' configs
        self.generator = policy_generator(seed, actor_id)
        self.transform = RewardTransform.from_dict(meta["reward_transform"])
        self.weights_version: Optional[int] = None
        self.obs, _ = self.venv.reset()
        self.ep_return = np.zeros(self.num_envs)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)

    def load(self, version: int, params: Mapping[str, np.ndarray]) -> None:
        """Arguments in `WeightSubscriber.poll()`'s order, so `load(*poll())` works."""
        load_weights(self.modules, params, version)   # in place: the policy holds these modules
        self.weights_version = int(version)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions in the learner's units [-1, 1] (what the replay stores); the envs map them to theirs."""
        actions, _ = self.policy.act(torch.as_tensor(obs, dtype=torch.float32, device=self.device), self.generator)
        return np.clip(actions.float().cpu().numpy(), -1.0, 1.0).astype(np.float32)

    def step(self, actions: Optional[np.ndarray] = None, record_generator: bool = False) -> dict:
        """One vector step; `actions` given (e.g. random) skips the policy.

        Returns the transitions (observation, action, reward transformed,
        next_observation, discount), the raw reward, terminated / truncated,
        and `episodes`: (env index, raw return, length) of episodes that ended.
        """
        obs = np.asarray(self.obs, dtype=np.float32)
        gen_state = self.generator.get_state() if record_generator else None
        if actions is None:
            actions = self.act(obs)
        next_obs, reward, terminated, truncated, info = self.venv.step(actions)
        done = np.logical_or(terminated, truncated)
        true_next = np.array(next_obs, dtype=np.float32)
        for i in np.flatnonzero(done):
            true_next[i] = info["final_obs"][i]
        reward = np.asarray(reward, dtype=np.float64)
        self.ep_return += reward
        self.ep_length += 1
        episodes = [(int(i), float(self.ep_return[i]), int(self.ep_length[i])) for i in np.flatnonzero(done)]
        self.ep_return[done] = 0.0
        self.ep_length[done] = 0
        self.obs = next_obs
        out = {
            "observation": obs,
            "action": np.asarray(actions, dtype=np.float32),
            "reward": self.transform(reward.astype(np.float32)),
            "next_observation": true_next,
            # Truncation (time limit) bootstraps: only a true termination ends the return.
            "discount": np.where(terminated, 0.0, 1.0).astype(np.float32),
            "raw_reward": reward.astype(np.float32),
            "terminated": np.asarray(terminated, dtype=bool),
            "truncated": np.asarray(truncated, dtype=bool),
            "episodes": episodes,
            "weights_version": self.weights_version,
        }
        if record_generator:
            out["generator_state"] = gen_state
        return out

    def close(self) -> None:
        self.venv.close()


TRANSITION_KEYS = ("observation", "action", "reward", "next_observation", "discount")


def run_actor(cfg, meta: Mapping[str, Any], replay_address: str, actor_id: int, seed: int, run_dir,
              max_env_steps: Optional[int] = None, stop_event: Optional[threading.Event] = None, *,
              key: bytes, on_step: Optional[Callable[[dict], None]] = None, connect_timeout_s: float = 60.0,
              throughput_interval_s: float = 30.0, log: Optional[Log] = None) -> dict:
    """Act until `max_env_steps` transitions are written, `stop_event` is set, or SIGTERM.

    `key` is the run's secret (replay/auth.py): the actor takes only weights the learner
    tagged with it and tags every transition it writes; `weights_rejected` in its log rows
    counts the publications it refused.

    `on_step` (for tests) receives each vector step's batch exactly as written,
    plus the weights version and the generator state before the policy call.
    Returns a summary {"env_steps", "episodes", "weights_version", "steps_per_second"}.
    """
    from replay import ONLINE_TABLE, WEIGHTS_TABLE
    from replay.weights import WeightSubscriber
    from replay.writer import TransitionWriter, connect_with_retry

    stop_event = stop_event if stop_event is not None else StopEvent()
    log = log or default_log(f"actor {actor_id}")
    blocking_log = stop_aware_log(stop_event, log)
    interval = max(1, int(cfg.online.weight_sync_interval))
    jsonl = JsonlLog(Path(run_dir) / "logs" / f"actor_{actor_id}.jsonl")
    steps, episodes = 0, 0
    actor = writer = subscriber = None
    writer_open = False
    start = time.monotonic()

    def row(**kw):
        return {"role": "actor", "actor_id": int(actor_id), "time": time.time(), "actor_env_steps": steps,
                "weights_version": actor.weights_version if actor else None,
                "weights_rejected": subscriber.rejected if subscriber else 0, **kw}

    try:
        with SignalStop(stop_event):
            try:
                connect_with_retry(replay_address, connect_timeout_s, log=blocking_log,
                                   tables=[ONLINE_TABLE, WEIGHTS_TABLE])
                subscriber = WeightSubscriber(replay_address, connect_timeout_s=connect_timeout_s, key=key, log=log)
                first = wait_for_first_weights(subscriber, stop_event, log, connect_timeout_s)
                if first is None:
                    return {"env_steps": 0, "episodes": 0, "weights_version": None, "steps_per_second": 0.0}
                actor = VectorActor(cfg, meta, seed, actor_id)
                actor.load(*first)
                log(f"acting with weights version {first[0]} in {actor.num_envs} environments "
                    f"(seeds {actor.env_seed}..{actor.env_seed + actor.num_envs - 1}), "
                    f"{cfg.online.exploration} selection over N={cfg.online.num_candidates}")
                jsonl.write(row(event="weights"))
                # blocked_log_every_s=1: a rate-limited flush comes back to Python
                # (and so can see a stop request) every second.
                writer = TransitionWriter(replay_address, connect_timeout_s=connect_timeout_s,
                                          blocked_log_every_s=1.0, log=blocking_log, key=key)
                writer_open = True
                since_sync = 0
                report_t, report_steps = time.monotonic(), 0
                start = time.monotonic()
                while not stop_event.is_set() and (max_env_steps is None or steps < max_env_steps):
                    batch = actor.step(record_generator=on_step is not None)
                    k = actor.num_envs if max_env_steps is None else min(actor.num_envs, max_env_steps - steps)
                    writer.add_batch(*(batch[key][:k] for key in TRANSITION_KEYS))
                    if on_step is not None:
                        on_step({**{key: batch[key][:k] for key in
                                    TRANSITION_KEYS + ("raw_reward", "terminated", "truncated")},
                                 "weights_version": batch["weights_version"],
                                 "generator_state": batch["generator_state"], "num_envs": actor.num_envs})
                    steps += k
                    for i, ret, length in batch["episodes"]:
                        if i < k:
                            episodes += 1
                            jsonl.write(row(episode_return=ret, episode_length=length))
                    since_sync += k
                    if since_sync >= interval:
                        since_sync = 0
                        try:
                            got = subscriber.poll()
                        except Exception as e:  # a dead server is reported by the writer's flush
                            log(f"weight poll failed ({type(e).__name__}: {e}); acting on with version "
                                f"{actor.weights_version}")
                            got = None
                        if got is not None:
                            actor.load(*got)
                            jsonl.write(row(event="weights"))
                    now = time.monotonic()
                    if now - report_t >= throughput_interval_s:
                        jsonl.write(row(actor_steps_per_second=(steps - report_steps) / (now - report_t)))
                        report_t, report_steps = now, steps
                writer_open = False
                writer.close()
            except StopRequested:
                # Stopped while a replay call was waiting (rate limiter, unreachable server):
                # the unconfirmed transitions are abandoned rather than blocking shutdown.
                if writer_open:
                    writer_open = False
                    writer.__exit__(StopRequested, None, None)
                log("stopped while waiting on the replay server; transitions it had not yet confirmed "
                    "were dropped")
        elapsed = max(time.monotonic() - start, 1e-9)
        summary = {"env_steps": steps, "episodes": episodes,
                   "weights_version": actor.weights_version if actor else None,
                   "steps_per_second": steps / elapsed}
        jsonl.write(row(actor_steps_per_second=summary["steps_per_second"], event="stopped"))
        log(f"stopped after {steps} environment steps, {episodes} episodes")
        return summary
    finally:
        if writer_open:   # an error is propagating: drop, don't block on a flush
            writer.__exit__(RuntimeError, None, None)
        if actor is not None:
            actor.close()
        jsonl.close()
