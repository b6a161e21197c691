"""Logging set-up of the command line: pathseg's modules log through :mod:`logging`, the CLI shows it.

Messages of ``pathseg.*`` loggers go to standard output as plain lines (INFO by default, DEBUG with ``-v``,
warnings only with ``--quiet``); warnings and errors of other libraries go to standard error.
"""

from __future__ import annotations

import logging
import sys

_MARK = "_pathseg_cli_handler"


class _Stdout(logging.Handler):
    """Writes to the *current* ``sys.stdout`` (so that captured or redirected output works)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            prefix = "warning: " if record.levelno == logging.WARNING else ""
            stream.write(prefix + self.format(record) + "\n")
            stream.flush()
        except Exception:  # never let logging break a run
            self.handleError(record)


def configure_logging(verbosity: int = 0) -> None:
    """Configure ``pathseg`` logging for the CLI.

    Args:
        verbosity: ``-1`` quiet (warnings), ``0`` normal (info), ``1`` verbose (debug).
    """
    logger = logging.getLogger("pathseg")
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
    handler = _Stdout()
    setattr(handler, _MARK, True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))


def pop_verbosity(args: list[str]) -> tuple[list[str], int]:
    """Remove ``-v/--verbose`` and ``-q/--quiet`` from ``args``; return the rest and the verbosity."""
    verbosity = 0
    rest = []
    for a in args:
        if a in ("-v", "--verbose"):
            verbosity = 1
        elif a in ("-q", "--quiet"):
            verbosity = -1
        else:
            rest.append(a)
    return rest, verbosity
