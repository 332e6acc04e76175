"""μ's pretraining updates in a process of their own, so that pretraining uses two CPU cores.

Why: on a CPU one pretraining iteration of the default job is ~8 ms of V+Q and ~6 ms of μ, run one
after the other. Two Python threads gain only x1.23 (the GIL: ~40 % of a step is Python and
dispatch overhead) and two torch intra-op threads x1.12-1.21 (issue 23). In pretraining μ learns
only from the dataset's (s, a), never from Q or V, so its updates can run in a second process while
the main one trains V, Q (and the multipliers): `config.pretrain_processes="two"`.

How it stays exact and resumable:
- the worker builds a whole `Learner` from the run's config and trains only its μ, through the same
  `PretrainStep` / `Learner.device_update` code as the one-process loop, from its own RNG (seeded from
  config.seed and the step it starts at, a stream apart from the main process's);
- it trains ahead freely and sends a snapshot (μ, μ-EMA, optimiser, schedule, actor_steps, its RNG
  state, its last loss, whether every loss was finite) at every *sync point* of the main loop
  (`is_sync_step`: log, evaluation and checkpoint steps, stop_after_steps, the last step). The main
  process loads the snapshot into its own Learner there, so evaluation, calibration, logging and
  checkpoints read μ as before; a checkpoint also keeps the worker's RNG state (`behavior_rng`);
- a run resumed from that checkpoint starts the worker from the saved μ and RNG state, so it ends
  bit for bit as an uninterrupted one (tests/test_pretrain_processes.py). A signal stops the main
  loop at its next sync point, where a snapshot is due anyway;
- messages are `torch.save` bytes read back with `weights_only=True`, as checkpoints are.

The worker ignores SIGINT / SIGTERM (the main process decides where to stop), dies with its parent
(PR_SET_PDEATHSIG, and a closed pipe) and reports its own failure as a message before exiting.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import threading

import torch

PRETRAIN_PROCESSES = ("auto", "one", "two")
# "auto" keeps one process for shorter runs: starting the worker (a fresh interpreter importing torch and
# the learner) takes ~2-4 s, more than a few hundred steps gain, and tests' tiny runs would pay it each time
AUTO_MIN_ACTOR_STEPS = 2_000
# the worker's RNG stream: config.seed and the start step mixed with a constant, away from the
# main process's torch.manual_seed(config.seed)
_SEED_SALT = 0x5EED_B0_7


def behavior_seed(seed: int, actor_steps: int) -> int:
    return (int(seed) * 1_000_003 + int(actor_steps) * 7_919 + _SEED_SALT) % (2 ** 63)


def is_sync_step(cfg, step: int, total: int) -> bool:
    """Steps at which the main loop reads μ: logging, evaluation, checkpoint, stop_after_steps, the end.

    The one definition both processes use: the worker sends a snapshot exactly at these steps.
    """
    return (step % cfg.log_interval == 0 or step % cfg.eval.interval == 0 or step % cfg.checkpoint_interval == 0
            or step == cfg.stop_after_steps or step == total)


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:           # not Linux
        return os.cpu_count() or 1


def resolve_processes(cfg, device: torch.device) -> str:
    """config.pretrain_processes as "one" or "two"; "auto" is "two" where it pays (issue 23):
    CPU, a diffusion μ, both μ and critic steps to take (at least AUTO_MIN_ACTOR_STEPS μ steps), the eager
    step, and two cores for this process."""
    from errors import UserFacingError
    from networks.factory import algorithm_of

    setting = cfg.get("pretrain_processes", "auto")
    diffusion = algorithm_of(cfg).policy != "gaussian"
    if setting == "two" and device.type != "cpu":
        raise UserFacingError(f"config.pretrain_processes='two' trains μ in a second CPU process; this run is on "
                              f"{device}. Use 'auto' or 'one'.")
    if setting != "auto":
        return setting
    fits = (device.type == "cpu" and diffusion and cfg.num_actor_steps >= AUTO_MIN_ACTOR_STEPS
            and cfg.num_critic_steps > 0
            and cfg.learner_step == "eager" and cores_available() >= 2)
    return "two" if fits else "one"


def encode(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def decode(data: bytes):
    """Tensors, numbers, strings and containers only: nothing else is unpickled (as checkpoints)."""
    return torch.load(io.BytesIO(data), weights_only=True)


class BehaviorBatches:
    """(s, a) rows of the offline data, drawn as `OfflineBuffer.sample` draws them (one randint)."""

    def __init__(self, obs: torch.Tensor, act: torch.Tensor):
        self.obs, self.act, self.size = obs, act, obs.shape[0]

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (batch_size,))
        return {"obs": self.obs[idx], "act": self.act[idx]}


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the parent dies (Linux), and exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                          # elsewhere the closed pipe ends the worker at its next sync point
    if os.getppid() != parent_pid:
        os._exit(0)


def _serve(cfg_json: str, obs_dim: int, act_dim: int, conn, parent_pid: int) -> None:
    # the main process decides where a run stops (its next sync point); a Ctrl-C reaches the whole group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    try:
        _train(cfg_json, obs_dim, act_dim, conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return                        # the main process is gone or closed the pipe: nothing to report to
    except BaseException as e:        # reported by the main process, which stops the run with it
        import traceback

        try:
            conn.send_bytes(encode({"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}))
        except OSError:
            pass
        raise SystemExit(1)


def _train(cfg_json: str, obs_dim: int, act_dim: int, conn) -> None:
    import json

    import ml_collections

    from learner.agent import Learner
    from learner.fast_path import PretrainStep, set_matmul_precision
    from learner.nonfinite import NonFiniteWatch
    from networks.linear import set_cpu_matmul

    torch.set_num_threads(1)
    cfg = ml_collections.ConfigDict(json.loads(cfg_json))
    device = torch.device("cpu")
    set_matmul_precision(cfg.matmul_precision, device)
    set_cpu_matmul(cfg.cpu_matmul)           # the main process's route: the same rounding
    start = decode(conn.recv_bytes())
    learner = Learner(cfg, obs_dim, act_dim, device)
    learner.load_behavior_state_dict(start["behavior"])
    learner.train(True)
    torch.set_rng_state(start["rng"])
    watch = NonFiniteWatch(device)
    # the one-process loop's own code, with μ's rows only: Learner.device_update(train_critic=False)
    step = PretrainStep(learner, BehaviorBatches(start["obs"], start["act"]), cfg.actor_batch_size, watch, "eager")
    total = max(cfg.num_critic_steps, cfg.num_actor_steps)
    while learner.actor_steps < cfg.num_actor_steps:
        metrics = step(train_actor=True, train_critic=False)
        k = learner.actor_steps
        if k == cfg.num_actor_steps or is_sync_step(cfg, k, total):
            conn.send_bytes(encode({"step": k, "behavior": learner.behavior_state_dict(),
                                    "rng": torch.get_rng_state(), "finite": watch.finite(),
                                    "metrics": {name: v.detach() for name, v in metrics.items()}}))
    conn.recv_bytes()                        # done: wait for the main process to close the pipe


class BehaviorWorkerFailed(RuntimeError):
    pass


class BehaviorWorker:
    """The main process's end: start the worker from the Learner's μ state, take snapshots, close."""

    def __init__(self, cfg, learner, obs: torch.Tensor, act: torch.Tensor, rng: torch.Tensor | None):
        ctx = mp.get_context("spawn")        # no fork of a process with threads (and, elsewhere, CUDA)
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_serve, name="pretrain-behavior",
                                   args=(cfg.to_json(), obs.shape[1], act.shape[1], child, os.getpid()),
                                   daemon=True)
        # signals blocked while the child starts: none is lost here, and the child never sees one
        # before it ignores them (the mask is inherited)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()
        if rng is None:
            rng = _seeded_state(behavior_seed(cfg.seed, learner.actor_steps))
        start = encode({"behavior": learner.behavior_state_dict(), "rng": rng,
                        "obs": obs.detach().cpu().contiguous(), "act": act.detach().cpu().contiguous()})
        # sent from a thread: the child is still importing torch, and the main loop need not wait for it
        self._sending = threading.Thread(target=self._send, args=(start,), name="behavior-start", daemon=True)
        self._send_error: BaseException | None = None
        self._sending.start()

    def _send(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except OSError as e:                 # the child died first: reported by `snapshot`
            self._send_error = e

    def _failed(self, why: str) -> BehaviorWorkerFailed:
        self.process.join(timeout=5.0)
        return BehaviorWorkerFailed(f"The behaviour-model process (config.pretrain_processes='two') {why} "
                                    f"(exit code {self.process.exitcode}); pretraining stopped. "
                                    f"--config.pretrain_processes=one trains μ in the main process.")

    def snapshot(self, step: int) -> dict:
        """μ's state after `step` actor steps, waiting for the worker if it is behind."""
        self._sending.join()
        # a start that could not be sent (the worker died first) ends below: its own error message, or EOF
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                started = "" if self._send_error is None else f", without taking its start ({self._send_error})"
                raise self._failed(f"exited before delivering μ at step {step}{started}")
        try:
            message = decode(self.conn.recv_bytes())
        except (EOFError, OSError):
            raise self._failed(f"exited before delivering μ at step {step}") from None
        if "error" in message:
            raise self._failed(f"failed: {message['error']}")
        if message["step"] != step:
            raise self._failed(f"sent μ of step {message['step']} where step {step} was due")
        return message

    def close(self) -> None:
        """Stop the worker (idempotent): close the pipe, which ends it, then make sure."""
        self._sending.join(timeout=5.0)
        self.conn.close()
        self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)


def _seeded_state(seed: int) -> torch.Tensor:
    """The CPU generator state torch.manual_seed(seed) gives, without touching this process's generator."""
    return torch.Generator().manual_seed(seed).get_state()
