"""Errors that end a command with one clear line instead of a traceback."""


class IcegrtError(Exception):
    """Base of the errors shown to the user as `error: <message>` with a non-zero exit."""


class ConfigError(IcegrtError):
    """A configuration value is wrong; the message names the key."""


class DataError(IcegrtError):
    """Input data is missing or malformed; the message names the file (and line)."""


class Diverged(IcegrtError):
    """Training produced nan / inf; the stage stops without saving or marking anything done."""


class RunInterrupted(IcegrtError):
    """The user stopped a run; the work so far was checkpointed."""

    exit_code = 130


class FetchError(IcegrtError):
    """Benchmark data could not be downloaded; the message says how to bring it by hand."""
