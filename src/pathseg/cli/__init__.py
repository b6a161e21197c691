"""Command-line interface. Each ``pathseg/cli/<area>.py`` module defines ``COMMANDS``; see :mod:`.command`."""

from pathseg.cli.command import Command

__all__ = ["Command"]
