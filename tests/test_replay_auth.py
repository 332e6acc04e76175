"""The run's key and what it keeps out: a real learner, a real Reverb server on localhost.

A stranger on the replay port writes transitions with its own key; the learner's
update steps must never see them, and its log rows must count them.
"""

import json
import os
import stat

import numpy as np
import pytest
import torch

pytest.importorskip("reverb")

from configs import finetune  # noqa: E402
from errors import ConfigError  # noqa: E402
from replay import TRANSITION_FIELDS  # noqa: E402
from replay.auth import KEY_BYTES, create_key_file, load_key  # noqa: E402
from replay.server import ReplaySpec, start_server  # noqa: E402
from replay.writer import TransitionWriter  # noqa: E402

OBS, ACT = 3, 2
KEY = bytes(range(32))
STRANGER_KEY = bytes(range(1, 33))


def test_key_file_is_owner_only_kept_on_resume_and_refused_when_others_can_read_it(tmp_path):
    path = tmp_path / "run" / "run_key"
    old_umask = os.umask(0o022)   # the usual umask: a plain open() would make the file world-readable
    try:
        key = create_key_file(path)
    finally:
        os.umask(old_umask)
    assert len(key) == KEY_BYTES and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert create_key_file(path) == key == load_key(path)       # --resume keeps the run's key
    assert create_key_file(tmp_path / "other" / "run_key") != key
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_key(tmp_path / "missing")


def _rows(obs, act, reward, next_obs, discount):
    n = len(reward)
    flat = np.concatenate([np.asarray(x, np.float32).reshape(n, -1) for x in (obs, act, reward, next_obs, discount)], 1)
    return {r.tobytes() for r in flat}


def _transitions(n, start):
    i = np.arange(start, start + n, dtype=np.float32)
    return {"observation": np.stack([i, i + 0.5, -i], 1), "action": np.stack([i / 1e4, -i / 1e4], 1),
            "reward": i / 7.0, "next_observation": np.stack([i + 1, i + 1.5, -i - 1], 1),
            "discount": np.ones_like(i)}


def test_learner_never_trains_on_a_strangers_transitions_and_logs_how_many_it_dropped(tmp_path):
    from learner.agent import Learner
    from learner.offline_buffer import OfflineBuffer
    from learner.online import OnlineLearner

    cfg = finetune.get_config()
    cfg.critic_hidden = (16, 16)
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks, cfg.diffusion.time_dim = 16, 32, 1, 8
    o = cfg.online
    o.online_batch_size, o.offline_batch_size, o.num_candidates = 16, 16, 4
    o.log_interval, o.publish_interval, o.min_replay_size = 5, 5, 1
    server, address = start_server(ReplaySpec(OBS, ACT, max_size=1000, samples_per_insert=1, min_size_to_sample=1,
                                              error_buffer=1e9))
    try:
        real, forged = _transitions(100, 0), _transitions(100, 1000)
        with TransitionWriter(address, key=KEY) as w:
            w.add_batch(*(real[k] for k in TRANSITION_FIELDS))
        with TransitionWriter(address, key=STRANGER_KEY) as w:   # half the table is a stranger's
            w.add_batch(*(forged[k] for k in TRANSITION_FIELDS))

        rng = np.random.default_rng(0)
        off_obs = rng.standard_normal((200, OBS)).astype(np.float32)
        offline = OfflineBuffer(off_obs, rng.uniform(-1, 1, (200, ACT)), rng.standard_normal(200), off_obs,
                                np.zeros(200, np.float32), torch.device("cpu"))
        loop = OnlineLearner(cfg, Learner(cfg, OBS, ACT, torch.device("cpu")), offline, address, tmp_path, key=KEY)
        trained_on = []
        device_step = loop._device_step

        def spy(batch):   # the online rows of every batch an update step gets (they come first)
            n = o.online_batch_size
            trained_on.append(_rows(*(batch[k][:n].numpy() for k in ("obs", "act", "reward", "next_obs", "mask"))))
            return device_step(batch)
        loop._device_step = spy
        assert loop.run(max_steps=20) == 20
    finally:
        server.stop()

    assert len(trained_on) == 20 and all(len(b) > 1 for b in trained_on)
    genuine, strangers = _rows(*real.values()), _rows(*forged.values())
    assert all(b <= genuine for b in trained_on), "the learner trained on a row the run's actors did not write"
    assert not set().union(*trained_on) & strangers
    logged = [r for r in map(json.loads, (tmp_path / "logs" / "learner.jsonl").read_text().splitlines())
              if "replay/rejected" in r]
    assert len(logged) == 4
    counts = [r["replay/rejected"] for r in logged]
    assert counts == sorted(counts) and counts[-1] >= 100   # about half of 20 x 16 sampled rows were forged


def test_a_single_transitions_tag_is_the_same_as_its_batch_tag():
    """The writer tags one add() with tag_row, a batch with tags: the learner checks both the same way."""
    from replay.auth import TransitionSigner

    signer = TransitionSigner(KEY, TRANSITION_FIELDS)
    rng = np.random.default_rng(0)
    step = {"observation": rng.normal(size=OBS), "action": rng.uniform(-1, 1, ACT), "reward": np.float64(0.37),
            "next_observation": rng.normal(size=OBS), "discount": np.float32(1.0)}
    row = signer.tag_row(step)
    assert np.array_equal(row, signer.tags({k: np.asarray(v)[None] for k, v in step.items()})[0])
    assert signer.check({k: np.asarray(v)[None] for k, v in step.items()}, row[None]).all()
    step["reward"] = np.float64(0.38)
    assert not np.array_equal(signer.tag_row(step), row)
