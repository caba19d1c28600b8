"""The project's one-line user-facing error for data that is missing, corrupt or unsafe."""


class DataError(Exception):
    """A data set could not be found, fetched, verified or read; the message says which file and the fix."""
