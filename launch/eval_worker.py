"""Pretraining evaluations in a process of their own, so that the learner never stops for them.

Why: an evaluation (20 episodes × every (mode, N), up to 1,000 steps each, N diffusion samples
per step) halts a learner that evaluates in its own loop for minutes; on a GPU that is a large
share of the papers' pretraining (issue 10). Here the learner hands a snapshot of its acting
networks (the same flat weights actors receive) to one CPU process, which evaluates it with the
same code and the same seeded episodes, and keeps training; results come back tagged with the step
of the snapshot. On by default when the learner is on CUDA (`eval.background="auto"`); on a CPU
the learner and the evaluation would share the same cores, so they take turns as before.

Nothing here is read from the network: requests and results travel over the run's own pipes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue


def _serve(cfg_json: str, obs_dim: int, act_dim: int, requests, results) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""        # before torch: the GPU is the learner's
    import json

    import ml_collections
    import torch

    from launch.pretrain import evaluate_all, load_offline_data
    from networks.factory import build_acting_modules, evaluation_policies, load_acting_params

    torch.set_num_threads(1)
    cfg = ml_collections.ConfigDict(json.loads(cfg_json))
    from networks.linear import set_cpu_matmul
    set_cpu_matmul(cfg.get("cpu_matmul", "auto"))     # the learner's route: the same rounding as its own evaluations
    dataset, transform, env_fn = load_offline_data(cfg)
    modules = build_acting_modules(cfg, obs_dim, act_dim)

    policy_for = evaluation_policies(cfg, modules)

    while True:
        request = requests.get()
        if request is None:
            return
        step, params = request
        load_acting_params(modules, params)
        try:
            results.put((step, evaluate_all(policy_for, cfg, dataset, env_fn, torch.device("cpu"), step,
                                            reward_transform=transform)))
        except Exception as e:                     # reported by the learner, which stops the run
            results.put((step, {"error": f"{type(e).__name__}: {e}"}))


class BackgroundEvaluation:
    """Submit snapshots, collect their evaluations in step order; one evaluation process per run."""

    def __init__(self, cfg, obs_dim: int, act_dim: int):
        ctx = mp.get_context("spawn")              # no fork of a process that holds CUDA and threads
        self.requests, self.results = ctx.Queue(), ctx.Queue()
        self.process = ctx.Process(target=_serve, args=(cfg.to_json(), obs_dim, act_dim, self.requests,
                                                        self.results), name="pretrain-evaluator", daemon=True)
        self.process.start()
        self.pending: list[int] = []

    def submit(self, step: int, params: dict) -> None:
        self.requests.put((step, params))
        self.pending.append(step)

    def collect(self, wait: bool = False) -> list[tuple[int, dict]]:
        """Finished evaluations as (step, results); with `wait`, every pending one."""
        done = []
        while self.pending:
            try:
                step, results = self.results.get(timeout=5.0) if wait else self.results.get_nowait()
            except queue.Empty:
                if not wait:
                    break
                if not self.process.is_alive():
                    raise RuntimeError(f"The evaluation process exited (code {self.process.exitcode}) with "
                                       f"evaluations at steps {self.pending} unfinished.")
                continue
            if "error" in results:
                raise RuntimeError(f"Evaluation at step {step} failed in the evaluation process: {results['error']}")
            self.pending.remove(step)
            done.append((step, results))
        return done

    def close(self) -> list[int]:
        """Stop the process; returns the steps whose evaluations were dropped unfinished."""
        dropped = list(self.pending)
        try:
            self.requests.put(None)
            self.process.join(timeout=2.0 if not dropped else 0.1)
        finally:
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout=5.0)
        return dropped


def evaluates_in_background(setting: str, device) -> bool:
    """`eval.background`: "auto" (in its own process when the learner is on CUDA), "on" or "off"
    (learner/config_check.py BACKGROUND_SETTINGS; checked there at start-up)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")
