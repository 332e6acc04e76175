"""End to end: `launch.finetune` with a real Reverb server, 2 actor processes, evaluator and learner.

Tiny networks and a few thousand environment steps: what is checked is the
system's behaviour (curve logged, PNG drawn, an actor killed mid-run is
restarted, an interrupted run resumes with its replay and counters), not
learning quality.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import FT_DATASET_ID

ROOT = Path(__file__).resolve().parents[1]
DATASET_ID = FT_DATASET_ID
HAS_CC = sys.platform.startswith("linux") and bool(shutil.which("cc") or shutil.which("gcc"))

TINY = [f"--config.dataset={DATASET_ID}", "--config.num_critic_steps=30", "--config.num_actor_steps=30",
        "--config.critic_batch_size=64", "--config.actor_batch_size=64", "--config.critic_hidden=(64,64)",
        "--config.diffusion.width=32", "--config.diffusion.inner=64", "--config.diffusion.num_blocks=1",
        "--config.log_interval=10", "--config.checkpoint_interval=30", "--config.eval.interval=30",
        "--config.eval.episodes=1", "--config.eval.num_candidates=(4,)", "--config.eval.modes=('argmax',)",
        "--config.eval.max_episode_steps=50",
        "--config.online.num_actors=2", "--config.online.envs_per_actor=2", "--config.online.num_candidates=4",
        "--config.online.min_replay_size=300", "--config.online.online_batch_size=32",
        "--config.online.offline_batch_size=32", "--config.online.publish_interval=50",
        "--config.online.weight_sync_interval=50", "--config.online.eval_interval=700",
        "--config.online.eval_episodes=1", "--config.online.log_interval=50",
        "--config.online.replay_checkpoint_interval_s=5"]


@pytest.fixture
def store(ft_store):
    return ft_store          # made once per session (tests/conftest.py), shared with tests/test_ray_launcher.py


def env_for(store, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(MINARI_DATASETS_PATH=str(store), HOME=str(home), PYTHONUNBUFFERED="1")
    return env


@contextlib.contextmanager
def supervisor(args, store, tmp_path):
    """`launch.finetune` as a user starts it; killed on the way out if a check failed while it ran."""
    log = open(tmp_path / "supervisor.out", "a")
    proc = subprocess.Popen([sys.executable, "-m", "launch.finetune", f"--config.workdir={tmp_path}", *TINY, *args],
                            cwd=ROOT, env=env_for(store, tmp_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def exited_cleanly(proc, tmp_path) -> str:
    """The supervisor's whole output, after checking that it exited with 0."""
    out = (tmp_path / "supervisor.out").read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


