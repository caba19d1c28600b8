"""The one base of every error meant for the user: `resnetlab` (the CLI) prints such an error as one line and
exits 2; any other exception is a bug and keeps its traceback.

Each module raises its own subclass (`resnetlab.config.ConfigError`, `resnetlab.data.errors.DataError`,
`resnetlab.models.registry.UnknownModelError`, `resnetlab.training.checkpoint.CheckpointError`, ...). Those
that replace a built-in error the API raised before also derive from it (`ConfigError` is a `ValueError`), so
``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


class ResnetlabError(Exception):
    """A problem the user can fix (a bad name, value or file); the message names it and the fix."""

    exit_code = 2  # what the CLI exits with


class UsageError(ResnetlabError, ValueError):
    """A command-line argument or API argument that cannot work as given."""
