"""Errors a user can act on. ``python -m zoo`` prints their message as one paragraph and
exits non-zero, without a traceback (set ``HYDRA_FULL_ERROR=1`` to see one)."""


class ZooError(Exception):
    """Base class of the zoo's errors; the message says what is wrong and what would be valid."""

    exit_code = 1


class ConfigError(ZooError):
    """A config value is invalid: the message names the key and the valid values."""

    exit_code = 2


class DataError(ZooError):
    """A data set could not be found, read or validated.

    The message names the file, key or option at fault and says what would be valid, or,
    for a damaged file, what to do (download it again, reinstall the package).
    """


class CheckpointError(ZooError):
    """A checkpoint cannot be written, read, or does not belong to this run."""


class TrainingDiverged(ZooError):
    """The loss became NaN or infinite."""


class OutputError(ZooError):
    """A result file (summary, metrics, figure, config) cannot be written; the old one is kept."""


class Interrupted(ZooError):
    """SIGINT or SIGTERM stopped training; the last epoch's checkpoint is on disk."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
