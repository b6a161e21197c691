"""The ``pathseg`` entry point: finds the command, parses its config, runs it, turns errors into one line."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from pathseg import __version__
from pathseg.cli.command import Command, parse_command
from pathseg.config import config_to_yaml
from pathseg.errors import PathsegError

EXIT_USER_ERROR = 2


def all_commands() -> list[Command]:
    """Every command declared by a ``COMMANDS`` list in a module of :mod:`pathseg.cli`."""
    import pathseg.cli as pkg

    commands: list[Command] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in {"main", "command"}:
            continue
        module = importlib.import_module(f"pathseg.cli.{info.name}")
        commands.extend(getattr(module, "COMMANDS", []))
    return commands


def _usage(commands: list[Command]) -> str:
    width = max((len(c.name) for c in commands), default=8) + 2
    lines = [
        f"pathseg {__version__}: label-efficient segmentation for computational pathology",
        "",
        "usage: pathseg [--debug] COMMAND [ARGS] [--config FILE.yaml] [key.sub=value ...]",
        "",
        "commands:",
    ]
    lines += [f"  {c.name.ljust(width)}{c.help}" for c in commands]
    lines += ["", "Run 'pathseg COMMAND --help' for a command's options and an example."]
    return "\n".join(lines)


def _find(commands: list[Command], argv: list[str]) -> tuple[Command | None, int]:
    best: tuple[Command | None, int] = (None, 0)
    for cmd in commands:
        words = cmd.name.split()
        if argv[: len(words)] == words and len(words) > best[1]:
            best = (cmd, len(words))
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, with one ``error:`` line on stderr)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    commands = all_commands()
    if not args or args[0] in {"-h", "--help"} or args == ["--debug"]:
        print(_usage(commands))
        return 0
    if args[0] == "--version":
        print(f"pathseg {__version__}")
        return 0
    positional = [a for a in args if a != "--debug"]
    cmd, n = _find(commands, positional)
    if cmd is None:
        group = [c.name for c in commands if c.name.split()[0] == positional[0]]
        hint = f"; '{positional[0]}' has: {', '.join(group)}" if group else "; see 'pathseg --help'"
        print(f"error: unknown command '{' '.join(positional[:2])}'{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    rest = [a for a in positional[n:]] + (["--debug"] if debug else [])
    try:
        cfg, show = parse_command(cmd, rest, prog=f"pathseg {cmd.name}")
        if show:
            print(config_to_yaml(cfg), end="")
            return 0
        code = cmd.function()(cfg)
        return int(code or 0)
    except PathsegError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
