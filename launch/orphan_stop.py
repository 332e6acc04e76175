"""How a role stops when its supervisor was killed outright (SIGKILL, OOM killer).

Every child of launch.finetune asks the kernel for SIGTERM on its parent's death (PR_SET_PDEATHSIG),
so all of them get it at the same moment. The supervisor's own stop is ordered (actors first, then
the learner and the replay's checkpoint) so that every transition an actor wrote is in the
checkpoint. Without the supervisor, the learner and the replay server order themselves: they keep
going (the learner keeps sampling, which the rate limiter needs for the actors' last inserts) until
the run's actors on this machine have exited (they flush on SIGTERM) and the replay's insert count
has stood still for `quiet_s` (remote actors), and only then stop and checkpoint. Stillness alone
is not enough on a busy machine: an actor may not be scheduled for seconds after its SIGTERM.
"""
from __future__ import annotations

import os
import threading
import time


class StopOrder:
    """A signal handler's decision: stop now, or (parent gone) once the actors have stopped writing."""

    def __init__(self, stop: threading.Event, replay_address: str | None, quiet_s: float = 2.0,
                 limit_s: float = 60.0, say=print, run_dir: str | None = None):
        self.stop, self.address, self.run_dir = stop, replay_address, run_dir
        self.quiet_s, self.limit_s, self.say = quiet_s, limit_s, say
        self.parent_pid = os.getppid()      # taken at start, while the process that started us is alive
        self.waiting = None

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent_pid

    def request(self) -> None:
        """Call from the SIGTERM / SIGINT handler."""
        if self.stop.is_set() or self.waiting is not None:
            return
        if not self.address:
            self.stop.set()
            return
        self.waiting = threading.Thread(target=self._decide, name="orphan-stop", daemon=True)
        self.waiting.start()

    def _decide(self, settle_s: float = 1.0) -> None:
        """Stop now, unless the parent is gone. The parent-death signal can come before we see a new
        parent: when the supervisor is killed, the thread that started us may die first while its
        other threads still run, and we are handed to one of them (the same pid) and signalled; the
        new parent (init or a subreaper) shows only once the whole process is gone. So look again
        for up to `settle_s` before taking a SIGTERM for an orderly one."""
        deadline = time.monotonic() + settle_s
        while not self.parent_gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.parent_gone():
            self._stop_when_quiet()
        else:
            self.stop.set()

    def _stop_when_quiet(self) -> None:
        from replay.sampler import table_stats

        self.say(f"the supervisor is gone: going on until the actors' last transitions are in "
                 f"(no insert for {self.quiet_s:.0f} s, at most {self.limit_s:.0f} s)")
        deadline, last, since = time.monotonic() + self.limit_s, None, time.monotonic()
        while time.monotonic() < deadline:
            try:
                inserts = table_stats(self.address, timeout_s=2)["inserts"]
            except Exception:        # the server is gone too: nothing more can arrive
                break
            if inserts != last:
                last, since = inserts, time.monotonic()
            elif time.monotonic() - since >= self.quiet_s and not self._local_actors():
                break
            time.sleep(0.25)
        self.say(f"stopping with {last} transitions inserted")
        self.stop.set()

    def _local_actors(self) -> bool:
        """Whether an actor process of this run still runs on this machine."""
        if not self.run_dir:
            return False
        import psutil

        mark = f"--run_dir={self.run_dir}"
        for p in psutil.process_iter(["cmdline"]):
            try:
                cmd = p.info["cmdline"] or []
            except psutil.Error:
                continue
            if mark in cmd and any(c == "launch.actor" for c in cmd):
                return True
        return False
