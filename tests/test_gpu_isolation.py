"""The GPU belongs to torch in the learner: TensorFlow (Reverb's dependency, a CUDA build) is denied
it in every process that hosts or reads the replay, and CPU-only children never see it.

No GPU here: the tests check that TensorFlow is told to hide its GPUs, and what environment the
supervisor gives each child.
"""
from __future__ import annotations

import pytest

pytest.importorskip("reverb")


@pytest.fixture
def gpu_hiding_calls(monkeypatch):
    """Every tf.config.set_visible_devices call, in a process that has not hidden its GPUs yet."""
    import tensorflow as tf

    from replay import tf_devices

    calls = []
    real = tf.config.set_visible_devices

    def record(devices, device_type=None):
        calls.append((list(devices), device_type))
        real(devices, device_type)

    monkeypatch.setattr(tf.config, "set_visible_devices", record)
    monkeypatch.setattr(tf_devices, "_hidden", False)
    return calls


def test_hosting_the_replay_hides_the_gpus_from_tensorflow(gpu_hiding_calls, tmp_path):
    import tensorflow as tf

    from replay.host import ReplayHost
    from replay.server import ReplaySpec

    host = ReplayHost(ReplaySpec(obs_dim=3, act_dim=2, max_size=100, samples_per_insert=1.0, min_size_to_sample=1),
                      checkpoint_interval_s=0, say=lambda _: None)
    try:
        assert gpu_hiding_calls == [([], "GPU")]
        assert tf.config.get_visible_devices("GPU") == []
    finally:
        host.stop(final_checkpoint=False)
