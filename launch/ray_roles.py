"""The roles of a finetuning run placed by Ray, on one machine or a cluster (`launch.finetune --launcher=ray`).

Each role runs the same program as with the local launcher (launch/learner.py, evaluator.py,
actor.py); the actors and the evaluator are started by a small Ray actor, `RoleHost`, on the node
Ray chose for it. `RayChild` gives the supervisor the interface of a local `Child`
(launch/supervision.py), so the supervisor's rules (start order, the learner's restart from its
checkpoint, the stop order, the logs, wandb and the curve) are one code for both launchers; Ray
adds placement by resources.

Restarts: an actor is restarted by Ray itself (`max_restarts` = online.actor_restart_limit). Its
host ends its own Ray worker when the actor's process dies, so a crashed actor, a killed worker and
a lost node all look the same to Ray, which starts the host again (on any node with room) and the
host starts the actor again; the supervisor only counts the new lives and gives up when Ray does.
The learner and the evaluator keep the supervisor's rules (the learner must come back from its
checkpoint, on the driver's node, with its replay; the evaluator behind it), as on one machine.

Placement: the learner on the driver's node (its dataset, checkpoints and replay stay there): it is
the driver's own child process, as with the local launcher, started while Ray itself comes up (which
keeps Ray's start-up off the run's), and its CPU (and GPU when it runs on CUDA) is reserved in Ray's
books by `reserve_learner_seat`. The actors take `online.ray_actor_cpus` CPUs each, the evaluator
goes anywhere. A role on another node gets the run's small files (config, dataset description, key)
through Ray and its log files come back through Ray into the driver's run directory, so nothing is
copied by hand; a role on the driver's node uses the run directory itself.

Security: Ray listens without authentication like Reverb. A local cluster (no --ray_address) binds
to 127.0.0.1 only; joining a cluster is explicit and its network must be private (README).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from launch.supervision import ROOT, Child, _die_with_parent
from replay.loopback import is_loopback

SHIPPED = ("config.json", "dataset_meta.json", "run_key")     # what a role on another node needs
NODE_LOST = -1000                                            # returncode of a role whose node went away
RAY_GAVE_UP = -1001                                          # ... of a role Ray restarted until its limit
# the driver's settings that the roles read: where datasets live (the learner's, on the driver's node),
# wandb's mode and credentials, MuJoCo's renderer
PASSED_ENV = ("MINARI_DATASETS_PATH", "WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "MUJOCO_GL", "HOME")


def check_cluster_address(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT to join must answer now: Ray itself retries a wrong one for ~14 minutes (measured,
    Ray 2.60) before it says so, and the run would first pretrain. 'auto' is left to Ray, which
    fails at once when no cluster runs on this machine."""
    import socket

    from errors import UserFacingError

    if address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")     # ray://HOST:PORT (Ray Client) too
    if not sep or not host or not port.isdigit():
        raise UserFacingError(f"--ray_address={address}: give 'auto' or HOST:PORT (the head's port, "
                              f"6379 unless `ray start --head --port=...` said otherwise).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserFacingError(f"--ray_address={address}: nothing answers there ({e.strerror or e}). Start the "
                              f"head with `ray start --head --port={port}` on {host}, or check the host, the port "
                              f"and the firewall between the machines (README, 'Ray').") from None


def start_ray(address: str | None, num_cpus: int, say=print) -> None:
    """Join the cluster at `address` ('auto' or HOST:PORT), or start a local one bound to 127.0.0.1."""
    import ray

    # The workers need this repository on their path (at the same place on every node, README) and the
    # settings the roles read.
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if address:   # workers of a cluster started by `ray start` have that shell's environment: a runtime env
        env_vars = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        ray.init(address=address, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {**env_vars, "PYTHONPATH": python_path}})
        say(f"ray: joined the cluster at {address} ({len(ray.nodes())} nodes); its network must be private")
    else:         # a local cluster's workers inherit this environment; without a runtime env the workers
        os.environ["PYTHONPATH"] = python_path     # that Ray starts ahead host the roles (~1 s each sooner)
        with local_ray_on_loopback():
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        where = {n["NodeManagerAddress"] for n in ray.nodes()}
        if not all(is_loopback(a) for a in where):
            ray.shutdown()
            raise RuntimeError(f"the local Ray cluster came up on {', '.join(sorted(where))}, not on loopback; "
                               "stopped it rather than listen on the network (launch/ray_roles.py)")
        say(f"ray: a local cluster on 127.0.0.1 with {num_cpus} CPUs")


