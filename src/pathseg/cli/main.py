"""The ``pathseg`` entry point: finds the command, parses its config, runs it, turns errors into one line."""

from __future__ import annotations

import importlib
import pkgutil
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from pathseg import __version__
from pathseg.cli.command import Command, check_checkpoints, check_outputs, parse_command
from pathseg.config import config_to_yaml
from pathseg.errors import PathsegError
from pathseg.logs import configure_logging, pop_verbosity

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


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


class Terminated(Exception):
    """Raised in the main process by SIGTERM/SIGHUP so that cleanup (staging folders, workers) runs."""


def _on_signal(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def _install_handlers() -> dict[int, Any]:
    """Turn SIGTERM/SIGHUP into :class:`Terminated` (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[int(sig)] = signal.signal(sig, _on_signal)
    return previous


def _run(cmd: Command, rest: list[str]) -> int:
    cfg, show = parse_command(cmd, rest, prog=f"pathseg {cmd.name}")
    if show:
        print(config_to_yaml(cfg), end="")
        return EXIT_OK
    check_outputs(cmd, cfg)
    check_checkpoints(cfg)
    code = int(cmd.function()(cfg) or 0)
    return EXIT_USER_ERROR if code == 1 else code  # legacy "some items failed" is refused input, not a bug


def _error(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code.

    Exit codes: 0 success; 2 bad input or refused (one ``error:`` line naming the file and the problem); 130
    interrupted (Ctrl-C, ``error: interrupted``); 143 terminated by SIGTERM/SIGHUP; 1 only for a bug in pathseg
    (``error: internal error ... please report``). ``--debug`` adds the traceback.
    """
    args, verbosity = pop_verbosity(list(sys.argv[1:] if argv is None else argv))
    configure_logging(verbosity)  # -v / --quiet, for every command
    debug = "--debug" in args
    commands = all_commands()
    if not args or args[0] in {"-h", "--help"} or args == ["--debug"]:
        print(_usage(commands))
        return EXIT_OK
    if args[0] == "--version":
        print(f"pathseg {__version__}")
        return EXIT_OK
    positional = [a for a in args if a != "--debug"]
    cmd, n = _find(commands, positional)
    if cmd is None:
        group = [c.name for c in commands if c.name.split()[0] == positional[0]]
        hint = f"; '{positional[0]}' has: {', '.join(group)}" if group else "; see 'pathseg --help'"
        print(f"error: unknown command '{' '.join(positional[:2])}'{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    rest = [a for a in positional[n:]] + (["--debug"] if debug else [])
    previous = _install_handlers()
    try:
        return _run(cmd, rest)
    except PathsegError as exc:
        _error(str(exc), debug)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _error("interrupted", debug)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown
        if isinstance(exc.__context__, KeyboardInterrupt):
            _error("interrupted", debug)
            return EXIT_INTERRUPTED
        raise
    except Terminated as exc:
        _error(f"terminated ({exc})", debug)
        return EXIT_TERMINATED
    except OSError as exc:  # the environment (disk full, permissions, missing file), not the input's content
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}", debug)
        return EXIT_USER_ERROR
    except Exception as exc:  # a bug: say so, and how to report it
        _error(f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
               f"this is a bug in pathseg {__version__}, please report it with the command line "
               "(run again with --debug for the traceback)", debug)
        return EXIT_BUG
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # left ignored by Lightning's shutdown
            signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    raise SystemExit(main())
