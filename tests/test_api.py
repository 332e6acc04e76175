"""The Python API (launch/api.py): the README's example runs as written, configs in every documented form.

The example is the first ```python block under `## Python API` in README.md. It runs here as a user would run it,
in an empty working directory, on a small local Hopper dataset standing in for the embedded default
(same id, so the example's own default config finds it instead of building the 100k-transition one).
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from errors import ConfigError
from launch.api import apply_overrides, load_config_file, resolve_config
from tests.conftest import make_store

REPO = Path(__file__).resolve().parents[1]


def python_api_example() -> str:
    """The first python block of the README's `## Python API` section."""
    section = re.search(r"^## Python API\n(.*?)(?=^## |\Z)", (REPO / "README.md").read_text(), re.S | re.M)
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S) if section else None
    if not block:
        pytest.fail("README.md has no ```python block under '## Python API'")
    return block.group(1)


def test_readme_python_api_example_runs(tmp_path_factory, tmp_path, monkeypatch):
    store = make_store(tmp_path_factory, "local/hopper/medium-v0", 2000)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(python_api_example(), "README.md (Python API)", "exec"), namespace)
    run_dir = Path(namespace["run_dir"])
    assert (tmp_path / run_dir / "checkpoint.pt").is_file()
    assert namespace["actions"].shape == (2, 3) and namespace["actions"].dtype == np.float32
    assert np.all(np.abs(namespace["actions"]) <= 1.0)          # Hopper's own box


def test_config_in_every_documented_form(tmp_path):
    default = load_config_file("configs/quickstart.py")
    from_dict = resolve_config({"seed": 3, "eval.episodes": 2, "diffusion": {"width": 32}}, "configs/quickstart.py")
    assert (from_dict.seed, from_dict.eval.episodes, from_dict.diffusion.width) == (3, 2, 32)
    assert from_dict.num_critic_steps == default.num_critic_steps
    assert resolve_config(None, "configs/quickstart.py").to_dict() == default.to_dict()
    assert resolve_config("configs/finetune.py", "configs/quickstart.py").online.num_actors >= 1
    given = ml_collections.ConfigDict(default.to_dict())
    copied = resolve_config(given, "configs/quickstart.py", overrides={"eval.modes": ["argmax"]})
    assert copied.eval.modes == ("argmax",) and given.eval.modes == default.eval.modes    # the caller's untouched
    with pytest.raises(ConfigError, match="no field eval.episode "):
        apply_overrides(default, {"eval.episode": 1})
    with pytest.raises(ConfigError, match="config.seed"):
        apply_overrides(default, {"seed": "one"})
    with pytest.raises(ConfigError, match="No config file"):
        resolve_config(str(tmp_path / "nope.py"), "configs/quickstart.py")


def test_finetune_refuses_a_bad_config_before_any_work(tmp_path, monkeypatch):
    from launch.api import finetune

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="online.envs_per_actor"):
        finetune({"online.envs_per_actor": 0, "workdir": str(tmp_path / "runs")})
    assert not (tmp_path / "runs").exists()


def test_package_metadata_names_every_role_folder():
    """`pip install -e .` installs what `import launch.api` needs from any directory."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == "==3.11.*"
    assert meta["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert "pytest" in meta["tool"] and "ini_options" in meta["tool"]["pytest"]
    packages = set(meta["tool"]["setuptools"]["packages"])
    for folder in ("actor", "configs", "data", "launch", "learner", "networks", "replay", "study"):
        assert folder in packages and (REPO / folder / "__init__.py").is_file()
    assert "errors" in meta["tool"]["setuptools"]["py-modules"]
    # setuptools reads requirements.txt line by line: an option line (-r, --index-url) would break it
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    assert not [ln for ln in lines if ln.startswith("-")]


def test_runs_started_from_python_are_named_by_the_settings_they_change(tmp_path):
    """A sweep from Python (η = ±1) must not share a run directory, as on the command line."""
    from launch.api import changed_settings, resolve_config
    from launch.run_names import run_directory

    def directory(config):
        cfg = resolve_config(config, "configs/quickstart.py")
        return run_directory(cfg, changed_settings(cfg, config, "configs/quickstart.py"))

    plain, again = directory(None), directory({"seed": 0})
    up, down = directory({"eta": 1.0}), directory({"eta": -1.0, "tau": 0.9})
    assert plain == again and plain.name.endswith("-s0") and plain.name.count("-") == again.name.count("-")
    assert len({plain, up, down}) == 3
    assert directory({"eta": 1.0}) == up                       # the same settings find the same run