@contextlib.contextmanager
def local_ray_on_loopback():
    """Around the ray.init that starts a local cluster. Ray (2.60) turns `_node_ip_address="127.0.0.1"`
    into the machine's outside address, and its servers then listen on every interface; it keeps to
    loopback only where it takes clusters to be unsupported (macOS, Windows), a switch read from the
    environment when ray is imported (the cluster's processes inherit it) and kept on a module. Both
    are set for the start and put back after it, so that this process can still join or make a real
    cluster later (tests); start_ray checks the outcome."""
    saved_env = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved_env


def reserve_learner_seat(num_cpus: float, num_gpus: float):
    """Reserve the learner's CPU (and GPU) on the driver's node in Ray's books, so that Ray places no
    actor on them: the learner itself is the driver's own child process (launch/finetune.py), started
    while Ray comes up. A placement group, not a placeholder actor: it holds no worker process. Not
    waited for; the job's end releases it."""
    import ray
    from ray.util.placement_group import placement_group

    bundle = {"CPU": float(num_cpus), f"node:{ray.util.get_node_ip_address()}": 0.001}
    if num_gpus:
        bundle["GPU"] = float(num_gpus)
    return placement_group([bundle], strategy="STRICT_PACK", name="learner-seat")


class RayStart(threading.Thread):
    """`start_ray` on a thread of its own, so that the ~4 s of ray.init overlap the driver's own start-up
    (imports, the dataset, the learner's own start); `wait()` returns once Ray is up or raises its error.

    The thread lives until `stop_ray`: a local cluster's processes are started with PR_SET_PDEATHSIG,
    which kills them when the *thread* that started them ends. Off the main thread ray.init installs no
    Python SIGTERM handler (it warns; the warning is dropped here), but its core worker still installs a
    C-level one: the driver re-installs its own handlers once Ray is up (launch/finetune.py)."""

    def __init__(self, address: str | None, num_cpus: int, say=print):
        super().__init__(name="ray-start", daemon=True)
        self.args = (address, num_cpus, say)
        self.up, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start_ray(*self.args)
        except BaseException as e:    # handed to whoever calls wait()
            self.error = e
        self.up.set()
        self.release.wait()

    def wait(self) -> None:
        self.up.wait()
        if self.error is not None:
            raise self.error


_starting: RayStart | None = None     # the start that stop_ray waits for and then lets end


def start_ray_in_background(address: str | None, num_cpus: int, say=print) -> RayStart:
    global _starting
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: "SIGTERM handler is not set" not in record.getMessage())
    _starting = RayStart(address, num_cpus, say)
    _starting.start()
    return _starting


def stop_ray() -> None:
    """Shut down the driver's connection (and a local cluster), after a start still under way."""
    import ray

    if _starting is not None:
        _starting.up.wait(300)
    if ray.is_initialized():
        ray.shutdown()
    if _starting is not None:
        _starting.release.set()


