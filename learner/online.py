"""Online finetuning on the learner: mixed offline + online batches (IDQL section 4.2).

Each iteration takes one batch of online transitions from the replay server
(Reverb's batched dataset, fetched ahead by a background thread: learner/online_feed.py;
the table's SampleToInsertRatio limiter holds it so that the learner makes
`updates_per_env_step` V+Q updates per environment step however many actors
run) and one batch of offline transitions from the dataset held on the
learner's device, then updates V and Q, optionally μ (IDQL
recipe 2: `mu_steps_per_update` μ steps per update) and the multipliers, and
publishes the acting networks every `publish_interval` steps.

Both directions carry the run's HMAC tags (replay/auth.py, key given by the
supervisor): the publications are tagged, and online rows whose tag does not
check out are dropped before training and counted in `replay/rejected`.

The learner knows no environment: what it learns from arrives as arrays.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import torch

from errors import UserFacingError
from learner.agent import Learner, cosine_decay
from learner.fast_path import CapturedStep, check_learner_step, make_capturable, set_lr
from learner.checkpoint import (check_same_architecture, load_checkpoint, restore_rng_state, rng_state,
                                save_checkpoint)
from learner.nonfinite import NonFiniteWatch
from learner.online_feed import OnlineFeed

CHECKPOINT_NAME = "learner_checkpoint.pt"
STEP_COUNTER_NAME = "learner_step"


class StepCounter:
    """The learner's step in 8 bytes of a memory-mapped file, written after every update: a learner
    killed outright leaves its exact step behind, so its supervisor can say how many updates the
    restart from the last checkpoint cost. A page write per step, no system call."""

    def __init__(self, path: Path):
        import mmap

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    def write(self, step: int) -> None:
        struct.pack_into("<q", self._map, 0, step)

    @staticmethod
    def read(path: Path) -> int | None:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None
        return struct.unpack("<q", data[:8])[0] if len(data) >= 8 else None


def load_pretrained(learner: Learner, path: Path, obs_dim: int, act_dim: int, device) -> int:
    """Networks and optimiser state of a pretraining run; returns its step count."""
    state = load_checkpoint(path, map_location=device)
    if (state.get("obs_dim"), state.get("act_dim")) != (obs_dim, act_dim):
        raise UserFacingError(
            f"The pretraining checkpoint {path} was trained with observation size {state.get('obs_dim')} and "
            f"action size {state.get('act_dim')}, but this run's environment has {obs_dim} and {act_dim}. "
            f"Give a checkpoint pretrained on the same environment (--pretrained), or the matching dataset.")
    saved_algo = json.loads(state["config"]).get("algorithm")
    if saved_algo != learner.algorithm:
        raise UserFacingError(f"The pretraining checkpoint {path} is for algorithm {saved_algo!r}, this run "
                              f"is configured for {learner.algorithm!r}; set --config.algorithm={saved_algo}.")
    check_same_architecture(path, state["config"], learner.cfg,
                            "To finetune it, build the same networks: add")
    learner.load_state_dict(state["learner"])
    return int(state["step"])


def set_online_rates(learner: Learner, cfg) -> None:
    """The policy model's learning rate for the online phase.

    Pretraining's cosine schedules end at 0, so without this the policy model never moves online.
    μ (AlignIQL / IDQL): `online.mu_lr_schedule`, see configs/finetune.py. IQL's Gaussian actor:
    constant at `iql.actor_lr`, as IQL's finetuning configurations run it.
    """
    o = cfg.online
    if "behavior" in learner.schedulers:
        sched = learner.schedulers["behavior"]
        if o.mu_lr_schedule == "continue":
            # last_epoch is μ's step count, restored from the checkpoint: the same cosine, a longer horizon
            horizon = max(1, round(float(o.mu_lr_horizon) * int(cfg.num_actor_steps)))
            sched.lr_lambdas = [cosine_decay(horizon)]
        elif o.mu_lr_schedule == "constant":
            sched.base_lrs = [float(o.mu_lr)] * len(sched.optimizer.param_groups)
            sched.lr_lambdas = [lambda _: 1.0]
        else:
            raise UserFacingError(f"Invalid setting config.online.mu_lr_schedule={o.mu_lr_schedule!r}: "
                                  "choose 'continue' or 'constant'.")
    if "actor" in learner.schedulers:
        sched = learner.schedulers["actor"]
        sched.base_lrs = [float(cfg.iql.actor_lr)] * len(sched.optimizer.param_groups)
        sched.lr_lambdas = [lambda _: 1.0]
    for sched in learner.schedulers.values():
        for group, base_lr, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            set_lr(group, base_lr * factor(sched.last_epoch))


class OnlineLearner:
    def __init__(self, cfg, learner: Learner, offline_buffer, replay_address: str, run_dir: Path,
                 stop_event: threading.Event | None = None, calibration=None, *, key: bytes,
                 incarnation: int = 0):
        from replay.auth import Rejections
        from replay.sampler import OnlineSampler, table_stats
        from replay.weights import WeightPublisher

        self.cfg, self.o = cfg, cfg.online
        self.learner, self.offline = learner, offline_buffer
        self.address = replay_address
        self.run_dir = Path(run_dir)
        self.stop_event = stop_event or threading.Event()
        self.calibration = calibration      # learner.calibration.DatasetCalibration: Q on data vs its returns
        self.device = learner.device
        # diagnostics draw μ's candidates from their own generator, never from the training RNG stream
        self._diag_generator = torch.Generator(device=self.device)
        self._diag_generator.manual_seed(int(cfg.seed) + 7)
        self._table_stats = table_stats
        # one count across the samplers the feed makes (it makes a new one after each limiter timeout)
        self.rejected = Rejections("online transitions", log=lambda m: print(f"learner: {m}", flush=True))
        self._make_sampler = lambda: OnlineSampler(replay_address, self.o.online_batch_size,
                                                   num_workers_per_iterator=int(self.o.sampler_workers),
                                                   rate_limiter_timeout_ms=1000, key=key,
                                                   rejections=self.rejected)
        self.publisher = WeightPublisher(replay_address, key=key)
        self.incarnation = int(incarnation)   # restarts by the supervisor: ranks our weights above the dead one's
        self.step = 0                       # online learner steps (V+Q updates)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.run_dir / "logs" / "learner.jsonl", "a", buffering=1)
        self.step_counter = StepCounter(self.run_dir / "logs" / STEP_COUNTER_NAME)
        self.step_counter.write(self.step)
        set_online_rates(self.learner, cfg)

    # ------------------------------------------------------------------ state
    def checkpoint(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_NAME,
                        {"learner": self.learner.state_dict(), "rng": rng_state(), "step": self.step,
                         "config": self.cfg.to_json(), "obs_dim": self.offline.obs.shape[1],
                         "act_dim": self.offline.act.shape[1], "eval_history": "[]", "wandb_run_id": ""})

    def restore(self) -> None:
        state = load_checkpoint(self.run_dir / CHECKPOINT_NAME, map_location=self.device)
        check_same_architecture(self.run_dir / CHECKPOINT_NAME, state["config"], self.cfg, "To continue it, add")
        self.learner.load_state_dict(state["learner"])
        set_online_rates(self.learner, self.cfg)
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.step_counter.write(self.step)
        self.forget_logged_steps_after(self.step)

    def forget_logged_steps_after(self, step: int) -> list[dict]:
        """A restart from a checkpoint at `step` repeats the steps after it: the rows a dead learner
        logged for them move to logs/lost/ (learner/log_rows.py), so the logged step never goes back."""
        from learner.log_rows import set_aside

        self.log_file.close()
        path = self.run_dir / "logs" / "learner.jsonl"
        lost = set_aside(path, lambda r: r.get("learner_step", 0) > step)
        self.log_file = open(path, "a", buffering=1)
        if lost:
            print(f"learner: {len(lost)} log rows past step {step} (lost with the last learner) moved to "
                  f"logs/lost/learner.jsonl", flush=True)
        return lost

    def publish(self) -> None:
        from replay.weights import publication_version

        self.publisher.publish(self.learner.acting_params(), version=publication_version(self.step, self.incarnation))

    # ------------------------------------------------------------------ loop
    def _mixed(self, online: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Online rows first, then offline rows: one batch for every update of this step."""
        off = self.offline.sample(self.o.offline_batch_size)
        return {"obs": torch.cat([online["observation"], off["obs"]]),
                "act": torch.cat([online["action"], off["act"]]),
                "reward": torch.cat([online["reward"], off["reward"]]),
                "next_obs": torch.cat([online["next_observation"], off["next_obs"]]),
                "mask": torch.cat([online["discount"], off["mask"]])}

    def _device_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One online iteration's device work on a mixed batch (no schedule, no counter: `Learner.advance`)."""
        learner, o = self.learner, self.o
        metrics = learner.value_and_critic_step(batch["obs"], batch["act"], batch["reward"],
                                                batch["next_obs"], batch["mask"])
        if o.finetune_mu and learner.algorithm != "iql":
            for k in range(int(o.mu_steps_per_update)):
                # fresh offline rows for each μ step, the same online rows (the limiter counts samples)
                b = batch if k == 0 else self._mixed_from(batch)
                metrics |= learner.behavior_step(b["obs"], b["act"])
        elif o.finetune_mu and learner.algorithm == "iql":
            metrics |= learner.awr_step(batch["obs"], batch["act"])
        if learner.algorithm == "aligniql_hard":
            metrics |= learner.multiplier_step(batch["obs"], batch["act"])
        return metrics

    def _actor_steps_per_update(self) -> int:
        if not self.o.finetune_mu:
            return 0
        return 1 if self.learner.algorithm == "iql" else int(self.o.mu_steps_per_update)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One eager online iteration on a mixed batch (the reference for the captured one)."""
        metrics = self._device_step(batch)
        self.learner.advance(actor_steps=self._actor_steps_per_update(), critic_steps=1)
        return metrics

    def _online_step(self, watch) -> "callable":
        """online rows -> metrics (observed by `watch`, schedules advanced), by `cfg.learner_step`."""
        how = self.cfg.learner_step
        check_learner_step(how, self.device)
        if "compile" in how:
            self.learner.compile_objectives()

        def device_step(online):
            metrics = self._device_step(self._mixed(online))
            watch.observe(metrics)
            return metrics

        captured = None
        if "graph" in how:
            make_capturable(self.learner.optimizers, self.device)
            captured = CapturedStep(device_step)   # online rows copied into its static inputs each replay

        def step(online):
            metrics = captured(online) if captured is not None else device_step(online)
            self.learner.advance(actor_steps=self._actor_steps_per_update(), critic_steps=1)
            return metrics
        return step

    def _candidate_advantages(self, online: dict[str, torch.Tensor], rows: int = 64) -> dict[str, float]:
        """calibration/{online,offline}_{max,mean}_adv at N = online.num_candidates (learner/calibration.py)."""
        from learner.calibration import candidate_advantage

        out: dict[str, float] = {}
        n = int(self.o.num_candidates)
        idx = torch.randint(0, self.offline.size, (rows,), generator=self._diag_generator, device=self.device)
        for name, obs in (("online", online["observation"][:rows]), ("offline", self.offline.obs[idx])):
            for key, value in candidate_advantage(self.learner, obs, n, self._diag_generator).items():
                out[f"calibration/{name}_{key}"] = value
        return out

    def _mixed_from(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n_on = self.o.online_batch_size
        off = self.offline.sample(self.o.offline_batch_size)
        return {"obs": torch.cat([batch["obs"][:n_on], off["obs"]]),
                "act": torch.cat([batch["act"][:n_on], off["act"]])}

    def run(self, max_steps: int | None = None) -> int:
        """Train until stopped (or `max_steps` learner steps); returns the step count."""
        o = self.o
        self.learner.train(True)
        self.publish()
        held_last = self._table_stats(self.address)["learner_waiting_ms"]
        feed = OnlineFeed(self._make_sampler, self.device, depth=int(o.prefetch_batches))
        watch = NonFiniteWatch(self.device, self.step)   # NaN / inf: summed on the device, read at log / save
        online_step = self._online_step(watch)
        diverged = f"The learner stopped; its last good checkpoint in {self.run_dir} is intact."
        waited = 0.0
        t_last, step_last, last_ckpt = time.time(), self.step, time.monotonic()
        try:
            while not self.stop_event.is_set() and (max_steps is None or self.step < max_steps):
                t0 = time.perf_counter()
                online = feed.get(timeout=1.0)      # None: nothing for a second (warm-up, actors stopped)
                waited += time.perf_counter() - t0
                if online is None:
                    continue
                metrics = online_step(online)
                self.step += 1
                self.step_counter.write(self.step)
                if self.step % o.publish_interval == 0:
                    watch.check(self.step, metrics, diverged)     # actors never get diverged networks
                    self.publish()
                if self.step % o.log_interval == 0:
                    watch.check(self.step, metrics, diverged)
                    now = time.time()
                    stats = self._table_stats(self.address)
                    span = max(now - t_last, 1e-9)
                    row = {"role": "learner", "time": now, "learner_step": self.step,
                           "env_steps": stats["inserts"],
                           "learner_steps_per_second": (self.step - step_last) / span,
                           # time the update loop waited for an online batch, for any reason ...
                           "batch_wait_fraction": waited / span,
                           # ... and the server's time holding sample requests for the UTD ratio
                           "rate_limiter_hold_fraction": (stats["learner_waiting_ms"] - held_last) / 1e3 / span,
                           "replay_size": stats["current_size"],
                           "replay_inserts": stats["inserts"], "replay_samples": stats["samples"],
                           # sampled rows dropped for a tag that did not check out (a stranger's inserts)
                           "replay/rejected": self.rejected.count,
                           "updates_per_env_step": stats["samples"] / o.online_batch_size /
                           max(1, stats["inserts"] - o.min_replay_size),
                           **{k: float(v) for k, v in metrics.items()},
                           **(self.calibration.measure(self.learner) if self.calibration else {}),
                           **self._candidate_advantages(online)}
                    self.log_file.write(json.dumps(row) + "\n")
                    t_last, step_last, waited = now, self.step, 0.0
                    held_last = stats["learner_waiting_ms"]
                if time.monotonic() - last_ckpt >= o.replay_checkpoint_interval_s:
                    watch.check(self.step, metrics, diverged)     # never save diverged networks
                    self.checkpoint()
                    last_ckpt = time.monotonic()
        finally:
            feed.close()
            if watch.finite():
                self.checkpoint()
                try:
                    self.publish()
                except Exception:  # the server may already be gone at shutdown
                    pass
            self.log_file.write(json.dumps({"role": "learner", "time": time.time(), "learner_step": self.step,
                                            "event": "stopped"}) + "\n")
            self.log_file.close()
        return self.step
