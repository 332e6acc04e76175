"""Names that keep runs apart (launch/run_names.py): run directories carry a hash of the settings a
command line changes, evaluation keys name the weighting, and one job's two wandb runs share a group.

Why: a sweep over η wrote every point into one run directory, and two runs of different weightings
logged their scores under one key (`eval/implicit_N16`). The committed runs of the study and of
study.lift must keep their names, and their old keys must still read.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from launch import cli
from launch.run_names import (SETTINGS_FILE, eval_tag, eval_tags, parse_eval_tag, run_directory,
                              weighting_label)
from tests.conftest import make_store

ROOT = Path(__file__).resolve().parents[1]
DATASET_ID = "local/hopper/names-medium-v0"


def directory(config_file: str, *overrides: str) -> Path:
    cfg, settings = cli.load_config(config_file, list(overrides))
    return run_directory(cfg, settings)


# ---------------------------------------------------------------- run directories

@pytest.mark.parametrize("config_file,name", [
    ("configs/quickstart.py", "quickstart-aligniql-local_hopper_medium-v0"),
    ("configs/finetune.py", "finetune-aligniql-local_hopper_medium-replay-v1"),
    ("configs/pointmaze_finetune.py", "pointmaze-finetune-aligniql-local_pointmaze_medium-v0")])
def test_a_run_of_the_config_file_as_written_keeps_the_name_it_always_had(config_file, name):
    assert directory(config_file) == Path("runs") / f"{name}-s0"
    # the name, the folder, logging, threads, devices and the stop step do not change what is trained
    assert directory(config_file, "--config.seed=3", "--config.workdir=/tmp/w", "--config.wandb.mode=disabled",
                     "--config.num_threads=2", "--config.device=cpu", "--config.stop_after_steps=10",
                     "--config.pretrain_processes=one",
                     "--config.log_interval=7") == Path("/tmp/w") / f"{name}-s3"


def test_a_finetuning_run_lengthened_on_resume_keeps_its_directory():
    """`launch.finetune --resume --config.online.total_env_steps=<more>` continues the same run."""
    sweep = ("--config.eta=1",)
    assert directory("configs/finetune.py", *sweep, "--config.online.total_env_steps=123456") == \
        directory("configs/finetune.py", *sweep)
    assert directory("configs/finetune.py", "--config.online.total_env_steps=123456") == \
        directory("configs/finetune.py")
    # nor do the roles' CPU priorities
    assert directory("configs/finetune.py", "--config.online.evaluator_nice=0", "--config.online.actor_nice=5") == \
        directory("configs/finetune.py")


def test_an_override_equal_to_the_file_s_value_changes_nothing():
    eta = cli.load_config("configs/quickstart.py", [])[0].eta
    assert directory("configs/quickstart.py", f"--config.eta={eta}") == directory("configs/quickstart.py")


def test_a_sweep_over_eta_and_tau_gets_one_directory_per_point():
    base = directory("configs/quickstart.py")
    points = [directory("configs/quickstart.py", f"--config.eta={eta}") for eta in (1, 2, -2)] + \
        [directory("configs/quickstart.py", f"--config.tau={tau}") for tau in (0.8, 0.9)]
    assert len({base, *points}) == 6
    for p in points:
        assert re.fullmatch(r"quickstart-aligniql-local_hopper_medium-v0-[0-9a-f]{6}-s0", p.name), p.name
    # the hash is of the settings, not of how they were typed
    assert directory("configs/quickstart.py", "--config.eta=1.0", "--config.tau=0.9") == \
        directory("configs/quickstart.py", "--config.tau=0.9", "--config.eta=1")


def test_the_study_names_its_runs_itself_and_finds_its_committed_runs():
    from configs import results as budgets
    from study.plan import plan

    c = budgets.get_config("converged")
    root = Path("results/converged")
    pre, ft = plan(c, root)
    committed = [r for r in pre + ft if (ROOT / r.run_dir).exists()]
    assert len(committed) == len(list((ROOT / root / "pretrain").iterdir())) + \
        len(list((ROOT / root / "finetune").iterdir()))            # every committed run is one of the plan's
    for r in pre + ft:     # the study's overrides would hash: it passes its own directory instead
        assert f"--run_dir={r.run_dir}" in r.args, r.args


def test_study_lift_plans_the_directory_launch_finetune_will_use():
    from study.lift import planned_run_dir

    runs = Path("results/lift_pointmaze")
    common = ["--config.workdir=results/lift_pointmaze", "--config.wandb.mode=disabled"]
    for seed in (0, 1, 2):      # the committed runs: no settings beyond seed, folder and wandb
        planned = planned_run_dir(seed, runs, "configs/pointmaze_finetune.py", [f"--config.seed={seed}", *common])
        assert (ROOT / planned / "summary.json").exists(), planned
    other = planned_run_dir(0, runs, "configs/pointmaze_finetune.py",
                            ["--config.seed=0", *common, "--config.tau=0.8"])
    assert other.parent == runs and other.name.endswith("-s0") and not (ROOT / other).exists()


# ---------------------------------------------------------------- evaluation keys

def test_evaluation_tags_name_the_weighting_and_its_parameter_without_a_dot():
    cfg = cli.load_config("configs/quickstart.py", ["--config.tau=0.7", "--config.eta=-1"])[0]
    assert eval_tag(cfg, "implicit", 16) == "align_eta-1/implicit_N16"
    assert eval_tag(cfg, "argmax", 64, "expectile") == "expectile_tau0p7/argmax_N64"
    assert weighting_label(cfg, "exponential") == "exponential_alpha1"
    assert weighting_label(cfg, "greedy") == "greedy" and weighting_label(cfg, "align_hard") == "align_hard"
    cfg.algorithm = "iql"
    assert eval_tag(cfg, "argmax", 4) == "gaussian"
    for tag in ("align_eta-1/implicit_N16", "expectile_tau0p7/argmax_N64"):
        assert "." not in tag          # wandb reads a '.' as nesting and drops the custom x axis


def test_old_and_new_evaluation_keys_both_read():
    from study.records import mode_tags, primary_tag

    old = {"eval/argmax_N16/return_mean": 1.0, "eval/implicit_N16/return_mean": 2.0, "step": 5}
    new = {"eval/align_eta-1/argmax_N16/return_mean": 1.0, "eval/align_eta-1/implicit_N16/return_mean": 2.0,
           "calibration/q_data": 3.0}
    iql = {"eval/gaussian/return_mean": 1.0}
    assert primary_tag(old) == "eval/argmax_N16" and mode_tags(old, "implicit") == ["eval/implicit_N16"]
    assert primary_tag(new) == "eval/align_eta-1/argmax_N16"
    assert mode_tags(new, "implicit") == ["eval/align_eta-1/implicit_N16"]
    assert primary_tag(iql) == "eval/gaussian"
    assert eval_tags(new) == ["eval/align_eta-1/argmax_N16", "eval/align_eta-1/implicit_N16"]
    parsed = parse_eval_tag("eval/expectile_tau0p9/implicit_N64")
    assert (parsed.weighting, parsed.mode, parsed.num_candidates) == ("expectile_tau0p9", "implicit", 64)
    assert parse_eval_tag("eval/argmax_N16").weighting is None
    assert parse_eval_tag("calibration/q_data") is None


def test_the_supervisor_logs_an_evaluation_under_its_tag(tmp_path):
    from launch.run_logger import RunLogger
    from launch.supervision import LogForwarder
    from ml_collections import ConfigDict

    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [{"role": "evaluator", "env_steps": 100, "score_mean": 50.0, "tag": "align_eta1/implicit_N4"},
            {"role": "evaluator", "env_steps": 200, "score_mean": 60.0}]      # a row written before tags
    (logs / "evaluator.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    logger = RunLogger(tmp_path, {}, ConfigDict({"mode": "disabled"}), "job", step_key="env_steps")
    LogForwarder(logs, logger).poll(0)
    logger.close()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["eval/align_eta1/implicit_N4/score_mean"] == 50.0 and logged[1]["eval/score_mean"] == 60.0


# ---------------------------------------------------------------- a real pretraining run

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory, DATASET_ID, 2000)


TINY = [f"--config.dataset={DATASET_ID}", "--config.num_critic_steps=20", "--config.num_actor_steps=20",
        "--config.critic_batch_size=32", "--config.actor_batch_size=32", "--config.critic_hidden=(32,32)",
        "--config.diffusion.width=16", "--config.diffusion.inner=32", "--config.diffusion.num_blocks=1",
        "--config.log_interval=10", "--config.checkpoint_interval=10", "--config.eval.interval=20",
        "--config.eval.episodes=1", "--config.eval.num_candidates=(2,)", "--config.eval.modes=('argmax',)",
        "--config.eval.max_episode_steps=10", "--config.wandb.mode=disabled", "--config.num_threads=1"]


def test_a_pretraining_run_keeps_its_settings_resumes_in_its_directory_and_names_its_keys(
        store, tmp_path, monkeypatch, capsys):
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    args = [f"--config.workdir={tmp_path}", *TINY, "--config.eta=1"]
    cfg, settings = cli.load_config("configs/quickstart.py", [*args, "--config.stop_after_steps=10"])
    part = train(cfg, resume=False, settings=settings)
    run_dir = Path(part["run_dir"])
    assert part["stopped"] and run_dir == run_directory(cfg, settings) and re.search(r"-[0-9a-f]{6}-s0$", run_dir.name)
    kept = json.loads((run_dir / SETTINGS_FILE).read_text())
    assert kept["config_file"] == "configs/quickstart.py" and kept["hash"] in run_dir.name
    assert kept["named"]["eta"] == 1.0 and "stop_after_steps" not in kept["named"] and "workdir" not in kept["named"]

    cfg, settings = cli.load_config("configs/quickstart.py", args)      # the same run, without the stop
    done = train(cfg, resume=True, settings=settings)
    assert done["run_dir"] == str(run_dir) and done["step"] == 20
    assert "eval/align_eta1/argmax_N2/return_mean" in done["final_eval"]
    assert "align_eta1/argmax_N2:" in capsys.readouterr().out          # the console banner names it too
    assert list(tmp_path.iterdir()) == [run_dir]


def test_the_pretraining_program_names_its_directory_from_its_command_line(store, tmp_path):
    args = ["--config=configs/quickstart.py", f"--config.workdir={tmp_path}", *TINY, "--config.tau=0.8"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "MINARI_DATASETS_PATH": str(store)}
    proc = subprocess.run([sys.executable, "-m", "launch.pretrain", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = directory("configs/quickstart.py", *args[1:])
    assert [p.name for p in tmp_path.iterdir()] == [expected.name] and re.search(r"-[0-9a-f]{6}-s0$", expected.name)
    assert json.loads((expected / SETTINGS_FILE).read_text())["named"]["tau"] == 0.8
    assert "training aligniql (evaluated with align_eta-1)" in proc.stdout


def test_a_run_started_before_directories_named_their_settings_resumes_in_its_old_directory(
        store, tmp_path, monkeypatch):
    from errors import UserFacingError
    from launch.pretrain import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    args = [f"--config.workdir={tmp_path}", *TINY, "--config.eta=1"]
    cfg, settings = cli.load_config("configs/quickstart.py", [*args, "--config.stop_after_steps=10"])
    legacy = run_directory(cfg)                    # the name such a run was given before
    train(cfg, resume=False, run_dir=legacy)
    cfg, settings = cli.load_config("configs/quickstart.py", args)
    assert train(cfg, resume=True, settings=settings)["run_dir"] == str(legacy)
    # a run of other settings in the old directory is not taken for this one
    cfg, settings = cli.load_config("configs/quickstart.py", [*args, "--config.eta=2"])
    with pytest.raises(UserFacingError, match="No checkpoint at .*-[0-9a-f]{6}-s0"):
        train(cfg, resume=True, settings=settings)


# ---------------------------------------------------------------- wandb: one group, one sync command

def run_record(path: Path) -> tuple[str, str, str]:
    """(group, job type, name) of an offline wandb run, read from its .wandb file as wandb sync reads it."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(path))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.HasField("run"):
            return record.run.run_group, record.run.job_type, record.run.display_name
    raise AssertionError(f"no run record in {path} ({path.stat().st_size} bytes)")


def test_a_job_s_two_offline_wandb_runs_share_a_group_and_one_sync_command(tmp_path, monkeypatch):
    from launch.run_logger import RunLogger, sync_command
    from ml_collections import ConfigDict

    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    job = tmp_path / "job-aligniql-data-s0"
    wandb_cfg = ConfigDict({"mode": "offline", "project": "names-test", "entity": ""})
    for run_dir, name, kind in ((job / "pretrain", f"{job.name}-pretrain", "pretrain"), (job, job.name, "finetune")):
        logger = RunLogger(run_dir, {}, wandb_cfg, name, group=job.name, job_type=kind)
        logger.log({"x": 1.0}, 1)
        logger.close()
    import wandb
    wandb.teardown()       # the wandb service writes the files behind finish(); its exit flushes them
    assert [run_record(next(d.glob("wandb/offline-run-*/*.wandb"))) for d in (job / "pretrain", job)] == \
        [(job.name, "pretrain", f"{job.name}-pretrain"), (job.name, "finetune", job.name)]
    assert sync_command([job / "pretrain", job]) == \
        f"wandb sync {job / 'pretrain'}/wandb/offline-run-* {job}/wandb/offline-run-*"
    assert sync_command([tmp_path / "nothing"]) is None
