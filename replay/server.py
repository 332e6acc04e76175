"""The Reverb server that sits between CPU actors and the learner.

Reverb (and so TensorFlow) is imported here, not in `replay/__init__.py`, so
that the offline learner can run without TensorFlow installed or loaded.

Security: `reverb.Server` always listens on ALL interfaces (`*:PORT`) and has
no authentication; anyone who can reach the port can read, insert and delete
data. Reverb offers no option to bind to loopback only, so the safety here is
procedural: by default the address handed to actors is `localhost:PORT`, a log
line says that the port must stay on a private network (firewalled), and
opting into remote actors (`allow_remote=True`) logs a loud warning. What a
stranger *inserts* is made harmless by the run's HMAC tags (replay/auth.py):
every transition item carries a `tag` column, every weights item a tag.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from typing import Optional, Tuple

from errors import ConfigError
from replay import ONLINE_TABLE, TRANSITION_FIELDS, WEIGHTS_TABLE  # noqa: F401  (re-exported)
from replay.auth import TAG_BYTES, TAG_FIELD

logger = logging.getLogger(__name__)


def min_error_buffer(samples_per_insert: float) -> float:
    """Smallest error buffer Reverb's `SampleToInsertRatio` accepts in practice.

    Below 2 * max(1, spi) the limiter can reach a state where neither an insert
    nor a sample is allowed (measured, see shared/NOTES.md), which deadlocks
    actors and learner.
    """
    return 2.0 * max(1.0, float(samples_per_insert))


@dataclasses.dataclass
class ReplaySpec:
    """Everything that fixes the server's tables.

    `samples_per_insert` counts *items*, not learner updates: a learner that
    draws batches of 256 and does 1 update per environment step needs
    samples_per_insert = 256 (use `samples_per_insert_for(...)`).

    `error_buffer` is how far (in samples) the learner may run ahead of or
    behind the exact ratio before Reverb blocks the faster side. If it is too
    small, actors and learner proceed in lock step and both mostly wait; the
    default follows Acme (10 % of the samples owed for `min_size_to_sample`
    inserts), never below the `min_error_buffer` deadlock bound.
    """

    obs_dim: int
    act_dim: int
    max_size: int = 1_000_000
    samples_per_insert: float = 256.0
    min_size_to_sample: int = 5000  # the papers' value before online updates start
    error_buffer: Optional[float] = None
    checkpoint_dir: Optional[str] = None

    def __post_init__(self):
        for name in ("obs_dim", "act_dim", "max_size", "min_size_to_sample"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"Replay setting {name} must be a positive integer, got {value!r}. "
                    "Check the replay section of the config.")
        if self.samples_per_insert <= 0:
            raise ConfigError(
                f"Replay setting samples_per_insert must be > 0, got {self.samples_per_insert}. "
                "It is batch_size x learner updates per environment step.")
        if self.min_size_to_sample > self.max_size:
            raise ConfigError(
                f"Replay setting min_size_to_sample ({self.min_size_to_sample}) is larger than "
                f"max_size ({self.max_size}): the table could never hold enough items and the "
                "learner would wait forever. Lower min_size_to_sample or raise max_size.")
        if self.error_buffer is None:
            self.error_buffer = max(
                min_error_buffer(self.samples_per_insert),
                0.1 * self.samples_per_insert * self.min_size_to_sample)
        if self.error_buffer < min_error_buffer(self.samples_per_insert):
            raise ConfigError(
                f"Replay setting error_buffer ({self.error_buffer}) is below "
                f"2 x max(1, samples_per_insert) = {min_error_buffer(self.samples_per_insert)}; "
                "Reverb's rate limiter can then block both actors and learner for ever. "
                "Raise error_buffer or leave it unset for the default.")


def samples_per_insert_for(batch_size: int, updates_per_env_step: float) -> float:
    """Translate the learner's update-to-data ratio into Reverb's item ratio."""
    return float(batch_size) * float(updates_per_env_step)


def transition_signature(obs_dim: int, act_dim: int):
    """Signature of one item of the online table: one transition, no time axis, and its tag.

    The writer references single steps (`history[k][-1]`), which Reverb stores
    squeezed, so the item's shapes are exactly these and TrajectoryDataset
    returns them unchanged. `tag` is the writer's HMAC of the other fields
    (replay/auth.py), checked by the learner's sampler.
    """
    import tensorflow as tf

    f32 = tf.float32
    return {
        "observation": tf.TensorSpec([obs_dim], f32),
        "action": tf.TensorSpec([act_dim], f32),
        "reward": tf.TensorSpec([], f32),
        "next_observation": tf.TensorSpec([obs_dim], f32),
        "discount": tf.TensorSpec([], f32),
        TAG_FIELD: tf.TensorSpec([TAG_BYTES], tf.uint8),
    }


def make_tables(spec: ReplaySpec):
    import reverb

    online = reverb.Table(
        name=ONLINE_TABLE,
        sampler=reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(),
        max_size=spec.max_size,
        rate_limiter=reverb.rate_limiters.SampleToInsertRatio(
            samples_per_insert=spec.samples_per_insert,
            min_size_to_sample=spec.min_size_to_sample,
            error_buffer=spec.error_buffer),
        signature=transition_signature(spec.obs_dim, spec.act_dim),
    )
    # One slot: publishing replaces the previous weights (Fifo evicts it), and
    # MinSize(1) never blocks inserts; a ratio limiter on a table that the
    # learner only inserts into would block the publisher for ever.
    weights = reverb.Table(
        name=WEIGHTS_TABLE,
        sampler=reverb.selectors.Fifo(),
        remover=reverb.selectors.Fifo(),
        max_size=1,
        rate_limiter=reverb.rate_limiters.MinSize(1),
    )
    return [online, weights]


def start_server(spec: ReplaySpec, port: Optional[int] = None,
                 allow_remote: bool = False) -> Tuple["reverb.Server", str]:
    """Start the tables; restore them from `spec.checkpoint_dir` if it holds a checkpoint.

    Returns the server (call `.stop()` when done) and the address that actors
    and the learner should use.
    """
    import portpicker
    import reverb

    if port is None:
        port = portpicker.pick_unused_port()
    checkpointer = None
    if spec.checkpoint_dir is not None:
        os.makedirs(spec.checkpoint_dir, exist_ok=True)
        checkpointer = reverb.checkpointers.DefaultCheckpointer(path=spec.checkpoint_dir)
    try:
        server = reverb.Server(tables=make_tables(spec), port=port, checkpointer=checkpointer)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(
            f"Could not start the replay server on port {port} "
            f"(checkpoint dir {spec.checkpoint_dir!r}): {e}. Is the port free, and does a "
            "checkpoint there come from a server with the same table names?") from e

    if checkpointer is not None:
        try:
            _check_tables_match_spec(server, spec)
        except ConfigError:
            server.stop()
            raise

    if allow_remote:
        host = socket.getfqdn()
        if host.startswith("localhost"):  # some machines map their FQDN to localhost
            host = socket.gethostname()
        address = f"{host}:{port}"
        logger.warning(
            "!!! REPLAY SERVER OPEN TO REMOTE ACTORS at %s. Reverb listens on ALL network "
            "interfaces with NO authentication: anyone who can reach port %d can read, "
            "insert or delete replay data and the published policy weights. Only do this on "
            "a private, firewalled network. !!!", address, port)
    else:
        from replay.loopback import is_loopback, listening_addresses

        address = f"localhost:{port}"
        where = listening_addresses(port)
        if where and all(is_loopback(a) for a in where):     # replay/loopback.py's shim took effect
            logger.info("Replay server at %s, listening on loopback only (%s): other machines cannot "
                        "connect.", address, ", ".join(sorted(set(where))))
        else:
            logger.info(
                "Replay server at %s (actors must run on this machine). Reverb listens on all "
                "interfaces without authentication, so port %d must stay on a private network "
                "or be blocked by a firewall.", address, port)
    return server, address


def _check_tables_match_spec(server, spec: ReplaySpec) -> None:
    """Refuse a restored checkpoint whose tables differ from `spec`.

    Reverb restores tables exactly as checkpointed and silently ignores the
    tables passed to the server (measured: a checkpoint with obs_dim 3 came
    back under a spec with obs_dim 4, max_size and limiter unchanged), which
    would surface much later as shape errors in actors or a wrong ratio.
    """
    import reverb

    info = reverb.Client(f"localhost:{server.port}").server_info(timeout=30)
    online = info[ONLINE_TABLE]
    rl = online.rate_limiter_info
    want_shapes = {k: v.shape.as_list() for k, v in transition_signature(spec.obs_dim, spec.act_dim).items()}
    got_shapes = {k: v.shape.as_list() for k, v in (online.signature or {}).items()}
    diffs = []
    if got_shapes != want_shapes:
        diffs.append(f"signature {got_shapes} != {want_shapes}")
    if online.max_size != spec.max_size:
        diffs.append(f"max_size {online.max_size} != {spec.max_size}")
    if abs(rl.samples_per_insert - spec.samples_per_insert) > 1e-9:
        diffs.append(f"samples_per_insert {rl.samples_per_insert} != {spec.samples_per_insert}")
    if rl.min_size_to_sample != spec.min_size_to_sample:
        diffs.append(f"min_size_to_sample {rl.min_size_to_sample} != {spec.min_size_to_sample}")
    want_max_diff = spec.samples_per_insert * spec.min_size_to_sample + spec.error_buffer
    if abs(rl.max_diff - want_max_diff) > 1e-6 * max(1.0, abs(want_max_diff)):
        diffs.append(f"error_buffer (max_diff {rl.max_diff} != {want_max_diff})")
    if diffs:
        raise ConfigError(
            f"The replay checkpoint in {spec.checkpoint_dir} was written with other table settings "
            f"than the current config ({'; '.join(diffs)}), and Reverb would silently keep the old "
            "ones. Use a new checkpoint_dir, delete the old checkpoint, or restore the old settings. "
            f"(A checkpoint without a {TAG_FIELD!r} column comes from a version before transitions were "
            "signed; it cannot be resumed.)")


def checkpoint(client) -> str:
    """Write a checkpoint of every table and return its path.

    Blocks the server while it runs (about 7 s for 200k transitions), so call
    it rarely, e.g. with the learner's own checkpoints.
    """
    import reverb

    if isinstance(client, str):
        client = reverb.Client(client)
    path = client.checkpoint()
    logger.info("Replay checkpoint written to %s", path)
    return path
