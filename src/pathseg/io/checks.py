"""Checks of output paths made before any work starts.

A command that will write ``--out`` calls :func:`check_output_dir` (or :func:`check_output_file`) first, so that a
wrong path (an existing file where a directory is expected, a folder that cannot be written) is refused in one
line before minutes of work, never with a traceback at the end. The writes themselves stay atomic
(:func:`pathseg.io.staging_dir`, :func:`pathseg.io.atomic_path`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pathseg.errors import PathsegError

#: Suffixes that make an ``out`` value a file rather than a directory.
FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".json", ".yaml", ".yml", ".csv", ".png", ".tif", ".tiff")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (for a relative path, at worst the working directory)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is an existing directory in which files can be created.

    ``os.access`` is asked first, then a temporary file is really created and removed (``os.access`` says yes to
    root on read-only file systems).

    Raises:
        PathsegError: ``path`` is not a directory or cannot be written.
    """
    d = Path(path)
    if not d.is_dir():
        raise PathsegError("is not a directory", d)
    if not os.access(d, os.W_OK | os.X_OK):
        raise PathsegError("cannot write in this directory (permission denied)", d)
    try:
        fd, name = tempfile.mkstemp(prefix=".pathseg-write-test-", dir=d)
    except OSError as exc:
        raise PathsegError(f"cannot write in this directory ({exc.strerror or exc})", d) from None
    os.close(fd)
    os.unlink(name)
    return d


def _check_parent(target: Path) -> None:
    """The closest existing ancestor of ``target`` must be a writable directory."""
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise PathsegError(f"cannot create {target}: {base} is a file, not a directory", base)
    check_writable_dir(base)


def check_output_dir(path: str | os.PathLike[str], overwrite: bool | None = None) -> Path:
    """Check, before any work, that a directory can be created (or filled) at ``path``.

    Args:
        path: The output directory.
        overwrite: ``False``: an existing directory is refused; ``True``: it will be replaced (its parent must be
            writable for the staging directory); ``None``: an existing directory is written into (resumable
            commands such as ``tile``), so it must itself be writable.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        PathsegError: ``path`` is an existing file, exists when ``overwrite`` is false, or no file can be created
            where it would go.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise PathsegError("exists and is a file, not a directory (choose another --out)", out)
    if out.is_dir():
        if overwrite is False:
            raise PathsegError("output directory exists already (choose another --out or pass --overwrite)", out)
        if overwrite is None:
            check_writable_dir(out)
            return out
    _check_parent(out)
    return out


def check_output_file(path: str | os.PathLike[str], overwrite: bool = True) -> Path:
    """Check, before any work, that a file can be written (atomically, beside itself) at ``path``.

    Raises:
        PathsegError: ``path`` is a directory, exists when ``overwrite`` is false, or its folder is not writable.
    """
    out = Path(path)
    if out.is_dir():
        raise PathsegError("is a directory; give a file name (e.g. encoder.safetensors)", out)
    if out.exists() and not overwrite:
        raise PathsegError("file exists already (choose another --out or pass --overwrite)", out)
    _check_parent(out)
    return out


def check_output_path(path: str | os.PathLike[str], overwrite: bool | None = None) -> Path:
    """:func:`check_output_file` when ``path`` ends with a file suffix (:data:`FILE_SUFFIXES`), else
    :func:`check_output_dir`."""
    if Path(path).suffix.lower() in FILE_SUFFIXES:
        return check_output_file(path, overwrite is not False)
    return check_output_dir(path, overwrite)
