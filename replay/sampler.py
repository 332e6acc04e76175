"""Learner side of the replay channel: batches of transitions as numpy float32.

Built on `reverb.TrajectoryDataset` + `tf.data` batching because it streams
many items per RPC (about 120 batches of 256 per second across processes
here) while `Client.sample` fetches one item per call (about 17 batches/s).

Every row's tag is checked against the run's key (replay/auth.py) before the
batch leaves the sampler: rows a stranger inserted are dropped and counted, and
the batch is topped up from the next ones, so the learner always gets
`batch_size` rows, all written by the run's own actors.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, Optional

import numpy as np

from replay.auth import TAG_FIELD, Rejections, TransitionSigner
from replay.server import ONLINE_TABLE, TRANSITION_FIELDS
from replay.tf_devices import import_reverb
from replay.writer import connect_with_retry

logger = logging.getLogger(__name__)


class OnlineSampler:
    """Iterator over dicts {observation [B,obs], action [B,act], reward [B],
    next_observation [B,obs], discount [B]} of float32 numpy arrays.

    `next()` blocks while the table is below `min_size_to_sample` or while the
    learner is ahead of the actors by more than the rate limiter's error
    buffer; that blocking is what enforces the update-to-data ratio. With
    `rate_limiter_timeout_ms >= 0` a wait that long ends the iteration
    (StopIteration) instead, e.g. for shutdown when actors have stopped.

    Rows whose tag does not match the run's `key` are never returned; they are
    added to `rejections` (pass one `replay.auth.Rejections` to every sampler of
    a learner to keep one count across them).
    """

    def __init__(self, address: str, batch_size: int, table: str = ONLINE_TABLE,
                 prefetch: int = 4, max_in_flight_samples_per_worker: Optional[int] = None,
                 num_workers_per_iterator: int = -1, rate_limiter_timeout_ms: int = -1,
                 connect_timeout_s: float = 60.0, *, key: bytes, rejections: Optional[Rejections] = None):
        reverb = import_reverb()     # its tf.data pipeline never takes the GPU: replay/tf_devices.py

        self._signer = TransitionSigner(key, TRANSITION_FIELDS)
        self.rejections = rejections if rejections is not None else Rejections("transitions")
        self.address = address
        self.table = table
        self.batch_size = int(batch_size)
        self._client = connect_with_retry(address, connect_timeout_s, tables=[table])
        if max_in_flight_samples_per_worker is None:
            # Reverb's rule of thumb: 2-3 x the batch size. Larger values
            # skew sampling towards one snapshot of the table.
            max_in_flight_samples_per_worker = 2 * self.batch_size
        ds = reverb.TrajectoryDataset.from_table_signature(
            server_address=address, table=table,
            max_in_flight_samples_per_worker=max_in_flight_samples_per_worker,
            num_workers_per_iterator=num_workers_per_iterator,
            rate_limiter_timeout_ms=rate_limiter_timeout_ms,
            get_signature_timeout_secs=max(1, int(connect_timeout_s)))
        # No ds.map(...) to drop the sample info: it halved the throughput here
        # (50-85 vs 90-145 batches/s); the info is dropped in __next__ instead.
        ds = ds.batch(self.batch_size, drop_remainder=True)
        ds = ds.prefetch(prefetch)
        self._iterator = ds.as_numpy_iterator()
        self.num_batches = 0

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        parts, have = [], 0
        while True:
            data = next(self._iterator).data
            self.num_batches += 1
            ok = self._signer.check(data, data[TAG_FIELD])
            if not parts and ok.all():           # the normal case: no copy
                return {k: data[k] for k in TRANSITION_FIELDS}
            self.rejections.add(int((~ok).sum()), "transitions without this run's tag, not trained on")
            if ok.any():
                parts.append({k: np.asarray(data[k])[ok] for k in TRANSITION_FIELDS})
                have += int(ok.sum())
            if have >= self.batch_size:
                # Rows past batch_size are dropped: they are only samples (the items stay in the table).
                return {k: np.concatenate([p[k] for p in parts])[:self.batch_size] for k in TRANSITION_FIELDS}

    def stats(self) -> Dict[str, float]:
        return table_stats(self._client, self.table)


def table_stats(client_or_address, table: str = ONLINE_TABLE, timeout_s: int = 10) -> Dict[str, float]:
    """Table size and rate-limiter counters, flat, for the learner's logger.

    `inserts` and `samples` are the rate limiter's completed-call counts
    (samples count items, so one batch of 256 is 256). `observed_spi` is the
    samples-per-insert ratio actually reached since the table became sampleable.
    `learner_waiting_ms` is the table worker's time with sample requests held
    by the limiter (Reverb's `waiting_for_inserts_ms`: learner waits for
    actors); `actors_waiting_ms` the time with inserts held (Reverb's
    `waiting_for_sampling_ms`: actors wait for the learner). `num_episodes` counts writer episodes, which the
    transition writer never ends, so it is not the number of env episodes.
    """
    reverb = import_reverb()

    client = reverb.Client(client_or_address) if isinstance(client_or_address, str) \
        else client_or_address
    info = client.server_info(timeout=max(1, int(timeout_s)))[table]
    rl = info.rate_limiter_info
    wt = info.table_worker_time
    inserts = int(rl.insert_stats.completed)
    samples = int(rl.sample_stats.completed)
    past_min = inserts - int(rl.min_size_to_sample)
    return {
        "current_size": int(info.current_size),
        "max_size": int(info.max_size),
        "num_episodes": int(info.num_episodes),
        "num_unique_samples": int(info.num_unique_samples),
        "inserts": inserts,
        "samples": samples,
        "samples_per_insert": float(rl.samples_per_insert),
        "min_size_to_sample": int(rl.min_size_to_sample),
        "min_diff": float(rl.min_diff),
        "max_diff": float(rl.max_diff),
        "observed_spi": samples / past_min if past_min > 0 else 0.0,
        "learner_waiting_ms": int(wt.waiting_for_inserts_ms),
        "actors_waiting_ms": int(wt.waiting_for_sampling_ms),
        "sleeping_ms": int(wt.sleeping_ms),
    }
