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


def test_sampling_the_replay_hides_the_gpus_from_tensorflow_before_its_first_operation(gpu_hiding_calls, monkeypatch):
    """The learner's sampler runs TensorFlow's only operations (a tf.data pipeline), whoever started the server."""
    from replay import tf_devices
    from replay.sampler import OnlineSampler
    from replay.server import ReplaySpec, start_server

    server, address = start_server(ReplaySpec(obs_dim=3, act_dim=2, max_size=100, min_size_to_sample=1))
    gpu_hiding_calls.clear()
    monkeypatch.setattr(tf_devices, "_hidden", False)    # as in a process that only connects to the server
    try:
        OnlineSampler(address, 4, rate_limiter_timeout_ms=100, key=bytes(range(32)))
        assert gpu_hiding_calls == [([], "GPU")]
    finally:
        server.stop()
