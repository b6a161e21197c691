"""User-facing errors.

Every problem caused by the user's input (a corrupt file, a bad config, a missing resolution) is raised as a
:class:`PathsegError`. The CLI prints it as one ``error:`` line and exits with code 2; ``--debug`` shows the
traceback. Internal bugs are left as ordinary exceptions.
"""

from __future__ import annotations

from os import PathLike


class PathsegError(Exception):
    """An error in the user's input, reported as one line.

    Args:
        message: What is wrong, phrased for the user.
        path: The file or directory concerned, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(PathsegError):
    """A configuration problem: unknown key, wrong type, YAML syntax error."""


class DataError(PathsegError):
    """A problem with a data set, image, mask or slide."""
