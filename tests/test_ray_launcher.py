"""`launch.finetune --launcher=ray`: the same job with its roles placed by a real local Ray cluster
(127.0.0.1), real Reverb and real MuJoCo; and a role on "another node" (its own copy of the run's
files, its logs shipped back through Ray), on this one machine."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")

from tests.test_finetune import exited_cleanly, processes_of, supervisor, wait_for  # noqa: E402

# Every test here starts a Ray cluster and looks for Ray's processes by creation time: with pytest-xdist they
# all run in one worker, with tests/test_finetune.py's Ray runs, never beside another cluster (tests/conftest.py).


@pytest.fixture
def store(ft_store):
    return ft_store          # made once per session (tests/conftest.py), shared with tests/test_finetune.py


def ray_processes(since: float) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name", "cmdline", "create_time"]):
        try:
            cmd = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        except psutil.Error:
            continue
        if p.info["create_time"] >= since and any(k in cmd for k in ("raylet", "gcs_server", "ray::", "ray/_private")):
            found.append(p)
    return found


@pytest.fixture
def restore_environ():
    """ray.init sets RAY_AUTH_MODE=token and more in this process's environment; later tests start
    their own clusters and supervisors, which must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def probe_run_dir(tmp_path: Path) -> Path:
    """A run directory with the small files a role on another node is shipped (config, owner-only key)."""
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "config.json").write_text('{"x": 1}')
    (run_dir / "run_key").write_bytes(os.urandom(32))
    os.chmod(run_dir / "run_key", 0o600)
    return run_dir


def listening_off_loopback(processes: list[psutil.Process]) -> list[str]:
    from replay.loopback import is_loopback

    pids = {p.pid: " ".join(p.cmdline())[:80] for p in processes if p.is_running()}
    return [f"{c.laddr.ip}:{c.laddr.port} ({pids[c.pid]})" for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids and not is_loopback(c.laddr.ip)]


def test_a_role_on_another_node_gets_the_run_files_and_its_logs_come_back(tmp_path, restore_environ):
    """The shipping path of a multi-node run, forced on one machine: the role works in its own copy.
    The local cluster (and the role's worker) listen on loopback only: Ray 2.60 put them on every
    interface although told 127.0.0.1 (launch/ray_roles.local_ray_on_loopback)."""
    import ray

    from launch.ray_roles import RayChild, reserve_learner_seat, start_ray, stop_ray

    run_dir = probe_run_dir(tmp_path)
    t0 = time.time()
    start_ray(None, num_cpus=1, say=lambda m: None)
    try:
        child = RayChild("probe", ["tests.ray_probe", f"--run_dir={run_dir}"], run_dir, mirror=True)
        child.start()
        wait_for(lambda: not child.alive(), 120, what="the probe to finish")
        assert child.returncode == 0, child.tail()
        rows = [json.loads(line) for line in (run_dir / "logs" / "probe.jsonl").read_text().splitlines()]
        assert [r["i"] for r in rows] == [0, 1, 2]
        copy = Path(rows[0]["run_dir"])
        assert copy != run_dir and rows[0]["config"] == {"x": 1} and rows[0]["key_mode"] == 0o600
        assert "probe done" in child.output()
        assert ray.available_resources().get("CPU") == 1
        assert reserve_learner_seat(1.0, 0.0).wait(30)        # the learner's core, on the driver's node
        assert ray.available_resources().get("CPU", 0) == 0
        ours = [psutil.Process(), *ray_processes(t0)]
        assert len(ours) >= 3, ours                       # the driver, GCS, raylet at least
        assert not listening_off_loopback(ours), listening_off_loopback(ours)
        child.stop(10)
    finally:
        stop_ray()
    assert not ray.is_initialized()


def test_ray_restarts_a_failing_role_up_to_its_limit_and_every_life_is_counted_and_shipped(tmp_path, restore_environ):
    """A role that always fails (exit 3), with Ray's max_restarts = 2: three lives, each one's log rows
    shipped back (a restarted life works in the same copy of the run), both restarts reported with the
    reason, then the role is dead with Ray's give-up as the reason."""
    from launch.ray_roles import RayChild, start_ray, stop_ray

    run_dir = probe_run_dir(tmp_path)
    start_ray(None, num_cpus=1, say=lambda m: None)
    try:
        child = RayChild("probe", ["tests.ray_probe", f"--run_dir={run_dir}", "--exit_code=3"], run_dir,
                         mirror=True, ray_restarts=2)
        child.start()
        said = []
        wait_for(lambda: said.extend(child.lives_restarted()) or not child.alive(), 180,
                 what="Ray to give up on the probe")
        said.extend(child.lives_restarted())
        assert said == ["probe exited (code 3)"] * 2 and child.restarts == 2
        assert "Ray did not restart it: its 2 restarts are spent" in child.exit_reason()
        rows = [json.loads(line) for line in (run_dir / "logs" / "probe.jsonl").read_text().splitlines()]
        assert [r["i"] for r in rows] == [0, 1, 2] * 3          # three lives, none of their rows lost
        child.stop(10)
    finally:
        stop_ray()


