"""Online batches fetched ahead of time, so the learner's update loop does not wait on sampling.

A background thread pulls batches from the replay sampler, copies them out of
Reverb's read-only buffers into torch tensors (pinned memory and an async copy
when the learner is on a GPU) and keeps `depth` of them ready. Fetching a batch
then overlaps with the previous update instead of following it: on this 2-core
machine a learner in its own process spent 6-9 % of its time inside
`next(sampler)` before (docs/performance.md, bench/learner_feed.py).

What still blocks `get()` is intended: the table's rate limiter holding the
learner to `updates_per_env_step` while actors catch up. The feed samples at
most `depth` batches (plus tf.data's prefetch) ahead of the updates, so the
limiter's ratio holds to within a few batches.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from replay import TRANSITION_FIELDS

_DONE = object()


class OnlineFeed:
    def __init__(self, make_sampler: Callable[[], Iterator[dict]], device: torch.device, depth: int = 2):
        """`make_sampler()` returns an iterator of dicts of numpy arrays (replay.sampler.OnlineSampler);
        it is called again whenever the iterator ends, which it does when the rate limiter has held
        it for its timeout: that is how the thread notices `close()` while actors are stopped."""
        self._make_sampler = make_sampler
        self._device = torch.device(device)
        self._pin = self._device.type == "cuda"
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="online-feed", daemon=True)
        self._thread.start()

    def _to_device(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {}
        for k in TRANSITION_FIELDS:
            t = torch.from_numpy(np.array(batch[k]))     # Reverb's arrays are read-only: copy
            if self._pin:
                t = t.pin_memory()
            out[k] = t.to(self._device, non_blocking=self._pin)
        return out

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        sampler = None
        try:
            while not self._stop.is_set():
                if sampler is None:
                    sampler = self._make_sampler()
                try:
                    batch = next(sampler)
                except StopIteration:
                    sampler = None          # held by the rate limiter for its timeout; look at _stop, go on
                    continue
                if not self._put(self._to_device(batch)):
                    return
        except BaseException as e:          # handed to the learner's thread, which raises it
            self._error = e
            self._put(_DONE)

    def get(self, timeout: float = 1.0) -> Optional[dict[str, torch.Tensor]]:
        """The next batch, or None if none arrived within `timeout` seconds (check for stop, call again)."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            if self._error is not None:
                raise self._error
            return None
        if item is _DONE:
            raise self._error
        return item

    def close(self) -> None:
        self._stop.set()
        while True:                          # free a producer blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)
