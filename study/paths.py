"""Paths as the study's records write them: relative to the repository root.

A record (summary.json, final_eval.json, a lift's .json, a run's log) is read on other machines
than the one it was made on, so a run directory inside the repository is named from the
repository root (`results/converged/pretrain/...`), never as `/home/<someone>/<checkout>/...`.
The study's programs start their subprocesses with the repository root as working directory,
so these names resolve there. A path outside the repository (a temp folder, another disk) has
no such name and stays absolute, as given.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repo_relative(path: str | os.PathLike, root: Path | None = None) -> Path:
    """`path` relative to the repository root (`root` in tests) when it lies inside it, else unchanged."""
    root = (root or ROOT).resolve()
    p = Path(path)
    absolute = p if p.is_absolute() else Path.cwd() / p
    try:
        return Path(os.path.normpath(absolute)).relative_to(root)
    except ValueError:
        pass
    try:
        return absolute.resolve().relative_to(root)   # through symlinks (a checkout reached by a link)
    except ValueError:
        return p


def command_line(args: list[str]) -> str:
    """A subprocess's command line as a log shows it: `python -m ...`, not this machine's interpreter path."""
    words = [str(a) for a in args]
    if words and words[0] == sys.executable:
        words[0] = "python"
    return " ".join(words)