class RoleHost:
    """Runs one role's program on its node and reports on it (a Ray actor; see `RayChild`).

    With `exit_with_role`, the host's Ray worker ends when the role's process dies on its own, so that
    Ray restarts the host (and the role) by the actor's `max_restarts`. The reason is left in
    logs/<name>.lives for the next life to report. A mirrored role works in a folder named after the
    run, so a life that Ray restarts on the same node ships what the previous life wrote last.
    """

    def __init__(self, name: str, argv: list[str], run_dir: str, env: dict, files: dict[str, bytes],
                 mirror: bool, exit_with_role: bool = False):
        import ray

        self.name, self.mirror, self.stopping = name, mirror, False
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if mirror:
            tag = hashlib.sha1(run_dir.encode()).hexdigest()[:12]
            self.local_dir = Path(tempfile.gettempdir()) / f"role-{name}-{tag}"
            if not restarted:            # a first start: nothing of an earlier run's copy is shipped
                import shutil
                shutil.rmtree(self.local_dir, ignore_errors=True)
        else:
            self.local_dir = Path(run_dir)
        (self.local_dir / "logs").mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = self.local_dir / rel
            path.write_bytes(data)
            if rel == "run_key":
                os.chmod(path, 0o600)
        # logs/<name>.lives: how many lives started here and why each that ended did; the driver reads
        # the reasons of lives it has not counted yet (two restarts between its polls are two)
        self.lives_file = self.local_dir / "logs" / f"{name}.lives"
        lives = json.loads(self.lives_file.read_text()) if restarted and self.lives_file.exists() else \
            {"started": 1 if restarted else 0, "ended": []}
        while len(lives["ended"]) < lives["started"]:    # a life that ended without saying: its worker or node
            lives["ended"].append(f"{name} was lost with its Ray worker or node")
        lives["started"] += 1
        self.lives_file.write_text(json.dumps(lives))
        self.lives = lives
        argv = [a.replace(run_dir, str(self.local_dir)) for a in argv] if mirror else argv
        out = open(self.local_dir / "logs" / f"{name}.out", "a")
        self.proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                                          "PYTHONUNBUFFERED": "1", **env},
                                     stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()
        if exit_with_role:
            threading.Thread(target=self._end_with_role, daemon=True).start()

    def _end_with_role(self) -> None:
        rc = self.proc.wait()
        if self.stopping or rc == 0:
            return                       # stopped by the supervisor, or done: the host stays to report it
        how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited (code {rc})"
        # for the next life only: a poll answered in the meantime must not count this life as restarted yet
        self.lives_file.write_text(json.dumps({**self.lives, "ended": [*self.lives["ended"], f"{self.name} {how}"]}))
        os._exit(1)                      # Ray sees its worker die and restarts this host, if restarts are left

    def poll(self, offsets: dict[str, int]) -> tuple[int | None, dict[str, tuple[int, bytes]], dict]:
        """(exit status or None, when mirrored what each log file holds past the driver's `offsets`, as
        (offset, bytes), and the lives so far: this one's worker pid and why the earlier ones ended).
        The driver keeps the offsets, so a poll whose answer was lost (the worker died) is asked again."""
        rc = self.proc.poll()
        new: dict[str, tuple[int, bytes]] = {}
        if self.mirror:
            for path in sorted((self.local_dir / "logs").iterdir()):
                if not path.is_file() or path.suffix == ".lives":
                    continue
                at = offsets.get(path.name, 0)
                if path.stat().st_size < at:     # a new copy (a life on another node): from its start
                    at = 0
                with open(path, "rb") as f:
                    f.seek(at)
                    chunk = f.read()
                if path.suffix == ".jsonl":            # whole rows only
                    chunk = chunk[: chunk.rfind(b"\n") + 1]
                if chunk:
                    new[path.name] = (at, chunk)
        return rc, new, {"worker_pid": os.getpid(), "ended": list(self.lives["ended"])}

    def signal(self, signum: int) -> None:
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def close(self) -> None:
        """Remove this role's copy of the run (mirrored roles); its logs were shipped by the last poll."""
        if self.mirror:
            import shutil
            shutil.rmtree(self.local_dir, ignore_errors=True)


