"""Actor side of the replay channel: one Reverb item per environment transition.

Each item references single steps (`history[k][-1]`), which Reverb stores
without a time axis, so what the learner samples has exactly the table
signature's shapes ([obs_dim], [act_dim], [], [obs_dim], []). Storing whole
transitions (rather than steps plus an n-step pattern) keeps vector-env
batches, truncation and resets trivial for the actor: it passes
`next_observation` and `discount` explicitly. Every item also carries a `tag`,
the HMAC of its fields under the run's key (replay/auth.py): the learner trains
only on rows whose tag checks out, so a stranger on the port cannot feed it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable, Optional

import numpy as np

from errors import UserFacingError
from replay import ONLINE_TABLE, TRANSITION_FIELDS
from replay.auth import TAG_FIELD, TransitionSigner

logger = logging.getLogger(__name__)


class ReplayUnavailableError(UserFacingError):
    """The replay server could not be reached."""


def connect_with_retry(address: str, timeout_s: float = 60.0,
                       log: Optional[Callable[..., None]] = None,
                       tables: Iterable[str] = ()):
    """Return a `reverb.Client` once the server at `address` answers.

    Actors and learner start in any order, so a missing server is first
    treated as "not up yet" and retried with exponential back-off (0.5 s
    doubling to 8 s). After `timeout_s` a `ReplayUnavailableError` says what to
    check. `tables` optionally names tables that must exist, which catches an
    actor pointed at the wrong server.
    """
    import reverb

    log = log or logger.warning
    deadline = time.monotonic() + timeout_s
    client = reverb.Client(address)
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        # server_info waits for the channel until its deadline (even when the
        # connection is refused); whole seconds only, and 0 would mean "no
        # deadline". Growing tries (1, 2, 4, 8, 10 s) tolerate a server that is
        # busy, e.g. writing a checkpoint.
        per_try = max(1, min(math.ceil(2 * delay), 10, math.ceil(remaining)))
        try:
            info = client.server_info(timeout=per_try)
            break
        except Exception as e:  # DeadlineExceededError, RuntimeError(UNAVAILABLE), ...
            last_error = e
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplayUnavailableError(
                f"Cannot reach the replay server at {address} after {timeout_s:.0f} s "
                f"({attempt} attempts; last error: {last_error}). Check that the replay server "
                "process is running, that the address and port match what it logged at start-up, "
                "and that the port is not blocked by a firewall.")
        wait = min(delay, remaining)
        log(f"cannot reach replay server at {address}, retrying in {wait:.1f}s")
        time.sleep(wait)
        delay = min(delay * 2.0, 8.0)
    missing = [t for t in tables if t not in info]
    if missing:
        raise ReplayUnavailableError(
            f"The replay server at {address} has no table(s) {missing} (it has {sorted(info)}). "
            "The address probably points at another Reverb server.")
    return client


class TransitionWriter:
    """Streams transitions into the online table.

    Every `flush_every` adds, `add` waits until at most `flush_every` items are
    unconfirmed by the server, so at most 2 x flush_every are ever pending.
    This flush is the back-pressure point: when the learner falls behind, the
    rate limiter stops confirming inserts and `add` blocks here, which is what
    keeps the samples-per-insert ratio. Without it Reverb buffers without
    limit; it already logs "The number of pending items is alarmingly high"
    (once per item) from about 50 pending items, hence the default 16.

    Built on a trajectory writer, not Reverb's structured writer: the latter
    inserted about twice as fast here (14-19k vs 5-9k items/s per process,
    still far above what a CPU actor produces) but has no close(), and
    destroying it with unconfirmed items (learner stopped sampling, or server
    gone) blocks for ever, so an actor could never exit.
    """

    def __init__(self, address: str, table: str = ONLINE_TABLE, flush_every: int = 16,
                 connect_timeout_s: float = 60.0, blocked_log_every_s: float = 60.0,
                 log: Optional[Callable[..., None]] = None, *, key: bytes):
        """`key`: the run's secret (replay/auth.py), which tags every transition."""
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self._table = table
        self._flush_every = int(flush_every)
        self._blocked_log_every_s = blocked_log_every_s
        self._connect_timeout_s = connect_timeout_s
        self._address = address
        self._log = log or logger.warning
        self._client = connect_with_retry(address, connect_timeout_s, log=self._log,
                                          tables=[table])
        signature = self._client.server_info(timeout=max(1, int(connect_timeout_s)))[table].signature
        if signature is None or set(signature) != {*TRANSITION_FIELDS, TAG_FIELD}:
            raise ReplayUnavailableError(
                f"Table {table!r} at {address} does not hold tagged transitions "
                f"(signature {signature}); it was not started by replay.server.start_server "
                "of this version.")
        self._signer = TransitionSigner(key, TRANSITION_FIELDS)
        # Checked on every add so that a wrong shape fails in the actor code
        # that produced it, with the field name and the expected shape.
        self._shapes = {k: tuple(signature[k].shape.as_list()) for k in TRANSITION_FIELDS}
        self._writer = self._client.trajectory_writer(num_keep_alive_refs=1)
        self._since_flush = 0
        self._closed = False
        self.num_added = 0

    def add(self, obs, action, reward, next_obs, discount) -> None:
        """Add one transition; `discount` is 0 on termination, 1 otherwise (truncation too)."""
        self._write({
            "observation": np.asarray(obs, dtype=np.float32),
            "action": np.asarray(action, dtype=np.float32),
            "reward": np.asarray(reward, dtype=np.float32),
            "next_observation": np.asarray(next_obs, dtype=np.float32),
            "discount": np.asarray(discount, dtype=np.float32),
        })

    def add_batch(self, obs, action, reward, next_obs, discount) -> None:
        """Add B transitions from a vector env (leading batch dim on every array)."""
        cols = {
            "observation": np.asarray(obs, dtype=np.float32),
            "action": np.asarray(action, dtype=np.float32),
            "reward": np.asarray(reward, dtype=np.float32),
            "next_observation": np.asarray(next_obs, dtype=np.float32),
            "discount": np.asarray(discount, dtype=np.float32),
        }
        b = {v.shape[0] if v.ndim else None for v in cols.values()}
        if len(b) != 1 or None in b:
            raise ValueError(
                "add_batch needs the same leading batch size on every array, got shapes "
                + ", ".join(f"{k}={v.shape}" for k, v in cols.items()))
        if not b.pop():
            return
        self._check_shapes({k: v[0] for k, v in cols.items()})   # before tagging: a clear error, not numpy's
        tags = self._signer.tags(cols)           # one call for the batch
        for i in range(len(tags)):
            self._write({**{k: v[i] for k, v in cols.items()}, TAG_FIELD: tags[i]})

    def _check_shapes(self, step) -> None:
        for k in TRANSITION_FIELDS:
            shape = self._shapes[k]
            if step[k].shape != shape:
                raise ValueError(
                    f"Transition field {k!r} has shape {step[k].shape} but the replay table "
                    f"{self._table!r} expects {shape}. Is the actor's environment the one the "
                    "replay server was configured for (obs_dim, act_dim)?")

    def _write(self, step) -> None:
        if self._closed:
            raise RuntimeError("TransitionWriter is closed")
        if TAG_FIELD not in step:                # a single add(); add_batch checked and tagged its rows
            self._check_shapes(step)
            step[TAG_FIELD] = self._signer.tag_row(step)
        w = self._writer
        w.append(step)
        hist = w.history
        # [-1] (not [-1:]) so the item has no time axis and matches the signature.
        w.create_item(self._table, 1.0, {k: hist[k][-1] for k in (*TRANSITION_FIELDS, TAG_FIELD)})
        self.num_added += 1
        self._since_flush += 1
        if self._since_flush >= self._flush_every:
            self._flush(self._flush_every)
            self._since_flush = 0

    def _flush(self, block_until_num_items: int, max_wait_s: Optional[float] = None) -> bool:
        """Block until at most `block_until_num_items` items are unconfirmed.

        Reverb's writer retries forever when the server is gone, which looks
        exactly like a rate-limited insert; probing the server on every
        timeout tells the two apart, so a dead server ends the actor with a
        clear error after `connect_timeout_s` instead of hanging it. Returns
        False if `max_wait_s` ran out first.
        """
        import reverb

        waited = 0.0
        unreachable_since = None
        step_s = self._blocked_log_every_s
        if max_wait_s is not None:
            step_s = min(step_s, max(max_wait_s, 0.001))
        while True:
            try:
                self._writer.flush(block_until_num_items, timeout_ms=max(1, int(step_s * 1000)))
                return True
            except reverb.errors.DeadlineExceededError:
                waited += step_s
            if max_wait_s is not None and waited >= max_wait_s:
                return False
            try:
                self._client.server_info(timeout=max(1, min(5, math.ceil(self._connect_timeout_s))))
                unreachable_since = None
                self._log(
                    f"replay inserts held for {waited:.1f}s by the rate limiter: the learner is "
                    "sampling slower than samples_per_insert requires")
            except Exception as e:  # DeadlineExceededError, RuntimeError(UNAVAILABLE)
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > self._connect_timeout_s:
                    raise ReplayUnavailableError(
                        f"The replay server at {self._address} stopped answering "
                        f"({now - unreachable_since:.0f} s; last error: {e}) while "
                        f"{self.num_added} transitions had been added; unconfirmed ones are lost. "
                        "Check whether the learner / replay process died.") from e
                self._log(f"cannot reach replay server at {self._address} while flushing; "
                          "still waiting")

    def flush(self) -> None:
        """Wait until every added transition is in the table."""
        self._flush(0)
        self._since_flush = 0

    def close(self, timeout_s: Optional[float] = None) -> None:
        """Flush, then release the writer.

        The flush waits for the rate limiter, i.e. for the learner to sample;
        an actor shutting down after the learner stopped should pass
        `timeout_s`, after which unconfirmed transitions are dropped.
        """
        if self._closed:
            return
        try:
            if not self._flush(0, max_wait_s=timeout_s):
                self._log(f"replay writer closed after {timeout_s}s with unconfirmed transitions; "
                          "they are dropped")
        finally:
            self._abandon()

    def _abandon(self) -> None:
        # Close() returns at once even with unconfirmed items, which are dropped.
        self._writer.close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # don't wait on a flush while an error (maybe a dead server) propagates
            self._abandon()
