"""Learner-to-actor policy weights through the one-slot `weights` table.

Reusing the replay server spares a second network service (and a second
unauthenticated port). The table keeps only the newest item (max_size=1,
Fifo), so actors always get the latest weights and the server holds one copy.

An item is [version (int64), manifest (JSON of parameter names as uint8),
tag (HMAC-SHA-256 of all the rest under the run's key, uint8[32]), param_0,
param_1, ...]. Reverb lets anyone who reaches its port insert here, so a
subscriber takes only items whose tag checks out (replay/auth.py) and compares
versions only among those: a stranger's publication, whatever its version, is
counted, logged and ignored, and the learner's next one is taken as before.
The manifest travels with every item because the
table has no signature (the parameter set belongs to the learner, not to the
server), and Reverb returns the columns of an unsigned item as a flat list.
Columns reference `history[i][-1:]` (a slice): squeezed single-step `[-1]`
columns make `Client.sample(...)` with its default `emit_timesteps=True` fail
("len() of unsized object"); slices work with either setting.
"""

from __future__ import annotations

import json
import logging
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from replay.auth import Rejections, WeightsSigner
from replay.server import WEIGHTS_TABLE
from replay.writer import connect_with_retry

logger = logging.getLogger(__name__)

Params = Dict[str, np.ndarray]

# A learner restarted by its supervisor goes on from its last checkpoint, i.e. from an older step than
# subscribers have already taken. Its publications carry its incarnation above the step, so they still
# rank above everything the dead learner published, while an old authentic item replayed by a stranger
# on the port still ranks below (a subscriber never goes back to older weights).
VERSION_STRIDE = 10**12


def publication_version(step: int, incarnation: int = 0) -> int:
    """The version of the weights published at learner `step` by the learner's `incarnation`-th restart."""
    if not 0 <= step < VERSION_STRIDE or incarnation < 0:
        raise ValueError(f"step {step} or incarnation {incarnation} out of range")
    return incarnation * VERSION_STRIDE + step


class WeightPublisher:
    """Used by the learner; `publish` is cheap enough to call every few hundred updates."""

    def __init__(self, address: str, table: str = WEIGHTS_TABLE, connect_timeout_s: float = 60.0,
                 publish_timeout_s: float = 60.0, *, key: bytes):
        """`key`: the run's secret (replay/auth.py); subscribers take only what it tagged."""
        self._signer = WeightsSigner(key)
        self._table = table
        self._timeout_ms = int(publish_timeout_s * 1000)
        self._client = connect_with_retry(address, connect_timeout_s, tables=[table])

    def publish(self, params: Mapping[str, np.ndarray], version: int) -> None:
        """Replace the published weights; `version` should grow (e.g. the learner step)."""
        names = list(params)
        if not names:
            raise ValueError("publish needs at least one parameter")
        manifest = np.frombuffer(json.dumps(names).encode("utf-8"), dtype=np.uint8)
        head = [np.asarray(version, dtype=np.int64), manifest]
        arrays = [np.array(params[n], order="C", copy=False) for n in names]  # keeps 0-d arrays 0-d
        columns = head + [self._signer.tag(*head, arrays)] + arrays
        # A fresh writer per publish: the parameter set may change between
        # calls (and a trajectory writer's columns are fixed by its first step),
        # and publishing is rare enough that the set-up cost does not matter.
        writer = self._client.trajectory_writer(num_keep_alive_refs=1)
        try:
            writer.append(columns)
            writer.create_item(self._table, 1.0, [col[-1:] for col in writer.history])
            writer.flush(timeout_ms=self._timeout_ms)
        finally:
            writer.close()


class WeightSubscriber:
    """Used by actors and the evaluator; `poll` never blocks on an empty table.

    `rejected` counts the publications refused for a tag that did not check out.
    """

    def __init__(self, address: str, table: str = WEIGHTS_TABLE, connect_timeout_s: float = 60.0, *,
                 key: bytes, log=None):
        self._signer = WeightsSigner(key)
        self._table = table
        self._client = connect_with_retry(address, connect_timeout_s, tables=[table])
        self._last_version: Optional[int] = None
        self._last_inserts: Optional[int] = None
        self._rejections = Rejections("weights publications", log=log, log_every_s=0.0)

    @property
    def rejected(self) -> int:
        return self._rejections.count

    @property
    def version(self) -> Optional[int]:
        """Version of the weights last returned by `poll` (None before the first)."""
        return self._last_version

    def poll(self) -> Optional[Tuple[int, Params]]:
        """Newest (version, params) if it is newer than what this subscriber returned last.

        Returns None when nothing is published yet or nothing newer arrived,
        so an actor can call it every episode and only reload on a result.
        The table's insert counter is checked first, so an unchanged table
        costs one small RPC instead of a download of all weights (and a
        rejected item is fetched and logged once, not on every poll).
        Nothing in an item is parsed before its tag checks out.
        """
        info = self._client.server_info(timeout=10)[self._table]
        inserts = int(info.rate_limiter_info.insert_stats.completed)
        if info.current_size == 0:
            return None  # sampling now would block until the learner publishes
        if self._last_inserts is not None and inserts == self._last_inserts:
            return None
        self._last_inserts = inserts
        sample = next(self._client.sample(self._table, num_samples=1, emit_timesteps=False))
        cols = [np.asarray(c).reshape(np.shape(c)[1:]) for c in sample.data]  # drop the [-1:] time axis
        if len(cols) < 4 or not self._signer.check(cols[0], cols[1], cols[2], cols[3:]):
            self._rejections.add(1, "weights without this run's tag; kept version "
                                    f"{self._last_version}")
            return None
        version = int(cols[0])
        if self._last_version is not None and version <= self._last_version:
            return None
        names = json.loads(cols[1].tobytes().decode("utf-8"))
        if len(names) != len(cols) - 3:
            raise RuntimeError(
                f"weights item has {len(cols) - 3} arrays but its manifest names {len(names)}")
        self._last_version = version
        return version, dict(zip(names, cols[3:]))