def test_a_two_node_cluster_runs_the_job_like_a_local_run_and_ray_restarts_killed_actors(store, tmp_path,
                                                                                           restore_environ):
    """Two Ray nodes on this machine (ray.cluster_utils.Cluster): the job joins the cluster by address;
    actors that may land on the second node work in a copy of the run's files and ship their logs back;
    Ray itself restarts an actor whose Ray worker is SIGKILLed and one whose own process is; the run
    writes what a local run writes and leaves nothing."""
    from ray.cluster_utils import Cluster

    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)
    try:
        copies = lambda: list(Path(tempfile.gettempdir()).glob("role-actor_*-*"))   # noqa: E731
        before = set(copies())
        with supervisor(["--launcher=ray", f"--ray_address={cluster.address}", "--config.online.total_env_steps=2500"],
                        store, tmp_path) as proc:
            wait_for(lambda: set(copies()) - before, 300, proc, "the actors' own copies of the run")
            wait_for(lambda: any("actor_env_steps" in p.read_text() for p in tmp_path.glob("finetune-*/logs/actor_0.jsonl")),
                     300, proc, "actor 0's rows to come back")
            run_dir = next(tmp_path.glob("finetune-*"))

            def actor_process(k):
                found = [p for p in psutil.process_iter(["cmdline"]) if "launch.actor" in " ".join(p.info["cmdline"] or [])
                         and f"--actor_id={k}" in (p.info["cmdline"] or [])
                         and f"role-actor_{k}-" in " ".join(p.info["cmdline"])]
                assert found, f"actor {k} (in its own copy of the run) not found"
                return found[0]
            worker = actor_process(0).parent()                # the Ray worker hosting actor 0
            assert "RoleHost" in " ".join(worker.cmdline()) or "ray" in " ".join(worker.cmdline()), worker.cmdline()
            worker.kill()
            actor_process(1).kill()                           # actor 1's own process: its host ends its worker
            proc.wait(timeout=600)
        out = exited_cleanly(proc, tmp_path)
        assert "ray: joined the cluster" in out and "(2 nodes)" in out, out[-3000:]
        assert "replay localhost:" not in out         # other nodes are handed this machine's name, not localhost
        assert "actor_0 was lost with its Ray worker or node; Ray restarted it (1/5)" in out, out[-3000:]
        assert "actor_1 was killed by SIGKILL; Ray restarted it (1/5)" in out, out[-3000:]
        assert "restarting (" not in out              # not the supervisor's own restart
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["env_steps"] >= 2500 and summary["learner_steps"] > 0 and summary["actor_restarts"] == 2
        assert len(summary["evaluations"]) >= 2 and (run_dir / "finetune_curve.png").stat().st_size > 1000
        names = {p.name for p in (run_dir / "logs").iterdir()}
        assert {"learner.jsonl", "evaluator.jsonl", "actor_0.jsonl", "actor_1.jsonl", "learner.out"} <= names
        blob = b"".join(f.read_bytes() for f in (run_dir / "wandb").glob("offline-run-*/*.wandb"))
        tag = json.loads((run_dir / "logs" / "evaluator.jsonl").read_text().splitlines()[0])["tag"]
        assert f"eval/{tag}/score_mean".encode() in blob and b"actor/episode_return" in blob   # shipped rows reached wandb
        for k in (0, 1):     # shipped back through Ray: the actors never wrote into run_dir themselves
            rows = (run_dir / "logs" / f"actor_{k}.jsonl").read_text().splitlines()
            assert rows and '"event": "stopped"' in rows[-1]
        assert "acting with weights version" in (run_dir / "logs" / "actor_0.out").read_text()
        inserts = [json.loads(line)["replay_inserts"] for line in (run_dir / "logs" / "learner.jsonl").read_text()
                   .splitlines() if "replay_inserts" in line]
        assert inserts == sorted(inserts)             # the replay's insert counter only grew
        assert not set(copies()) - before, "the actors' copies were left behind"
        assert not processes_of(run_dir)
    finally:
        cluster.shutdown()
    wait_for(lambda: not ray_processes(t0), 60, what="Ray's processes to be gone")
