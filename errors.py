"""Errors meant for the person running the platform, not for a debugger.

Launch scripts catch `UserFacingError` and print its message alone (one
paragraph that says what is wrong and what to do) instead of a traceback.
"""


class UserFacingError(Exception):
    """Base class: bad input or configuration that the user can fix."""


class DatasetError(UserFacingError):
    """A dataset cannot be found, read, or does not fit its environment."""


class ConfigError(UserFacingError):
    """A configuration field has an invalid value."""


class TrainingDiverged(UserFacingError):
    """A loss became NaN or inf; the last good checkpoint is kept."""


# A run stopped by Ctrl-C or SIGTERM (checkpointed, resumable with --resume) exits with this status:
# distinct from a finished run (0), a user error (2) and a crash (1). 130 is the shell's 128 + SIGINT.
EXIT_INTERRUPTED = 130
