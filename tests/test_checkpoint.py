"""learner/checkpoint.py: RNG states that survive loading onto another device, and a refusal
message for untrusted files that gives no unsafe advice.

No GPU here: the meta device stands in for CUDA. Loading a checkpoint onto it moves every
tensor off the CPU exactly as `map_location=cuda` does, which is what broke `--resume` on CUDA
(`TypeError: RNG state must be a torch.ByteTensor`).
"""
from __future__ import annotations

import os

import pytest
import torch

from errors import UserFacingError
from learner.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint


def test_rng_state_is_restored_from_a_checkpoint_loaded_onto_another_device(tmp_path):
    torch.manual_seed(123)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"rng": rng_state(), "weights": torch.ones(3)})
    expected = torch.rand(5)                      # what the run draws next

    torch.manual_seed(999)
    state = load_checkpoint(path, map_location="meta")
    assert state["weights"].device.type == "meta"  # the rest goes where it was asked
    restore_rng_state(state["rng"])
    assert torch.equal(torch.rand(5), expected)


def test_cuda_generators_are_restored_from_cpu_bytes(tmp_path, monkeypatch):
    """What a CUDA run saved reaches torch.cuda.set_rng_state as CPU ByteTensors, per device present."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=0: restored.append((s, device)))
    saved = {"torch": torch.get_rng_state(), "cuda": [torch.arange(16, dtype=torch.uint8)] * 2}  # 2 GPUs
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"rng": saved})

    restore_rng_state(load_checkpoint(path, map_location="meta")["rng"])
    assert len(restored) == 1                      # this machine has one device
    state, device = restored[0]
    assert device == 0 and state.device.type == "cpu" and state.dtype == torch.uint8
    assert torch.equal(state, saved["cuda"][0])


def test_an_untrusted_pickle_is_refused_without_advice_to_load_it_unsafely(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "pretrained.pt"
    torch.save({"format_version": 1, "learner": RunsCode()}, path)
    with pytest.raises(UserFacingError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert "system" in message and str(path) in message          # what was refused, and where
    assert "weights_only" not in message and "likely succeed" not in message
