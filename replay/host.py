"""A running replay server plus its checkpoint schedule, for whichever process hosts it.

The server can live in its own program (`launch/replay_server.py`) or inside the
learner (`launch/learner.py --host_replay`). Inside the learner, Reverb sees
that sampler and server share a process and reads the table directly instead of
over gRPC: about 2x the batches per second (bench/learner_feed.py), which is
what keeps a fast (GPU) learner from waiting on sampling. Both layouts use the
same checkpoint format and the launcher gives both the run's replay/ directory.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional

from replay.server import ONLINE_TABLE, ReplaySpec, checkpoint, samples_per_insert_for, start_server
from replay.tf_devices import import_reverb

logger = logging.getLogger(__name__)


def replay_spec(online, obs_dim: int, act_dim: int, checkpoint_dir: Optional[str]) -> ReplaySpec:
    """The tables a finetuning config asks for (config.online)."""
    return ReplaySpec(obs_dim=obs_dim, act_dim=act_dim, max_size=int(online.replay_max_size),
                      samples_per_insert=samples_per_insert_for(online.online_batch_size,
                                                                online.updates_per_env_step),
                      min_size_to_sample=int(online.min_replay_size), checkpoint_dir=checkpoint_dir)


class ReplayHost:
    """Starts the server (restoring a checkpoint when there is one) and checkpoints it
    every `checkpoint_interval_s` from a background thread and once more in `stop()`.

    A checkpoint blocks the server for seconds on large tables (see replay.server.checkpoint);
    doing it from a thread keeps a hosting learner training meanwhile (it then waits only
    if it needs a batch the blocked server cannot give).
    """

    def __init__(self, spec: ReplaySpec, port: Optional[int] = None, allow_remote: bool = False,
                 checkpoint_interval_s: float = 120.0, address_file: Optional[str] = None,
                 say=print):
        reverb = import_reverb()     # TensorFlow without the GPU: replay/tf_devices.py

        self.spec = spec
        self.server, self.address = start_server(spec, port=port, allow_remote=allow_remote)
        self.port = self.server.port
        self.local_address = f"localhost:{self.port}"
        self._client = reverb.Client(self.local_address)
        self._lock = threading.Lock()          # one checkpoint at a time
        info = self._client.server_info(timeout=30)[ONLINE_TABLE]
        say(f"replay server at {self.address}: {info.current_size} online transitions "
            f"({'restored' if info.current_size else 'empty'}), "
            f"{int(info.rate_limiter_info.insert_stats.completed)} inserted so far")
        if address_file:
            Path(address_file).write_text(self.address)
        self._stop = threading.Event()
        self._thread = None
        if spec.checkpoint_dir and checkpoint_interval_s > 0:
            self._thread = threading.Thread(target=self._periodic, args=(float(checkpoint_interval_s),),
                                            name="replay-checkpoint", daemon=True)
            self._thread.start()

    def _periodic(self, interval: float) -> None:
        last = time.monotonic()
        while not self._stop.wait(1.0):
            if time.monotonic() - last >= interval:
                self.checkpoint()
                last = time.monotonic()

    def checkpoint(self) -> Optional[str]:
        if not self.spec.checkpoint_dir:
            return None
        with self._lock:
            try:
                return checkpoint(self._client)
            except Exception as e:   # a failed periodic checkpoint must not kill the run; the next one retries
                logger.warning("replay checkpoint failed: %s", e)
                return None

    def stop_checkpointing(self) -> Optional[str]:
        """End the periodic checkpoints and write the final one; the server keeps serving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.checkpoint()

    def stop(self, final_checkpoint: bool = True) -> Optional[str]:
        """Stop the server, after a last checkpoint unless `final_checkpoint=False`
        (e.g. `stop_checkpointing()` already wrote it)."""
        if final_checkpoint:
            path = self.stop_checkpointing()
        else:
            path = None
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
        self.server.stop()
        return path
