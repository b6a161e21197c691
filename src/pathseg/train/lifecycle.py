"""One run lifecycle for every pipeline: ``run.json`` always ends ``completed``, ``failed`` or ``interrupted``."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from pathseg.errors import PathsegError
from pathseg.runs import RunDir

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal (Ctrl-C, SIGTERM); the CLI prints ``error: interrupted`` and exits 130."""


@contextlib.contextmanager
def run_lifecycle(path: str | os.PathLike[str], config: Any, seed: int | None = None,
                  enabled: bool = True) -> Iterator[RunDir | None]:
    """Create a :class:`~pathseg.runs.RunDir` and record how the run ended, whatever happens inside.

    Inside the block call ``run.finish(metrics)`` on success (status ``completed``, or pass ``status``). On an
    exception the run is marked ``failed`` with the one-line reason (``interrupted`` for ``KeyboardInterrupt`` and
    :class:`Interrupted`) and the exception propagates.

    Args:
        path: Run directory.
        config: The resolved config, written as ``config.yaml``.
        seed: The run's seed.
        enabled: ``False`` on non-zero DDP ranks: yields ``None`` and records nothing.
    """
    if not enabled:
        yield None
        return
    run = RunDir(path, config, seed=seed)
    try:
        yield run
    except KeyboardInterrupt:
        _end(run, "interrupted", "interrupted")
        raise
    except PathsegError as exc:
        _end(run, "failed", str(exc))
        raise
    except BaseException as exc:
        _end(run, "failed", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        raise
    if run.info.get("status") == "running":
        run.finish(None)


def _end(run: RunDir, status: str, reason: str) -> None:
    if not run.path.is_dir():  # the staging directory may be gone already
        return
    run.info["reason"] = reason[:500]
    try:
        run.finish(None, status=status)
    except OSError as exc:  # never hide the original error
        log.warning("could not record the run's outcome: %s", exc)


def fit(trainer: Any, module: Any, **kwargs: Any) -> None:
    """``trainer.fit`` that turns Lightning's graceful shutdown on Ctrl-C (``SystemExit``) into :class:`Interrupted`.

    Raises:
        Interrupted: The run was interrupted (its checkpoint callbacks have saved what they could).
    """
    import signal

    if kwargs.get("ckpt_path"):
        kwargs.setdefault("weights_only", True)  # never unpickle a resume checkpoint
    try:
        trainer.fit(module, **kwargs)
    except SystemExit:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores SIGINT after its shutdown
        if getattr(trainer, "interrupted", False):
            raise Interrupted() from None
        raise
    if getattr(trainer, "interrupted", False):
        raise Interrupted()
