"""Records name run directories from the repository root, never by this machine's absolute path.

A record made here (a lift's .json and .md, a study run's log line, the study's plan of runs) is
read on other machines; `study/paths.py` names a path inside the repository relative to its root
and leaves a path outside it (a temp folder) as given.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from study.paths import ROOT, command_line, repo_relative


def test_a_path_inside_the_repository_is_named_from_its_root(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "results").mkdir(parents=True)
    assert repo_relative(repo / "results" / "converged" / "pretrain", root=repo) == Path("results/converged/pretrain")
    assert repo_relative(str(repo / "docs" / ".." / "results"), root=repo) == Path("results")
    outside = tmp_path / "elsewhere" / "runs"
    assert repo_relative(outside, root=repo) == outside          # no repository name for it: as given
    cwd = os.getcwd()
    try:
        os.chdir(repo)
        assert repo_relative("results/x", root=repo) == Path("results/x")   # already relative: unchanged
    finally:
        os.chdir(cwd)


def test_a_linked_checkout_is_still_named_from_its_root(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "results").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(repo)
    assert repo_relative(link / "results" / "r", root=repo) == Path("results/r")


def test_a_logged_command_names_python_not_this_interpreter():
    line = command_line([sys.executable, "-m", "launch.pretrain", "--config.workdir=results/converged/pretrain"])
    assert line == "python -m launch.pretrain --config.workdir=results/converged/pretrain"
    assert sys.executable not in line


def test_the_study_plans_its_runs_under_a_relative_root():
    from configs import results as budgets
    from study.plan import final_eval_runs, plan

    c = budgets.get_config("tiny")
    root = repo_relative(ROOT / "runs" / "relative-paths-test" / "tiny")
    assert not root.is_absolute()
    pre, ft = plan(c, root)
    for run in pre + ft + final_eval_runs(c, pre, ft):
        for arg in run.args:
            assert str(ROOT) not in arg, (run.name, arg)
    assert not (ROOT / "runs" / "relative-paths-test").exists()   # planning writes nothing


LIFT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from absl import app
    import study.paths
    import study.lift as lift

    repo = Path(sys.argv[1])
    os.chdir(repo)
    study.paths.ROOT = repo                        # this temp folder plays the repository

    def finetune(seed, runs_dir, config, extra, pretrained_from=None):
        run_dir = runs_dir / f"finetune-aligniql-local_hopper_medium-v1-s{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps({"dataset": "local/hopper/medium-v1"}))
        return run_dir

    lift.finetune = finetune
    lift.evaluate_pair = lambda run_dir, episodes, mode=None: {
        "pretrained": {"score_mean": 50.0, "score_std": 1.0}, "final": {"score_mean": 52.0, "score_std": 1.0},
        "policy": "implicit, N = 16"}
    lift.in_run_curve = lambda run_dir: {}
    lift.define_flags()
    app.run(lift.main, argv=["study.lift", f"--runs_dir={repo / 'runs' / 'mine'}", "--seeds=0,1",
                             f"--out={repo / 'docs' / 'lift_mine.md'}"])
""")


def test_a_lift_record_names_its_runs_from_the_repository_root(tmp_path):
    """study.lift given absolute paths inside the repository writes its .json and .md without them."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    proc = subprocess.run([sys.executable, "-c", LIFT_SCRIPT, str(repo)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = (repo / "docs" / "lift_mine.json").read_text()
    report = (repo / "docs" / "lift_mine.md").read_text()
    for text in (record, report):
        assert str(tmp_path) not in text
    rows = json.loads(record)["rows"]
    assert [r["run_dir"] for r in rows] == [f"runs/mine/finetune-aligniql-local_hopper_medium-v1-s{s}" for s in (0, 1)]
    assert "--runs_dir=runs/mine" in report        # the command that reruns it, as a newcomer would type it
