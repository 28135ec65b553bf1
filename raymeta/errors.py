"""Error types: every bad input ends in one of these, with a message naming the value and what is allowed."""


class RaymetaError(Exception):
    """Base class for errors raymeta reports to a user (the CLI prints the message, not a traceback)."""


class ConfigError(RaymetaError, ValueError):
    """A configuration value or a command-line argument is out of range or malformed."""


class DataError(RaymetaError):
    """A dataset folder or file is missing or malformed."""


class CheckpointError(RaymetaError):
    """A checkpoint file is missing, corrupt, or was made by an incompatible configuration."""
