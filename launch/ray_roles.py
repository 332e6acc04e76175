"""The roles of a finetuning run placed by Ray, on one machine or a cluster (`launch.finetune --launcher=ray`).

Each role runs the same program as with the local launcher (launch/learner.py, evaluator.py,
actor.py), started by a small Ray actor, `RoleHost`, on the node Ray chose for it. `RayChild`
gives the supervisor the interface of a local `Child` (launch/supervision.py), so the supervisor's
rules (start order, restarts, the learner's restart from its checkpoint, the stop order, the logs,
wandb and the curve) are one code for both launchers; Ray adds placement by resources and a
role lost with its node (it is restarted on another one, by the same rules as a dead process).

Placement: the learner on the driver's node (its dataset, checkpoints and replay stay there; a
learner on CUDA asks for a GPU), the actors with `online.ray_actor_cpus` CPUs each, the evaluator
anywhere. A role on another node gets the run's small files (config, dataset description, key)
through Ray and its log files come back through Ray into the driver's run directory, so nothing is
copied by hand; a role on the driver's node uses the run directory itself.

Security: Ray listens without authentication like Reverb. A local cluster (no --ray_address) binds
to 127.0.0.1 only; joining a cluster is explicit and its network must be private (README).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launch.supervision import ROOT, Child, _die_with_parent

SHIPPED = ("config.json", "dataset_meta.json", "run_key")     # what a role on another node needs
NODE_LOST = -1000                                            # returncode of a role whose node went away
# the driver's settings that the roles read: where datasets live (the learner's, on the driver's node),
# wandb's mode and credentials, MuJoCo's renderer
PASSED_ENV = ("MINARI_DATASETS_PATH", "WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "MUJOCO_GL", "HOME")


def start_ray(address: str | None, num_cpus: int, say=print) -> dict:
    """Join the cluster at `address` ('auto' or HOST:PORT), or start a local one bound to 127.0.0.1."""
    import ray

    # Workers of a cluster started by `ray start` have that shell's environment, not ours: they get this
    # repository on their path (at the same place on every node, README) and the settings the roles read.
    env_vars = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env_vars["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    runtime_env = {"env_vars": env_vars}
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
        say(f"ray: joined the cluster at {address} ({len(ray.nodes())} nodes); its network must be private")
    else:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env=runtime_env)
        say(f"ray: a local cluster on 127.0.0.1 with {num_cpus} CPUs")
    return {"driver_node": ray.get_runtime_context().get_node_id()}


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class RoleHost:
    """Runs one role's program on its node and reports on it (a Ray actor; see `RayChild`)."""

    def __init__(self, name: str, argv: list[str], run_dir: str, env: dict, files: dict[str, bytes],
                 mirror: bool):
        self.name = name
        self.mirror = mirror
        self.local_dir = Path(tempfile.mkdtemp(prefix=f"role-{name}-")) if mirror else Path(run_dir)
        (self.local_dir / "logs").mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = self.local_dir / rel
            path.write_bytes(data)
            if rel == "run_key":
                os.chmod(path, 0o600)
        argv = [a.replace(run_dir, str(self.local_dir)) for a in argv] if mirror else argv
        self.offsets: dict[str, int] = {}
        out = open(self.local_dir / "logs" / f"{name}.out", "a")
        self.proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                                          "PYTHONUNBUFFERED": "1", **env},
                                     stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()

    def poll(self) -> tuple[int | None, dict[str, bytes]]:
        """(exit status or None, what its log files gained since the last poll when mirrored)."""
        rc = self.proc.poll()
        new: dict[str, bytes] = {}
        if self.mirror:
            for path in sorted((self.local_dir / "logs").iterdir()):
                if not path.is_file():
                    continue
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path.name, 0))
                    chunk = f.read()
                if path.suffix == ".jsonl":            # whole rows only
                    chunk = chunk[: chunk.rfind(b"\n") + 1]
                if chunk:
                    self.offsets[path.name] = self.offsets.get(path.name, 0) + len(chunk)
                    new[path.name] = chunk
        return rc, new

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def close(self) -> None:
        """Remove this role's copy of the run (mirrored roles); its logs were shipped by the last poll."""
        if self.mirror:
            import shutil
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def pid(self) -> int:
        return self.proc.pid

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RayChild(Child):
    """A role that Ray places (see the module docstring); the local `Child`'s interface."""

    def __init__(self, name: str, args: list[str], run_dir: Path, env: dict | None = None, *,
                 driver_node: str, on_driver_node: bool = False, num_cpus: float = 0.0, num_gpus: float = 0.0,
                 mirror: bool | None = None):
        super().__init__(name, args, run_dir, env)
        self.driver_node, self.on_driver_node = driver_node, on_driver_node
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.force_mirror = mirror          # None: mirror exactly when placed off the driver's node
        self.host = None
        self._rc: int | None = None
        self.node_id: str | None = None

    def start(self, extra_args: list[str] | None = None) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._release()
        self.out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        options = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_restarts": 0,
                   "name": None, "lifetime": None}
        if self.on_driver_node:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.driver_node, soft=False)
        remote = ray.remote(RoleHost).options(**{k: v for k, v in options.items() if v is not None})
        mirror = self.force_mirror
        if mirror is None:   # a role that may land on another node works in a copy and ships its logs back
            mirror = not self.on_driver_node and len([n for n in ray.nodes() if n.get("Alive")]) > 1
        files = {rel: (self.run_dir / rel).read_bytes() for rel in SHIPPED if (self.run_dir / rel).exists()} \
            if mirror else {}
        self.host = remote.remote(self.name, [*self.args, *(extra_args or [])], str(self.run_dir),
                                  self.extra_env, files, mirror)
        self._rc = None

    def _poll(self) -> None:
        import ray

        if self.host is None or self._rc is not None:
            return
        try:
            rc, new = ray.get(self.host.poll.remote(), timeout=60)
        except ray.exceptions.GetTimeoutError:
            return                      # busy node: ask again next round
        except ray.exceptions.RayError:
            rc, new = NODE_LOST, {}
        for name, chunk in new.items():
            with open(self.run_dir / "logs" / name, "ab") as f:
                f.write(chunk)
        self._rc = rc

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
        return super().exit_reason()

    def _release(self) -> None:
        import ray

        if self.host is not None:
            self._poll()
            try:
                if self._rc is not None and self._rc != NODE_LOST:
                    ray.get(self.host.close.remote(), timeout=30)
            except Exception:
                pass
            try:
                ray.kill(self.host)
            except Exception:
                pass
            self.host = None
