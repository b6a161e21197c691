"""Atomic file and directory writes: write to a temporary name, then rename.

Nothing half-written is ever left under the final name, even when the process is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, mode: int) -> None:
    """Give a temporary file or directory the permissions a plain ``open``/``mkdir`` would have."""
    os.chmod(tmp, mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Args:
        path: The final file name.
        suffix: Suffix of the temporary file (default: that of ``path``, so writers that infer the format from
            the extension keep working).

    Yields:
        The temporary path to write to.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _publish(tmp, 0o666)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staging_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``path`` only if the block succeeds.

    On any exception the temporary directory is removed, so no partial output directory is left.

    Args:
        path: The final directory; it must not exist unless ``overwrite`` is true.
        overwrite: Replace an existing directory at ``path``.

    Yields:
        The temporary directory to fill.
    """
    final = _free_target(path, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _move_into_place(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def resumable_dir(path: str | os.PathLike[str], key: dict[str, Any], overwrite: bool = False) -> Iterator[Path]:
    """Like :func:`staging_dir`, but the temporary directory survives a failure so that work can resume.

    The directory is built as ``.NAME.partial`` beside ``path``. When such a directory exists and was started
    with the same ``key`` (e.g. the resolved config), it is reused and its finished parts can be skipped;
    otherwise it is started afresh. On success it is renamed to ``path``. ``path`` itself never holds a
    partial result.

    Args:
        path: The final directory; it must not exist unless ``overwrite`` is true.
        key: JSON-serialisable identity of the work; a partial directory with another key is discarded.
        overwrite: Replace an existing directory at ``path``.

    Yields:
        The partial directory to fill.
    """
    final = _free_target(path, overwrite)
    partial = final.parent / f".{final.name}.partial"
    key_file = partial / ".resume-key.json"
    text = json.dumps(key, sort_keys=True, default=str)
    if partial.exists() and (not key_file.is_file() or key_file.read_text() != text):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(key_file, text)
    yield partial
    key_file.unlink()
    _move_into_place(partial, final)


def _free_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """``path`` as a Path after checking that it may be written; creates its parent."""
    from pathseg.errors import PathsegError

    final = Path(path)
    if final.exists() and not overwrite:
        raise PathsegError("output directory exists already (choose another --out or pass --overwrite)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Give ``tmp`` normal permissions and rename it to ``final`` (replacing it)."""
    _publish(tmp, 0o777)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
