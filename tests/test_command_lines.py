"""Bad command lines to every absl program of launch/ and study/: one line naming what is wrong
(the field, the file or the flag), exit status 2, never a traceback (launch/cli.py).

Every program that takes a --config file is checked for both config errors: launch.pretrain,
launch.finetune (a 55-line ml_collections traceback and exit 1 before), and study.lift, which
hands its --config and the overrides after `--` to launch.finetune and checks them first
(launch/cli.py load_config). The role programs read a run's config.json instead (--config_json).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WITH_CONFIG_FILE = ["launch.pretrain", "launch.finetune", "study.lift"]
OTHERS = ["launch.actor", "launch.dataset_stats", "launch.evaluator", "launch.learner", "launch.make_dataset",
          "launch.replay_server", "study", "study.evaluate", "study.ranking"]
# programs that read a run's config.json, with the other flags they require
WITH_CONFIG_JSON = {"launch.learner": ["--run_dir=/nonexistent", "--replay_address=localhost:1"],
                    "launch.replay_server": ["--obs_dim=3", "--act_dim=2"],
                    "launch.actor": ["--replay_address=localhost:1"],
                    "launch.evaluator": ["--replay_address=localhost:1"]}


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def config_args(module: str, tmp_path: Path, config: list[str], overrides: list[str]) -> list[str]:
    """The command line of `module` with a --config file and config overrides: study.lift takes the
    overrides after `--` (for launch.finetune) and its runs go to a temp folder."""
    if module == "study.lift":
        return [*config, f"--runs_dir={tmp_path / 'runs'}", f"--out={tmp_path / 'lift.md'}", "--", *overrides]
    return [*config, *overrides]


def assert_one_line_names(proc: subprocess.CompletedProcess, what: str) -> None:
    """Status 2, no traceback, and one line of stderr that names `what` (the rest is other libraries' noise)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len([line for line in proc.stderr.splitlines() if what in line]) == 1, proc.stderr[-2000:]


@pytest.mark.parametrize("module", WITH_CONFIG_FILE)
@pytest.mark.parametrize("given_file", [False, True])
def test_an_unknown_config_field_is_named_in_one_line(module, given_file, tmp_path):
    config = ["--config=configs/quickstart.py"] if given_file else []
    proc = run(module, *config_args(module, tmp_path, config, ["--config.nonexistent_field=1"]))
    assert_one_line_names(proc, "config.nonexistent_field")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())   # no run was started


@pytest.mark.parametrize("module", WITH_CONFIG_FILE)
def test_a_missing_config_file_is_named_in_one_line(module, tmp_path):
    proc = run(module, *config_args(module, tmp_path, ["--config=configs/nope.py"], []))
    assert_one_line_names(proc, "configs/nope.py")
    assert "no such config file" in proc.stderr


def test_a_text_file_given_as_pretrained_checkpoint_is_named_in_one_line(tmp_path):
    # torch's pickle reader took the text for a legacy checkpoint: "KeyError: 101" from the learner process
    notes = tmp_path / "notes.txt"
    notes.write_text("experiment notes, not a checkpoint\n")
    proc = run("launch.finetune", f"--pretrained={notes}", f"--config.workdir={tmp_path}",
               "--config.wandb.mode=disabled")
    assert_one_line_names(proc, "not a checkpoint written by launch.pretrain")
    assert f"--pretrained={notes}" in proc.stderr and "a text file" in proc.stderr
    assert "KeyError" not in proc.stderr and not list(tmp_path.glob("*/logs"))   # refused before any work


@pytest.mark.parametrize("module", OTHERS)
def test_programs_without_a_config_file_name_the_unknown_flag_in_one_line(module):
    assert_one_line_names(run(module, "--config.nonexistent_field=1"), "config.nonexistent_field")


@pytest.mark.parametrize("module", sorted(WITH_CONFIG_JSON))
def test_a_missing_run_config_is_named_in_one_line(module):
    assert_one_line_names(run(module, "--config_json=nope.json", *WITH_CONFIG_JSON[module]), "nope.json")


@pytest.mark.parametrize("module", ["study.evaluate", "study.ranking"])
def test_a_missing_checkpoint_is_named_in_one_line(module):
    assert_one_line_names(run(module, "--checkpoint=nope.pt", "--out=/nonexistent/out.json"), "nope.pt")


@pytest.mark.parametrize("address", ["127.0.0.1:1", "headnode"])
def test_a_ray_address_that_cannot_be_joined_is_named_at_once(address):
    # Ray retries an address where nothing listens for ~14 minutes; the launcher checks it first
    # (before pretraining) and says so in one line.
    proc = run("launch.finetune", "--launcher=ray", f"--ray_address={address}", "--config.wandb.mode=disabled")
    assert_one_line_names(proc, f"--ray_address={address}")
    assert "offline pretraining" not in proc.stdout
