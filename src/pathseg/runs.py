"""Run directories: every run records its resolved config, seed, versions, git commit and metrics.

Layout of a run directory::

    RUN/config.yaml    # the resolved config
    RUN/run.json       # pathseg version, git commit, seed, start/end time, command line, status, metrics
    RUN/metrics.json   # the metrics alone, when the run produced any
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from pathseg import __version__
from pathseg.config import save_config
from pathseg.io.atomic import atomic_write_text


def git_commit() -> str | None:
    """The commit of the pathseg source tree, or ``None`` outside a git checkout."""
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class RunDir:
    """A run directory that records provenance on creation and metrics on completion.

    Args:
        path: The directory (created if missing).
        config: The resolved config dataclass, written as ``config.yaml``.
        seed: The run's seed.
        command: The command line; defaults to ``sys.argv``.
    """

    def __init__(
        self, path: str | os.PathLike[str], config: Any, seed: int | None = None, command: list[str] | None = None
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.path / "config.yaml")
        self.info: dict[str, Any] = {
            "pathseg_version": __version__,
            "git_commit": git_commit(),
            "seed": seed,
            "start_time": _now(),
            "end_time": None,
            "status": "running",
            "command": command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]],
            "python": platform.python_version(),
            "packages": _package_versions(),
        }
        previous = self.path / "run.json"
        if previous.exists():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                self.info["previous_start_times"] = json.loads(previous.read_text()).get("start_time")
        write_json(self.path / "run.json", self.info)

    def finish(self, metrics: dict[str, Any] | None = None, status: str = "completed") -> None:
        """Record the end time, status and metrics (also written to ``metrics.json``)."""
        self.info.update(end_time=_now(), status=status)
        if metrics is not None:
            self.info["metrics"] = metrics
            write_json(self.path / "metrics.json", metrics)
        write_json(self.path / "run.json", self.info)


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("torch", "torchvision", "lightning", "timm", "segmentation-models-pytorch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
