"""Checkpoints that survive crashes and never unpickle arbitrary objects.

A checkpoint is a nested dict of tensors, numbers, strings and lists, written
with torch.save to a temporary file and renamed into place (atomic on POSIX),
so a crash mid-write leaves the previous checkpoint intact. Loading uses
`weights_only=True`: a tampered file cannot execute code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from errors import UserFacingError

FORMAT_VERSION = 1


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"No checkpoint at {path}. Start without --resume, or point --config.workdir "
                              f"at the directory of the run you want to continue.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or holds objects we refuse to unpickle
        raise UserFacingError(f"Cannot read checkpoint {path}: {type(e).__name__}: {e}. The file is damaged, "
                              f"is not a checkpoint of this platform, or contains objects that are not plain "
                              f"tensors and numbers (refused for safety).") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise UserFacingError(f"Checkpoint {path} has format {state.get('format_version')!r}; this version of "
                              f"the platform reads format {FORMAT_VERSION}.")
    return state
