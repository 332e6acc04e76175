"""Repeated SIGTERMs never hang a role in its own stop handler (actor/actor_loop.py SignalStop, StopEvent).

An evaluator orphaned by a SIGKILLed supervisor hung for good after several SIGTERMs: the handler
called Event.set() while the interrupted main thread was inside the same Event's set(), holding its
non-reentrant lock. Here a real process waits on its stop event the way the roles do (short timed
waits, in and out of the event's lock all the time) while a burst of SIGTERMs arrives; it must exit
promptly, every time.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROLE = textwrap.dedent("""
    import sys, threading, time
    from actor.actor_loop import SignalStop, StopEvent
    stop = StopEvent()
    with SignalStop(stop):
        print("ready", flush=True)
        while not stop.wait(0.0001):
            stop.is_set()
        print("stopped", flush=True)
        time.sleep(0.2)      # still handling signals while the rest of the burst arrives, as a role's shutdown does
""")


def test_a_burst_of_sigterms_stops_a_waiting_role_promptly():
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", ROLE], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            for _ in range(200):                   # as fast as they go: the parent-death signal, then more
                proc.send_signal(signal.SIGTERM)
                if proc.poll() is not None:
                    break
            t0 = time.monotonic()
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"attempt {attempt}: the role hung in its stop handler after a burst of SIGTERMs")
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0 and "stopped" in out, (attempt, proc.returncode, out)
        assert time.monotonic() - t0 < 5
