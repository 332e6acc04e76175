"""End to end: `launch.pretrain` on a real Minari dataset written to a temp store.

Checks what a user relies on: checkpoint + evaluation + offline wandb run,
resume giving exactly the uninterrupted result, bad settings rejected with a
message naming the field, and a diverging loss stopping the run with the last
good checkpoint intact.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import make_store

ROOT = Path(__file__).resolve().parents[1]
DATASET_ID = "local/hopper/e2e-medium-v0"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory, DATASET_ID, 3000)


def small_config(workdir: Path, **overrides):
    from configs import quickstart

    c = quickstart.get_config()
    c.dataset = DATASET_ID
    c.workdir = str(workdir)
    c.num_critic_steps = c.num_actor_steps = 40
    c.critic_batch_size = c.actor_batch_size = 64
    c.diffusion.width, c.diffusion.inner, c.diffusion.num_blocks = 32, 64, 1
    c.critic_hidden = (64, 64)
    c.log_interval, c.checkpoint_interval, c.eval.interval = 10, 20, 20
    c.eval.episodes = 2
    c.eval.num_candidates = (4,)
    c.eval.max_episode_steps = 30
    c.wandb.mode = "disabled"
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c


def run_cli(args, store, cwd=ROOT, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["MINARI_DATASETS_PATH"] = str(store)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "launch.pretrain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_pretrains_evaluates_checkpoints_and_logs_offline_wandb(store, tmp_path):
    args = ["--config=configs/quickstart.py", f"--config.dataset={DATASET_ID}", f"--config.workdir={tmp_path}",
            "--config.num_critic_steps=30", "--config.num_actor_steps=30", "--config.critic_batch_size=64",
            "--config.actor_batch_size=64", "--config.log_interval=10", "--config.checkpoint_interval=10",
            "--config.eval.interval=30", "--config.eval.episodes=2", "--config.eval.num_candidates=(4,)",
            "--config.eval.max_episode_steps=30", "--config.diffusion.width=32", "--config.diffusion.inner=64"]
    proc = run_cli(args, store, extra_env={"HOME": str(tmp_path)})   # no API key anywhere: offline wandb
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps/s" in proc.stdout and "left" in proc.stdout           # progress lines
    run_dir = next(tmp_path.glob("quickstart-aligniql-*"))
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 30 and ckpt["learner"]["critic_steps"] == 30
    summary = json.loads((run_dir / "summary.json").read_text())
    for mode in ("argmax", "implicit"):
        final = summary["final_eval"]
        # keys name the weighting (launch/run_names.py): quickstart's AlignIQL η = −1
        assert f"eval/align_eta-1/{mode}_N4/score_mean" in final and f"eval/align_eta-1/{mode}_N4/alignment_gap" in final
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline_runs, "wandb should have written an offline run"
    assert ckpt["wandb_run_id"] and ckpt["wandb_run_id"] in offline_runs[0].name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss/critic" in r for r in rows) and any("eval/align_eta-1/argmax_N4/return_mean" in r for r in rows)


def test_resume_equals_uninterrupted_run(store, tmp_path, monkeypatch):
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    full = train(small_config(tmp_path / "full"), resume=False)
    part = train(small_config(tmp_path / "split", stop_after_steps=20), resume=False)
    assert part["stopped"] and part["step"] == 20
    resumed = train(small_config(tmp_path / "split"), resume=True)
    assert resumed["step"] == 40 and not resumed["stopped"]

    a = torch.load(Path(full["run_dir"]) / "checkpoint.pt", weights_only=True)["learner"]
    b = torch.load(Path(resumed["run_dir"]) / "checkpoint.pt", weights_only=True)["learner"]
    for name, module_state in a["modules"].items():
        for key, tensor in module_state.items():
            assert torch.equal(tensor, b["modules"][name][key]), f"{name}.{key} differs after resume"
    assert full["history"] == resumed["history"]       # same evaluations, including the one before the stop


def test_existing_run_is_not_overwritten_without_resume(store, tmp_path, monkeypatch):
    from errors import UserFacingError
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    train(small_config(tmp_path, num_critic_steps=10, num_actor_steps=10, **{"eval.interval": 10}), resume=False)
    with pytest.raises(UserFacingError, match="--resume"):
        train(small_config(tmp_path), resume=False)


@pytest.mark.parametrize("flag,field", [("--config.eta=0", "config.eta"), ("--config.tau=1.5", "config.tau"),
                                        ("--config.eval.num_candidates=(0,)", "config.eval.num_candidates"),
                                        ("--config.algorithm=sac", "config.algorithm")])
def test_invalid_settings_are_rejected_naming_the_field(store, tmp_path, flag, field):
    proc = run_cli(["--config=configs/quickstart.py", f"--config.workdir={tmp_path}", flag], store)
    assert proc.returncode == 2
    assert field in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_dataset_gives_a_clear_message(store, tmp_path):
    proc = run_cli(["--config=configs/quickstart.py", f"--config.workdir={tmp_path}",
                    "--config.dataset=mujoco/hopper/nonexistent-v0"], store)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "minari download" in proc.stderr and DATASET_ID in proc.stderr


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(store, tmp_path, monkeypatch):
    import learner.agent as agent
    from errors import TrainingDiverged
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    calls = {"n": 0}
    real_value_loss = agent.value_loss

    def value_loss_that_diverges(*args):   # fault injection: the value loss blows up at step 25
        calls["n"] += 1
        loss = real_value_loss(*args)
        return loss * float("nan") if calls["n"] >= 25 else loss

    monkeypatch.setattr(agent, "value_loss", value_loss_that_diverges)
    cfg = small_config(tmp_path)
    with pytest.raises(TrainingDiverged, match="NaN or inf between steps 21 and 30 .at step 30: loss/value"):
        train(cfg, resume=False)     # found at the log interval after the step that went bad
    ckpt = torch.load(next(tmp_path.glob("*/checkpoint.pt")), weights_only=True)
    assert ckpt["step"] == 20
    assert all(torch.isfinite(t).all() for m in ckpt["learner"]["modules"].values() for t in m.values()
               if t.is_floating_point())


def test_background_evaluation_gives_the_same_history_while_the_learner_trains_on(store, tmp_path, monkeypatch):
    # The evaluation process gets the acting weights of each evaluation step and plays the same
    # seeded episodes: its scores must equal the learner's own evaluations of the same run, and a run
    # stopped and resumed with it must keep every evaluation up to its stop.
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    here = train(small_config(tmp_path / "here", **{"eval.background": "off"}), resume=False)
    away = train(small_config(tmp_path / "away", **{"eval.background": "on"}), resume=False)
    assert [h["step"] for h in away["history"]] == [h["step"] for h in here["history"]] == [20, 40]
    for a, b in zip(away["history"], here["history"]):
        scores = [k for k in a if k.startswith("eval/")]
        assert scores and all(a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in scores)
        assert a["calibration/q_data"] == pytest.approx(b["calibration/q_data"])
    stopped = train(small_config(tmp_path / "split", stop_after_steps=20, **{"eval.background": "on"}), resume=False)
    assert [h["step"] for h in stopped["history"]] == [20]
    resumed = train(small_config(tmp_path / "split", **{"eval.background": "on"}), resume=True)
    assert [h["step"] for h in resumed["history"]] == [20, 40]
    logged = [json.loads(line) for line in (tmp_path / "away").glob("*/metrics.jsonl").__next__().read_text().splitlines()]
    assert sorted(r["learner_step"] for r in logged if any(k.startswith("eval/") for k in r)) == [20, 40]
