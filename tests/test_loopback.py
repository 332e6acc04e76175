"""A local run's replay port stays on loopback (replay/loopback.py): a real Reverb server in a child process.

Reverb binds every interface; with the shim preloaded the same server must listen on 127.0.0.1 only, answer
on localhost, and refuse a connection to this machine's network address.
"""

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("reverb")

from replay.loopback import is_loopback, listening_addresses, loopback_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = textwrap.dedent("""
    import sys, time
    from replay.server import ReplaySpec, start_server
    server, address = start_server(ReplaySpec(3, 2, max_size=10, min_size_to_sample=1), port=int(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.read()          # until the test closes our stdin
    server.stop()
""")


def _network_address():
    """This machine's address on its default route, or None (no network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.255", 1))        # no packet is sent: this only picks the route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if is_loopback(address) else address


def _serve(port, extra_env):
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], cwd=ROOT, text=True,
                            env={**os.environ, **extra_env, "PYTHONPATH": ROOT},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == "ready", "the replay server did not start"
    return proc


def _connects(host, port) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not (shutil.which("cc") or shutil.which("gcc")),
                    reason="the loopback shim needs Linux and a C compiler")
def test_local_replay_port_listens_on_loopback_only(tmp_path):
    import portpicker

    outside = _network_address()
    for shim in (False, True):
        port = portpicker.pick_unused_port()
        extra, why = loopback_env(port, tmp_path) if shim else ({}, "")
        assert not why, why
        proc = _serve(port, extra)
        try:
            where = listening_addresses(port)
            assert where, "no listening socket found for the server's port"
            assert _connects("127.0.0.1", port)
            if shim:
                assert all(is_loopback(a) for a in where), where
                if outside:
                    assert not _connects(outside, port), f"reachable at {outside}:{port}"
            else:                                  # what Reverb does on its own: every interface
                assert not all(is_loopback(a) for a in where), where
                if outside:
                    assert _connects(outside, port)
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
