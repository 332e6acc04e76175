"""Checkpoints that survive crashes and never unpickle arbitrary objects.

A checkpoint is a nested dict of tensors, numbers, strings and lists, written
with torch.save to a temporary file and renamed into place (atomic on POSIX),
so a crash mid-write leaves the previous checkpoint intact. Loading uses
`weights_only=True`: a tampered file cannot execute code.

RNG states stay on the CPU whatever device the rest is loaded onto: torch's
generators (the CUDA ones included) take their state only as a CPU ByteTensor,
so a state moved to the GPU by `map_location` made `--resume` on CUDA fail.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch

from errors import UserFacingError

FORMAT_VERSION = 1


def rng_state() -> dict:
    """The CPU generator's state and, where CUDA is present, every CUDA device's."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _as_cpu_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.to(device="cpu", dtype=torch.uint8)


def restore_rng_state(state: dict) -> None:
    """Restore `rng_state()`'s states from wherever they were loaded (generators take only CPU bytes).

    CUDA states are restored for the devices this machine has; a checkpoint written without CUDA
    leaves the CUDA generators as seeded.
    """
    torch.set_rng_state(_as_cpu_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_as_cpu_bytes(cuda_state), index)


def _to_device(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _cannot_read(path: Path, e: Exception) -> str:
    """Why `path` was not loaded, without torch's advice to retry with weights_only=False.

    That advice ("will likely succeed") is wrong for a file of unknown origin: it would run the file's code.
    """
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        found = re.search(r"GLOBAL (\S+)", text) or re.search(r"(\S+) must be \S+ to load", text)
        what = f"it asks to load {found.group(1)}" if found else "it holds objects other than tensors and numbers"
        return (f"Refused to read checkpoint {path}: {what}, which no checkpoint of this platform contains; "
                f"nothing in it was run. Do not open it by other means unless you trust where it came from.")
    return (f"Cannot read checkpoint {path}: {type(e).__name__}: {text}. The file is damaged or is not a "
            f"checkpoint of this platform.")


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The checkpoint's tensors on `map_location` (a device), except its RNG states, kept on the CPU."""
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"No checkpoint at {path}. Start without --resume, or point --config.workdir "
                              f"at the directory of the run you want to continue.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holds objects we refuse to unpickle
        raise UserFacingError(_cannot_read(path, e)) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise UserFacingError(f"Checkpoint {path} has format {found!r}; this version of "
                              f"the platform reads format {FORMAT_VERSION}.")
    if torch.device(map_location) != torch.device("cpu"):
        state = {k: v if k == "rng" else _to_device(v, map_location) for k, v in state.items()}
    return state


# Settings that change the shape of a network: a checkpoint loads only into a learner built with the same.
ARCHITECTURE_FIELDS = ("algorithm", "critic_hidden", "critic_layer_norm", "value_layer_norm",
                       "diffusion.num_steps", "diffusion.width", "diffusion.inner", "diffusion.num_blocks",
                       "diffusion.time_dim", "multipliers.hidden", "multipliers.layer_norm", "iql.hidden")


def _architecture(config: dict) -> dict:
    from networks.mlp import value_layer_norm_placement

    out = {}
    for field in ARCHITECTURE_FIELDS:
        value = config
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            value = tuple(value)
        out[field] = value
    # the forms a setting took in older configs (networks/factory.py reads them the same way)
    out["value_layer_norm"] = value_layer_norm_placement(out["value_layer_norm"] or False)
    out["critic_layer_norm"] = bool(out["critic_layer_norm"])
    if out["multipliers.hidden"] is not None and out["multipliers.layer_norm"] is None:
        out["multipliers.layer_norm"] = "input+hidden"
    return out


def check_same_architecture(path: Path, saved_config_json: str, cfg, how: str) -> None:
    """Refuse, naming the settings, a checkpoint whose networks this config would build differently.

    Without it a mismatch surfaces as torch's list of missing and unexpected state-dict keys.
    `how` says how to keep the checkpoint's networks (the flags to add).
    """
    saved, wanted = _architecture(json.loads(saved_config_json)), _architecture(cfg.to_dict())
    differ = [f for f in ARCHITECTURE_FIELDS if saved[f] is not None and saved[f] != wanted[f]]
    if differ:
        flags = " ".join(f"--config.{f}={saved[f]}" for f in differ)
        raise UserFacingError(
            f"The checkpoint {path} holds networks built with other settings than this run's: "
            + ", ".join(f"{f} {saved[f]!r} there, {wanted[f]!r} here" for f in differ)
            + f". {how} {flags}.")
