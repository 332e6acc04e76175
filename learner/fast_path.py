"""How the learner's iteration reaches the device: eager, compiled, or replayed as a CUDA graph.

Why: on a GPU an eager AlignIQL/IDQL iteration launches ~240 small kernels (AlignIQL-hard ~360),
and at 5-10 µs a launch the step rate is bound by launches, not by arithmetic (issue 10). A CUDA
graph records the whole iteration once (batch sampling on the device, μ step, V step, Q step,
target EMAs, the NaN/inf sum) and replays it with one launch; torch.compile fuses the objectives'
elementwise work into fewer kernels. The eager path is the reference: the default on every device
(config `learner_step`), and what `tests/test_fast_path.py` and `python -m bench.gpu_check` compare
the other paths against.

What a captured graph needs, and where this project provides it:
- fixed shapes and static memory: the offline batch is sampled inside the graph; online rows are
  copied into static input tensors before each replay;
- optimisers that run without the host: `capturable=True`, the learning rate as a device tensor that
  the schedule overwrites in place (`set_lr`), the schedule advanced outside the graph
  (`Learner.advance`);
- no host syncs inside: none in the device steps (`NonFiniteWatch` only sums on the device).
"""
from __future__ import annotations

from typing import Callable

import torch

from errors import UserFacingError

LEARNER_STEPS = ("eager", "compile", "graph", "graph+compile")
MATMUL_PRECISIONS = ("auto", "highest", "high", "medium")


def check_learner_step(how: str, device: torch.device) -> None:
    if how not in LEARNER_STEPS:
        raise UserFacingError(f"Invalid setting config.learner_step={how!r}: choose one of {', '.join(LEARNER_STEPS)}.")
    if "graph" in how and device.type != "cuda":
        raise UserFacingError(f"config.learner_step={how!r} replays a CUDA graph and needs a CUDA device; this run is "
                              f"on {device}. Use 'eager' (the default) or 'compile' on the CPU.")


def set_matmul_precision(setting: str, device: torch.device) -> str:
    """TF32 matrix products on a GPU by default ('high'); full float32 on the CPU, where TF32 does not exist.

    `setting`: "auto", or one of torch's "highest" | "high" | "medium". Returns what was set.
    """
    choice = ("high" if device.type == "cuda" else "highest") if setting == "auto" else setting
    if setting not in MATMUL_PRECISIONS:
        raise UserFacingError(f"Invalid setting config.matmul_precision={setting!r}: choose auto, highest, high "
                              f"or medium.")
    torch.set_float32_matmul_precision(choice)
    return choice


def set_lr(group: dict, value: float) -> None:
    """Set a param group's learning rate in place when it is a tensor (a captured optimiser reads that
    tensor's memory at every replay; a new Python float would never reach the graph)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(float(value))
    else:
        group["lr"] = float(value)


def make_capturable(optimizers: dict[str, torch.optim.Optimizer], device: torch.device) -> None:
    """Learning rates as device tensors and, on CUDA, `capturable=True` (step counts kept on the device).

    On the CPU only the tensor learning rate applies (torch has no capturable CPU optimisers); that is
    what lets a CPU test check that a tensor rate, advanced in place by the schedule, trains exactly
    as the float one does.
    """
    for opt in optimizers.values():
        for group in opt.param_groups:
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
            if device.type == "cuda":
                group["capturable"] = True


def portable_optimizer_state(state: dict) -> dict:
    """An optimiser state_dict that loads on any device and path: float learning rates, capturable off."""
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


class CapturedStep:
    """One learner iteration `fn(inputs) -> metrics`, captured once as a CUDA graph and replayed.

    Every call is exactly one real iteration: the first `warmup` calls run `fn` eagerly on a side
    stream (capture needs the optimiser state, cuBLAS workspaces and compiled kernels to exist
    already); the next call captures, which records without running, and then replays once. The
    returned metrics live in the graph's static memory and are overwritten by the next replay, as an
    eager step's would be replaced.
    """

    def __init__(self, fn: Callable[[dict | None], dict[str, torch.Tensor]], warmup: int = 3):
        self.fn, self.warmup_left = fn, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: dict[str, torch.Tensor] | None = None
        self.outputs: dict[str, torch.Tensor] = {}

    def __call__(self, inputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        if self.graph is not None:
            if inputs is not None:
                for k, v in inputs.items():
                    self.static_inputs[k].copy_(v, non_blocking=True)
            self.graph.replay()
            return self.outputs
        if self.warmup_left > 0:
            self.warmup_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.fn(inputs)
            torch.cuda.current_stream().wait_stream(side)
            return out
        self.static_inputs = {k: v.clone() for k, v in inputs.items()} if inputs is not None else None
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the online feed's thread keeps copying batches to the device during the
        # capture; the default ("global") would fail that thread's CUDA calls while capturing
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = self.fn(self.static_inputs)
        self.graph.replay()
        return self.outputs


class PretrainStep:
    """One pretraining iteration on a batch drawn from the offline buffer, by the configured path.

    `step(train_actor, train_critic)` returns the iteration's metrics, observed by `watch`, and has
    advanced the schedules and step counters: the same contract whichever path runs it.
    """

    def __init__(self, learner, buffer, batch_size: int, watch, how: str = "eager"):
        check_learner_step(how, learner.device)
        self.learner, self.buffer, self.batch_size, self.watch, self.how = learner, buffer, batch_size, watch, how
        if "compile" in how:
            learner.compile_objectives()
        if "graph" in how:
            make_capturable(learner.optimizers, learner.device)
        self._graphs: dict[tuple[bool, bool], CapturedStep] = {}   # one per (actor, critic) phase

    def _device_step(self, train_actor: bool, train_critic: bool) -> dict[str, torch.Tensor]:
        metrics = self.learner.device_update(self.buffer.sample(self.batch_size), train_actor, train_critic)
        self.watch.observe(metrics)
        return metrics

    def __call__(self, train_actor: bool, train_critic: bool) -> dict[str, torch.Tensor]:
        if "graph" in self.how:
            key = (train_actor, train_critic)
            if key not in self._graphs:
                self._graphs[key] = CapturedStep(lambda _: self._device_step(*key))
            metrics = self._graphs[key]()
        else:
            metrics = self._device_step(train_actor, train_critic)
        self.learner.advance(actor_steps=int(train_actor), critic_steps=int(train_critic))
        return metrics