class RayChild(Child):
    """A role that Ray places (see the module docstring); the local `Child`'s interface.

    `ray_restarts` > 0: Ray restarts the role up to that many times (RoleHost's `exit_with_role`);
    `lives_restarted` tells the supervisor of each new life, and the role is dead only when Ray gave up.
    """

    def __init__(self, name: str, args: list[str], run_dir: Path, env: dict | None = None, *,
                 num_cpus: float = 0.0, mirror: bool | None = None, ray_restarts: int = 0):
        super().__init__(name, args, run_dir, env)
        self.num_cpus = num_cpus
        self.force_mirror = mirror          # None: mirror exactly when the cluster has other nodes
        self.ray_restarts = int(ray_restarts)
        self.restarts_itself = self.ray_restarts > 0
        self.host = None
        self._rc: int | None = None
        self._offsets: dict[str, int] = {}
        self._worker: int | None = None
        self._new_lives: list[str] = []

    def start(self, extra_args: list[str] | None = None) -> None:
        import ray

        self._release()
        self.out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        remote = ray.remote(RoleHost).options(num_cpus=self.num_cpus, max_restarts=self.ray_restarts)
        mirror = self.force_mirror
        if mirror is None:   # a role that may land on another node works in a copy and ships its logs back
            mirror = len([n for n in ray.nodes() if n.get("Alive")]) > 1
        files = {rel: (self.run_dir / rel).read_bytes() for rel in SHIPPED if (self.run_dir / rel).exists()} \
            if mirror else {}
        self.host = remote.remote(self.name, [*self.args, *(extra_args or [])], str(self.run_dir),
                                  self.extra_env, files, mirror, self.restarts_itself)
        self._rc, self._offsets, self._worker = None, {}, None

    def _poll(self) -> None:
        import ray

        if self.host is None or self._rc is not None:
            return
        try:   # retried by Ray while it restarts the host; an error means the host is gone for good
            rc, new, life = ray.get(self.host.poll.options(max_task_retries=-1 if self.restarts_itself else 0)
                                    .remote(dict(self._offsets)), timeout=60)
        except ray.exceptions.GetTimeoutError:
            return                      # busy node, or a host being placed again: ask again next round
        except ray.exceptions.RayError:
            if self.restarts_itself:    # Ray gives up only after all its restarts: count those not seen yet
                self._new_lives.extend([f"{self.name} died (reason not reported)"] *
                                       max(0, self.ray_restarts - self.restarts))
                self.restarts = max(self.restarts, self.ray_restarts)
            self._rc = RAY_GAVE_UP if self.restarts_itself else NODE_LOST
            return
        ended = life["ended"][self.restarts:]
        if not ended and self._worker is not None and life["worker_pid"] != self._worker:
            ended = [f"{self.name} was lost with its Ray worker or node"]   # a life on a new node knows only itself
        self.restarts += len(ended)
        self._new_lives.extend(ended)
        self._worker = life["worker_pid"]
        for name, (at, chunk) in new.items():
            with open(self.run_dir / "logs" / name, "ab") as f:
                f.write(chunk)
            self._offsets[name] = at + len(chunk)
        self._rc = rc

    def lives_restarted(self) -> list[str]:
        """Why each life that Ray restarted since the last call ended (empty for a supervisor-restarted role)."""
        self._poll()
        said, self._new_lives = self._new_lives, []
        return said

    @property
    def returncode(self) -> int | None:
        return self._rc

    def alive(self) -> bool:
        self._poll()
        return self.host is not None and self._rc is None

    def signal_stop(self) -> None:
        if self.alive():
            self.host.signal.remote(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        if self.alive():
            self.signal_stop()
            deadline = time.time() + timeout
            while self.alive() and time.time() < deadline:
                time.sleep(0.2)
            if self.alive():
                print(f"  {self.name} did not stop within {timeout:.0f}s; killing it", flush=True)
                self.host.signal.remote(signal.SIGKILL)
                while self.alive() and time.time() < deadline + 30:
                    time.sleep(0.2)
        self._release()

    def exit_reason(self) -> str:
        if self._rc == NODE_LOST:
            return f"{self.name} was lost with its node (or its Ray worker)"
        if self._rc == RAY_GAVE_UP:
            return f"{self.name} died again and Ray did not restart it: its {self.ray_restarts} restarts are spent"
        return super().exit_reason()

    def _release(self) -> None:
        import ray

        if self.host is not None:
            self._poll()
            try:
                if self._rc is not None and self._rc not in (NODE_LOST, RAY_GAVE_UP):
                    ray.get(self.host.close.remote(), timeout=30)
            except Exception:
                pass
            try:
                ray.kill(self.host)
            except Exception:
                pass
            self.host = None
