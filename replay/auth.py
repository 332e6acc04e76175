"""The run's secret and the HMAC tags that tell the run's own writes from a stranger's.

Reverb has no authentication and listens on every interface (shared/NOTES.md):
whoever reaches the port can read the tables and insert into them. Reading stays
possible (README, "Who can reach the replay port"); these tags make a stranger's
*inserts* harmless:

* the learner tags every weights publication (HMAC-SHA-256 over the version and the
  serialized arrays); actors and the evaluator take only publications whose tag checks
  out, and compare versions only among those (replay/weights.py);
* actors tag every transition (HMAC-SHA-256 over its float32 fields); the learner drops
  and counts every sampled row whose tag does not check out (replay/sampler.py).

The key is one secret per run, made by the supervisor (launch/finetune.py) in the run
directory with owner-only permissions and handed to each role by path, beside the
config file: a remote role gets it through the same channel as its config. Two keys
are derived from it, one per kind of message, so a transition's tag can never pass
for a publication's. Nothing here imports Reverb or TensorFlow.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from errors import ConfigError

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "run_key"          # in the run directory, beside config.json
KEY_BYTES = 32
TAG_BYTES = 32                     # a full SHA-256 digest
TAG_FIELD = "tag"                  # the transition item's extra column


# --------------------------------------------------------------------------- the key
def key_path_beside(config_json) -> Path:
    """Where a role looks for the key by default: beside its --config_json, as dataset_meta.json."""
    return Path(os.path.dirname(str(config_json)) or ".") / KEY_FILE_NAME


def create_key_file(path) -> bytes:
    """The run's key at `path`, made now (owner-only, 0600) unless it is already there.

    A resumed run keeps its key: the transitions restored from the replay checkpoint were
    tagged with it. O_EXCL means a file put there meanwhile is never silently overwritten.
    """
    path = Path(path)
    if path.exists():
        return load_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)       # the umask can only remove bits; this states the intent
        os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii"))
    finally:
        os.close(fd)
    return load_key(path)


def load_key(path) -> bytes:
    """Read a key file; refuse one that others can read (as ssh does) or that is malformed."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"The run's key file {path} does not exist. The finetuning supervisor writes it in the run "
            "directory beside config.json; copy it with the config to a role on another machine "
            "(keep it owner-only: chmod 600), or pass --key_file.") from None
    if st.st_mode & 0o077:
        raise ConfigError(
            f"The run's key file {path} can be read by other users (mode {st.st_mode & 0o777:o}); anyone who "
            f"reads it can forge the run's weights and transitions. Run: chmod 600 {path}")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"The run's key file {path} does not hold {KEY_BYTES} hex-encoded bytes; "
                          "it should be the file the finetuning supervisor wrote.")
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    if len(key) < 16:
        raise ValueError("the run key must be at least 16 bytes")
    return hmac.digest(key, b"aligniql replay " + purpose, "sha256")


# --------------------------------------------------------------------------- weights
_NUMERIC_KINDS = "biuf"    # bool, int, uint, float: arrays whose bytes are their value


def _weights_message(version: np.ndarray, manifest: np.ndarray, arrays: Sequence[np.ndarray]) -> Optional[bytes]:
    """Unambiguous bytes of a publication (every length and dtype framed), or None if a column
    is not a plain numeric array (a stranger's strings or objects are never hashed or parsed)."""
    parts = []
    for a in (version, manifest, *arrays):
        a = np.asarray(a)
        if a.dtype.kind not in _NUMERIC_KINDS:
            return None
        dt = a.dtype.str.encode("ascii")
        data = np.ascontiguousarray(a).tobytes()
        parts += [struct.pack("<QQ", len(dt), a.ndim), dt, struct.pack(f"<{a.ndim}Q", *a.shape),
                  struct.pack("<Q", len(data)), data]
    return b"".join(parts)