def wait_for(predicate, timeout, proc=None, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"supervisor exited early while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def processes_of(run_dir: Path):
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(run_dir) in cmd and "launch." in cmd:
            found.append(p)
    return found


def actor_steps(run_dir: Path, actor_id: int) -> int:
    path = run_dir / "logs" / f"actor_{actor_id}.jsonl"
    if not path.exists():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return max((r.get("actor_env_steps", 0) for r in rows), default=0)


def test_multiprocess_run_survives_a_killed_actor_and_logs_the_curve(store, tmp_path):
    # the replay server as a process of its own (the other layout, learner-hosted, is the resume test's)
    # 1500 env steps: evaluations at 0, 700 and 1400 env steps and at the end (>= 2 checked), the killed actor's
    # restart well before the end
    with supervisor(["--config.online.total_env_steps=1500", "--config.online.replay_in_learner=False"],
                    store, tmp_path) as proc:
        run_dir_holder = {}

        def run_dir_ready():
            dirs = [d for d in tmp_path.glob("finetune-*") if (d / "logs" / "actor_0.jsonl").exists()]
            if dirs:
                run_dir_holder["d"] = dirs[0]
            return bool(dirs) and actor_steps(dirs[0], 0) > 0
        wait_for(run_dir_ready, 300, proc, "actor 0 to step")
        run_dir = run_dir_holder["d"]
        victims = [p for p in processes_of(run_dir) if "launch.actor" in " ".join(p.cmdline())
                   and "--actor_id=0" in p.cmdline()]
        assert victims, "actor 0 process not found"
        victims[0].kill()
        proc.wait(timeout=600)
    out = exited_cleanly(proc, tmp_path)
    assert re.search(r"actor_0 was killed by SIGKILL; restarting \(1/5\)", out), out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["actor_restarts"] >= 1 and summary["env_steps"] >= 1500 and summary["learner_steps"] > 0
    assert len(summary["evaluations"]) >= 2 and summary["score_after_pretraining"] is not None
    assert (run_dir / "finetune_curve.png").stat().st_size > 1000
    assert (run_dir / "pretrain" / "checkpoint.pt").exists()          # one level, not pretrain/<run>/
    for role_out in (run_dir / "logs").glob("*.out"):                 # no TensorFlow CUDA noise on a CPU run
        assert "Unable to register" not in role_out.read_text(), role_out.name
    # the critic's calibration reaches the logs: on dataset transitions, and on the evaluator's choices
    learner_rows = [json.loads(line) for line in (run_dir / "logs" / "learner.jsonl").read_text().splitlines()]
    assert any("calibration/q_over_return" in r and "calibration/online_max_adv" in r for r in learner_rows)
    # the run's key: owner-only, and every online row the learner sampled carried its tag
    assert stat.S_IMODE((run_dir / "run_key").stat().st_mode) == 0o600
    assert [r["replay/rejected"] for r in learner_rows if "replay/rejected" in r][-1] == 0
    eval_rows = [json.loads(line) for line in (run_dir / "logs" / "evaluator.jsonl").read_text().splitlines()]
    assert all("q_minus_return" in r for r in eval_rows)
    assert "normalised score after pretraining" in out and "updates per env step" in out
    assert "online transitions (empty)" in (run_dir / "logs" / "replay_server.out").read_text()
    if HAS_CC:   # the replay server's port was kept off the network (replay/loopback.py)
        assert re.search(r"replay port \d+ listens on loopback only", out), out[-3000:]
    # the offline wandb run holds the finetuning curve keyed by environment steps
    wandb_files = [f for f in (run_dir / "wandb").glob("offline-run-*/*.wandb")]
    assert wandb_files, "no offline wandb run"
    blob = b"".join(f.read_bytes() for f in wandb_files)
    # keyed by the evaluation policy with its weighting (launch/run_names.py), e.g. eval/align_eta-1/implicit_N4/...
    assert f"eval/{eval_rows[0]['tag']}/score_mean".encode() in blob and b"env_steps" in blob
    # one command uploads both offline wandb runs of the job: its pretraining and its online phase
    assert f"wandb sync {run_dir / 'pretrain'}/wandb/offline-run-* {run_dir}/wandb/offline-run-*" in out, out[-2000:]
    assert not processes_of(run_dir), "child processes left behind"


# with pytest-xdist, the [ray-*] runs share a worker with tests/test_ray_launcher.py (tests/conftest.py: xdist_scope)
@pytest.mark.parametrize("launcher,signum", [("local", signal.SIGINT), ("ray", signal.SIGINT), ("ray", signal.SIGTERM)],
                         ids=["local-ctrl-c", "ray-ctrl-c", "ray-sigterm"])
def test_interrupt_and_resume_continue_replay_and_counters(store, ft_pretrained, tmp_path, launcher, signum):
    """Ctrl-C (or the SIGTERM of a batch scheduler) checkpoints learner and replay and stops every child;
    --resume continues. A Ray driver must keep its own SIGTERM handler (ray.init installs one that exits)."""
    # a pretraining checkpoint given by flag (the other path: finetune pretrains itself, above); the session's
    # one (tests/conftest.py), copied: a run's state names its checkpoint's path
    ckpt = tmp_path / "pre" / "checkpoint.pt"
    ckpt.parent.mkdir()
    shutil.copy(ft_pretrained, ckpt)

    args = [f"--pretrained={ckpt}", "--config.online.total_env_steps=100000", f"--launcher={launcher}"]
    with supervisor(args, store, tmp_path) as proc:
        def learner_running():
            logs = list(tmp_path.glob("finetune-*/logs/learner.jsonl"))
            return bool(logs) and any('"learner_step": 100' in line for line in logs[0].read_text().splitlines())
        wait_for(learner_running, 300, proc, "learner to reach step 100")
        proc.send_signal(signum)                 # checkpoint learner and replay, stop every child
        proc.wait(timeout=300)
    run_dir = next(tmp_path.glob("finetune-*"))
    first = json.loads((run_dir / "summary.json").read_text())
    out = (tmp_path / "supervisor.out").read_text()
    assert proc.returncode == 130 and first["stopped"], out[-3000:]   # its own status: not 0, not an error's 2
    assert "interrupted, resumable" in out
    assert not processes_of(run_dir), "child processes left behind after Ctrl-C"
    env_steps_at_stop = first["env_steps"]
    learner_ckpt_step = json.loads(
        [line for line in (run_dir / "logs" / "learner.jsonl").read_text().splitlines() if "stopped" in line][-1]
    )["learner_step"]
    assert learner_ckpt_step >= 100
    key = (run_dir / "run_key").read_text()

    total = env_steps_at_stop + 300
    with supervisor([*args, "--resume", f"--config.online.total_env_steps={total}"], store, tmp_path) as proc:
        proc.wait(timeout=600)
    out = exited_cleanly(proc, tmp_path)
    assert not (run_dir / "logs" / "replay_server.out").exists()   # the learner hosts the replay by default
    if HAS_CC:   # the learner's replay port was kept off the network (replay/loopback.py)
        assert len(re.findall(r"replay port \d+ listens on loopback only", out)) == 2, out[-3000:]
    replay_out = (run_dir / "logs" / "learner.out").read_text()
    restored = re.findall(r"(\d+) online transitions \(restored\), (\d+) inserted so far", replay_out)
    assert restored, replay_out[-2000:]
    size, inserted = map(int, restored[-1])
    assert inserted == env_steps_at_stop and size == env_steps_at_stop   # nothing lost, nothing duplicated
    learner_out = (run_dir / "logs" / "learner.out").read_text()
    assert f"learner resumed at online step {learner_ckpt_step}" in learner_out
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["env_steps"] >= total and second["learner_steps"] > learner_ckpt_step
    assert second["wandb_run_id"] == first["wandb_run_id"]
    # the same key: the restored transitions' tags still check out
    assert (run_dir / "run_key").read_text() == key
    learner_rows = [json.loads(line) for line in (run_dir / "logs" / "learner.jsonl").read_text().splitlines()]
    assert [r["replay/rejected"] for r in learner_rows if "replay/rejected" in r][-1] == 0
    # the learner kept its replay server up after its stop checkpoints for the evaluator's last look
    assert "the replay server is gone" not in (run_dir / "logs" / "evaluator.out").read_text()
    assert not processes_of(run_dir)


def test_chaos_an_actor_the_evaluator_and_the_learner_killed_at_random_times(store, tmp_path):
    """bench/chaos.py on a tiny budget: each role SIGKILLed once, at seeded random times; the run must
    finish with every fault survived, no step going back in the logs, no duplicated row, no process left
    behind, and every transition the actors stepped in the replay or within the reported loss."""
    from bench.chaos import run_chaos

    # the faults fall at random fractions of the 3000 env steps, at least 4 s apart: all before the end
    r = run_chaos(tmp_path, ["actor", "evaluator", "learner"], seed=1, total_env_steps=3000, extra_args=TINY,
                  env=env_for(store, tmp_path), say=lambda m: None)
    assert len(r["faults"]) == 3, r
    assert r["violations"] == [], r["violations"]
    run_dir = Path(r["run_dir"])
    out = (tmp_path / "supervisor.out").read_text()
    assert "learner was killed by SIGKILL; restarting it from its last checkpoint (1/3)" in out, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    (crash,) = summary["lost"]["crashes"]
    assert crash["restored_inserts"] is not None      # the hosted replay came back from its checkpoint
    assert [r["env_steps"] for r in summary["evaluations"]] == \
        [json.loads(line)["env_steps"] for line in (run_dir / "logs" / "evaluator.jsonl").read_text().splitlines()]
    if crash["updates"] > 0:                            # the lost stretch is kept aside, not dropped
        assert (run_dir / "logs" / "lost" / "learner.jsonl").exists()


def test_a_learner_that_fails_at_start_up_is_reported_in_its_own_words(store, ft_pretrained, tmp_path):
    """A checkpoint the learner cannot use: the supervisor notices the learner's exit and says why at once,
    instead of waiting a minute and blaming the network. (A truncated file no longer gets that far: the
    supervisor refuses a --pretrained that is not a torch zip file before it starts anything.)"""
    import torch

    ckpt = ft_pretrained          # only read: the session's checkpoint (tests/conftest.py)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with supervisor([f"--pretrained={cut}"], store, tmp_path) as proc:
        proc.wait(timeout=120)
    out = (tmp_path / "supervisor.out").read_text()
    assert proc.returncode == 2 and "cut.pt is not a checkpoint written by launch.pretrain" in out, out[-3000:]
    assert not list(tmp_path.glob("finetune-*")), "a run directory made for a refused checkpoint"

    other = tmp_path / "other_format.pt"          # a torch file, but not of this checkpoint format
    torch.save({"format_version": 99}, other)
    t0 = time.time()
    with supervisor([f"--pretrained={other}"], store, tmp_path) as proc:
        proc.wait(timeout=300)
    out = (tmp_path / "supervisor.out").read_text()
    assert proc.returncode == 2, out[-3000:]
    assert re.search(r"learner exited \(code 2\): error: Checkpoint .*other_format.pt has format 99", out), out[-3000:]
    assert "Cannot reach" not in out and "firewall" not in out and "weights_only=False" not in out
    assert time.time() - t0 < 120
    run_dir = next(tmp_path.glob("finetune-*"))
    assert not processes_of(run_dir), "child processes left behind"


def test_a_supervisor_killed_outright_loses_no_transition(store, tmp_path):
    """SIGKILL of launch.finetune: its children all get SIGTERM at once, yet every transition the actors
    counted is in the replay checkpoint (the learner samples on until they have flushed and exited)."""
    from launch.supervision import actor_transitions

    with supervisor(["--config.online.total_env_steps=100000"], store, tmp_path) as proc:
        def learner_running():
            logs = list(tmp_path.glob("finetune-*/logs/learner.jsonl"))
            return bool(logs) and any('"learner_step": 100' in line for line in logs[0].read_text().splitlines())
        wait_for(learner_running, 300, proc, "learner to reach step 100")
        proc.kill()
        proc.wait(timeout=30)
    run_dir = next(tmp_path.glob("finetune-*"))
    wait_for(lambda: not processes_of(run_dir), 120, what="the orphaned roles to stop")
    for k in (0, 1):
        rows = (run_dir / "logs" / f"actor_{k}.jsonl").read_text().splitlines()
        assert '"event": "stopped"' in rows[-1], rows[-1]          # each actor flushed and said so
    counted = actor_transitions(run_dir / "logs")
    assert counted > 0
    # what a --resume would restore: the replay checkpoint, opened by a server of the run's own spec
    from actor.actor_loop import load_config_json
    from replay.host import replay_spec
    from replay.sampler import table_stats
    from replay.server import start_server

    meta = json.loads((run_dir / "dataset_meta.json").read_text())
    cfg = load_config_json(run_dir / "config.json")
    server, address = start_server(replay_spec(cfg.online, meta["obs_dim"], meta["act_dim"], str(run_dir / "replay")))
    try:
        stats = table_stats(address)
    finally:
        server.stop()
    assert stats["inserts"] == counted and stats["current_size"] == counted, (stats, counted)
