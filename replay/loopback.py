"""Keep a local run's replay port on loopback, without root: an LD_PRELOAD shim for one port.

Reverb's server always binds `[::]:PORT` (every interface; no bind-address option,
shared/NOTES.md), so in a local run anyone on the network can reach the port although
the launcher hands out only `localhost`. `replay/loopback_bind.c`, preloaded into the
process that hosts the server, turns the wildcard bind of that one port into a bind
to 127.0.0.1. It must be in the environment when that process starts (the dynamic
loader reads LD_PRELOAD only then), so the supervisor passes `loopback_env(...)` to the
learner (or replay-server) process it starts.

It needs Linux and a C compiler (`cc`) once per run directory; without them the port
stays open to every interface, as before, and the caller says so. The HMAC tags
(replay/auth.py) protect the run either way; this only stops other machines reading.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

SOURCE = Path(__file__).with_name("loopback_bind.c")
PORT_ENV = "REVERB_LOOPBACK_PORT"


def build_shim(build_dir) -> tuple[Optional[Path], str]:
    """(path of the compiled shim, "") or (None, why not). Reuses a build of the same source."""
    if not sys.platform.startswith("linux"):
        return None, f"LD_PRELOAD shims need Linux (this is {sys.platform})"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler (cc) to build replay/loopback_bind.c"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = Path(build_dir) / f"loopback_bind-{digest}.so"
    if out.exists():
        return out, ""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(SOURCE), "-ldl"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return None, f"building replay/loopback_bind.c failed: {proc.stderr.strip()[-300:]}"
    os.replace(tmp, out)
    return out, ""


def loopback_env(port: int, build_dir) -> tuple[dict, str]:
    """Variables to add to the environment of the process that will host the server on `port`:
    ({"LD_PRELOAD": ..., PORT_ENV: ...}, "") with the shim built, or ({}, why not)."""
    shim, why = build_shim(build_dir)
    if shim is None:
        return {}, why
    preload = " ".join(filter(None, [str(shim), os.environ.get("LD_PRELOAD", "")]))
    return {"LD_PRELOAD": preload, PORT_ENV: str(int(port))}, ""


def _proc_net_listeners(path: str, family: int, port: int) -> list[str]:
    """Local addresses of TCP sockets in LISTEN state on `port`, from /proc/net/tcp or tcp6."""
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        addr_hex, port_hex = local.split(":")
        if state != "0A" or int(port_hex, 16) != port:      # 0A = LISTEN
            continue
        raw = bytes.fromhex(addr_hex)
        # the kernel prints each 32-bit word of the address as a host-order integer
        words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
        if sys.byteorder == "little":
            words = [w[::-1] for w in words]
        found.append(socket.inet_ntop(family, b"".join(words)))
    return found


def listening_addresses(port: int) -> list[str]:
    """Addresses this machine listens on at TCP `port` (Linux; [] elsewhere or if none)."""
    return (_proc_net_listeners("/proc/net/tcp", socket.AF_INET, port)
            + _proc_net_listeners("/proc/net/tcp6", socket.AF_INET6, port))


def is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or address.startswith("127.")