class WeightsSigner:
    """Tags and checks weights publications: [version, manifest, tag, *arrays]."""

    def __init__(self, key: bytes):
        self._key = _derive(key, b"weights")

    def tag(self, version: np.ndarray, manifest: np.ndarray, arrays: Sequence[np.ndarray]) -> np.ndarray:
        msg = _weights_message(version, manifest, arrays)
        if msg is None:
            raise ValueError("published weights must be numeric arrays")
        return np.frombuffer(hmac.digest(self._key, msg, "sha256"), dtype=np.uint8).copy()

    def check(self, version, manifest, tag, arrays) -> bool:
        tag = np.asarray(tag)
        msg = _weights_message(version, manifest, arrays)
        if msg is None or tag.dtype != np.uint8 or tag.shape != (TAG_BYTES,):
            return False
        return hmac.compare_digest(hmac.digest(self._key, msg, "sha256"), tag.tobytes())


# --------------------------------------------------------------------------- transitions
class TransitionSigner:
    """Tags and checks transitions: HMAC over the float32 bytes of `fields`, in that order.

    The table's signature fixes every field's shape and dtype, so the concatenated bytes
    of one row are unambiguous. Costs about 2-4 µs a row here (one HMAC per row).
    """

    def __init__(self, key: bytes, fields: Sequence[str]):
        self._key = _derive(key, b"transition")
        self.fields = tuple(fields)

    def _rows(self, batch: Mapping[str, np.ndarray]) -> tuple[memoryview, int, int]:
        n = len(batch[self.fields[0]])
        flat = np.concatenate([np.asarray(batch[k], dtype=np.float32).reshape(n, -1) for k in self.fields], axis=1)
        return memoryview(flat.tobytes()), n, flat.shape[1] * 4

    def tags(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """[B, TAG_BYTES] uint8 tags of a batch (leading batch dimension on every field)."""
        mv, n, width = self._rows(batch)
        key = self._key
        out = b"".join([hmac.digest(key, mv[i * width:(i + 1) * width], "sha256") for i in range(n)])
        return np.frombuffer(out, dtype=np.uint8).reshape(n, TAG_BYTES)

    def tag_row(self, step: Mapping[str, np.ndarray]) -> np.ndarray:
        """The tag of one transition (no batch dimension): the same bytes as `tags`, without its
        concatenation (12 -> 3 µs here, for a writer fed one transition at a time)."""
        msg = b"".join([np.asarray(step[k], dtype=np.float32).tobytes() for k in self.fields])
        return np.frombuffer(hmac.digest(self._key, msg, "sha256"), dtype=np.uint8)

    def check(self, batch: Mapping[str, np.ndarray], tags: np.ndarray) -> np.ndarray:
        """Boolean [B]: which rows carry the tag of their own contents."""
        tags = np.asarray(tags)
        mv, n, width = self._rows(batch)
        if tags.dtype != np.uint8 or tags.shape != (n, TAG_BYTES):
            return np.zeros(n, dtype=bool)
        key, tb = self._key, tags.tobytes()
        return np.fromiter((hmac.compare_digest(hmac.digest(key, mv[i * width:(i + 1) * width], "sha256"),
                                                tb[i * TAG_BYTES:(i + 1) * TAG_BYTES]) for i in range(n)),
                           dtype=bool, count=n)


# --------------------------------------------------------------------------- rejections
class Rejections:
    """A running count of rejected items, logged at most every `log_every_s` (an attacker can
    insert thousands a second; one line per item would flood the role's log)."""

    def __init__(self, what: str, log: Optional[Callable[[str], None]] = None, log_every_s: float = 30.0):
        self.what = what
        self.count = 0
        self._log = log or logger.warning
        self._every = float(log_every_s)
        self._last_log = -float("inf")
        self._logged_count = 0

    def add(self, n: int, why: str) -> None:
        if n <= 0:
            return
        self.count += int(n)
        now = time.monotonic()
        if now - self._last_log >= self._every:
            self._log(f"rejected {self.count - self._logged_count} {self.what} ({why}; {self.count} in all): "
                      "something without this run's key is writing to the replay port")
            self._last_log, self._logged_count = now, self.count
