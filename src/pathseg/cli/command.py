"""Declarative commands: one typed config dataclass + one function, shared 1:1 by the CLI and Python API.

A command module (``pathseg/cli/<area>.py``) lists ``COMMANDS = [Command(...)]``. The config class and the
function are named by ``"module:attr"`` strings, so ``pathseg --help`` imports nothing heavy.

Flags are generated from the config's top-level fields: ``label_fraction`` becomes ``--label-fraction``,
booleans get ``--x/--no-x``, lists take several values or one comma-separated value. Fields with
``metadata={"positional": True}`` are positional arguments. Nested fields are set with dotted overrides
(``trainer.max_epochs=5``) and whole configs with ``--config FILE.yaml``; the order of precedence is defaults,
file, flags, dotted overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pathseg.config.core import load_config
from pathseg.errors import ConfigError

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Command:
    """One CLI command.

    Args:
        name: Words after ``pathseg`` (e.g. ``"data check"``).
        config: ``"module:Class"`` of the config dataclass.
        run: ``"module:function"`` taking the config and returning an exit code or ``None``.
        help: One line for ``pathseg --help``.
        example: An example invocation shown in the command's ``--help``.
        nested_help: Dotted keys listed first in ``--help`` as the most used nested keys (default: every nested
            key is listed, in field order).
        outputs: Config fields holding paths the command creates (a directory, or a file when the value ends
            with a file suffix such as ``.safetensors``); checked before the command runs.
        writes_into: Config fields naming existing directories the command writes into (e.g. ``evaluate``'s
            ``--run``); they must be writable.
    """

    name: str
    config: str
    run: str
    help: str
    example: str = ""
    nested_help: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("out",)
    writes_into: tuple[str, ...] = ()

    def config_class(self) -> type:
        """Import and return the config dataclass."""
        return typing.cast(type, _resolve(self.config))

    def function(self) -> Callable[[Any], int | None]:
        """Import and return the command's function."""
        return typing.cast(Callable[[Any], "int | None"], _resolve(self.run))


def _scalar(tp: Any) -> tuple[Any, bool]:
    """Unwrap Optional; return (inner type, is_list)."""
    origin = get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _scalar(args[0])
        return tp, False
    if origin in (list, tuple, Sequence):
        return (get_args(tp) or (str,))[0], True
    return tp, False


