"""A role's CPU priority: the roles beside the learner yield the cores to it when they are short.

Why: on a 2-core machine an online run has five processes (supervisor, learner with the replay inside,
two actors, evaluator). The learner is the one the run waits for: every environment step is matched by an
update (the rate limiter), so a core taken from it by an evaluation is time the whole run loses, while an
evaluation that runs a little later costs nothing. Each role lowers its own priority at start, so the same
code holds under the local supervisor and under Ray.
"""
from __future__ import annotations

import os


def lower_priority(niceness: int, who: str = "") -> int:
    """Raise this process's Unix niceness to `niceness` (0-19); returns the niceness it then has. `who`: say so
    on stdout (the role's log), naming the role.

    Niceness only ever rises (an unprivileged process cannot lower it again), so a restarted role that
    inherits nothing still ends at the configured value.
    """
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
    if who:
        print(f"{who}: CPU niceness {current}", flush=True)
    return current
