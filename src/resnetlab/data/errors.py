"""The project's one-line user-facing error for data that is missing, corrupt or unsafe."""

from resnetlab.errors import ResnetlabError


class DataError(ResnetlabError):
    """A data set could not be found, fetched, verified or read; the message says which file and the fix."""