def _arg_docs(cls: type) -> dict[str, str]:
    """``{name: first sentence}`` from the ``Args:`` section of a Google-style class docstring."""
    docs: dict[str, str] = {}
    text = (cls.__doc__ or "").split("Args:", 1)
    if len(text) < 2:
        return docs
    current = ""
    for line in text[1].splitlines():
        match = re.match(r"^\s{4,8}([A-Za-z_][A-Za-z0-9_]*)(?: \(.*?\))?: (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.strip() and not line.strip().endswith(":"):
            docs[current] += " " + line.strip()
        elif not line.strip() and current:
            current = ""
    return {k: re.split(r"(?<!e\.g)(?<!i\.e)\. ", v.replace("``", ""))[0].rstrip(".") for k, v in docs.items()}


def nested_keys(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every nested (dotted) key of a config class: ``(key, default, help)`` in field order."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner, _ = _scalar(hints[f.name])
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            docs = _arg_docs(inner)
            for sub in dataclasses.fields(inner):
                sub_inner, _ = _scalar(typing.get_type_hints(inner)[sub.name])
                key = f"{prefix}{f.name}.{sub.name}"
                if dataclasses.is_dataclass(sub_inner) and isinstance(sub_inner, type):
                    out += nested_keys(sub_inner, f"{key}.")
                    continue
                default = sub.default if sub.default is not dataclasses.MISSING else (
                    sub.default_factory() if sub.default_factory is not dataclasses.MISSING else None)
                out.append((key, default, sub.metadata.get("help", "") or docs.get(sub.name, "")))
    return out


def nested_keys_help(cls: type, first: Sequence[str] = ()) -> str:
    """The ``nested keys`` section of a command's ``--help``: the ``first`` keys, then all the others."""
    keys = nested_keys(cls)
    if not keys:
        return "nested keys: none"
    by_key = {k: (d, h) for k, d, h in keys}
    order = [k for k in first if k in by_key] + [k for k, _, _ in keys if k not in first]
    example = order[0]
    lines = [f"nested keys (set them as dotted overrides, e.g. {example}={by_key[example][0]}):"]
    if first:
        lines.append("  most used: " + ", ".join(k for k in first if k in by_key))
    width = min(max(len(f"{k}={by_key[k][0]}") for k in order) + 2, 44)
    for key in order:
        default, text = by_key[key]
        lines.append(f"  {f'{key}={default}'.ljust(width)}{text}".rstrip())
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one ``error:`` line (exit 2) through :class:`ConfigError`."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser(cmd: Command, prog: str) -> argparse.ArgumentParser:
    """Build the argparse parser of one command from its config dataclass."""
    cls = cmd.config_class()
    epilog = f"example:\n  {cmd.example}" if cmd.example else None
    extra = getattr(cls, "cli_help", None)  # a config's own help section, e.g. the registered methods
    if callable(extra):
        epilog = f"{extra()}\n\n{epilog or ''}".rstrip()
    doc = (cls.__doc__ or "").strip().split("\n\n")[0] if cls.__doc__ else cmd.help
    parser = _Parser(
        prog=prog,
        description=f"{cmd.help}\n\n{doc}" if doc and doc != cmd.help else cmd.help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner, is_list = _scalar(tp)
        if dataclasses.is_dataclass(inner):
            continue  # nested: dotted overrides only
        help_text = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING and f.default not in (None, "", []):
            help_text += f" (default: {f.default})"
        if get_origin(inner) is Literal:
            help_text += f" [choices: {', '.join(map(str, get_args(inner)))}]"
        if f.metadata.get("positional"):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            nargs: Any = ("*" if has_default else "+") if is_list else ("?" if has_default else None)
            parser.add_argument(f.name, nargs=nargs, metavar=f.name.upper(), help=help_text)
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag, *f.metadata.get("aliases", [])]
        if inner is bool and not is_list:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif is_list:
            parser.add_argument(*names, dest=f.name, nargs="+", metavar="V", help=help_text)
        else:
            parser.add_argument(*names, dest=f.name, metavar=f.metadata.get("metavar", "V"), help=help_text)
    parser.add_argument("--config", dest="_config", metavar="FILE.yaml", help="read the config from a YAML file")
    parser.add_argument(
        "--print-config", dest="_print", action="store_true", help="print the resolved config and exit"
    )
    parser.add_argument("--debug", dest="_debug", action="store_true", help="show tracebacks")
    parser.epilog = (parser.epilog or "") + "\n\n" + nested_keys_help(cls, cmd.nested_help)
    return parser


def _split_lists(values: dict[str, Any], cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        _, is_list = _scalar(hints[key])
        if is_list and isinstance(value, list):
            value = [part for v in value for part in str(v).split(",") if part != ""]
        out[key] = value
    return out


def parse_command(cmd: Command, argv: Sequence[str], prog: str) -> tuple[Any, bool]:
    """Parse ``argv`` for ``cmd`` into its typed config.

    Returns:
        The config and whether ``--print-config`` was asked.
    """
    overrides = [a for a in argv if _OVERRIDE.match(a)]
    rest = [a for a in argv if not _OVERRIDE.match(a)]
    parser = build_parser(cmd, prog)
    ns = vars(parser.parse_args(rest))
    path = ns.pop("_config", None)
    show = bool(ns.pop("_print", False))
    ns.pop("_debug", None)
    cls = cmd.config_class()
    cfg: Any = load_config(cls, path, overrides=overrides, values=_split_lists(ns, cls))
    check_seed_fields(cfg)
    return cfg, show


def check_seed_fields(cfg: Any) -> None:
    """Refuse invalid top-level ``seed`` / ``seeds`` values of any command (negative, repeated)."""
    from pathseg.config.checks import check_seed, check_seeds

    seeds, seed = getattr(cfg, "seeds", None), getattr(cfg, "seed", None)
    if isinstance(seeds, list | tuple):
        check_seeds(seeds)
    if isinstance(seed, int):
        check_seed(seed)


#: Config fields naming a checkpoint to resume from or export; a file there is opened weights-only first.
CHECKPOINT_FIELDS = ("resume_from", "checkpoint")


def check_checkpoints(cfg: Any) -> None:
    """Refuse, before any work, a checkpoint given by a :data:`CHECKPOINT_FIELDS` field that holds pickled
    objects or is not a PyTorch checkpoint (one ``error:`` line instead of torch's ``UnpicklingError``)."""
    for name in CHECKPOINT_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, str | Path) and str(value) and Path(value).is_file():
            from pathseg.io.checkpoints import load_checkpoint_weights_only

            load_checkpoint_weights_only(value)


def check_outputs(cmd: Command, cfg: Any) -> None:
    """Check the command's output paths before it runs (see :mod:`pathseg.io.checks`).

    Raises:
        PathsegError: An output is an existing file where a directory goes (or the reverse), or cannot be written.
    """
    from pathseg.io.checks import check_output_path, check_writable_dir

    overwrite = getattr(cfg, "overwrite", None)
    for name in cmd.outputs:
        value = getattr(cfg, name, None)
        if value not in (None, ""):
            check_output_path(value, True if overwrite is True else None)
    for name in cmd.writes_into:
        value = getattr(cfg, name, None)
        if value not in (None, "") and Path(value).is_dir():
            check_writable_dir(value)
