"""Reading training checkpoints safely: tensors and plain containers only, never arbitrary pickled objects."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from pathseg.errors import PathsegError


def load_checkpoint_weights_only(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a PyTorch/Lightning checkpoint with ``torch.load(weights_only=True)`` and return its top-level dict.

    Use it before resuming (``--resume`` / ``--resume-from``): a file holding pickled Python objects is refused
    with one line instead of torch's ``UnpicklingError`` traceback, and it is never unpickled.

    Args:
        path: Checkpoint file (``.ckpt``, ``.pt``, ``.pth``...).

    Returns:
        The checkpoint's mapping (state dicts, optimizer states, counters).

    Raises:
        PathsegError: The file is missing, is not a PyTorch checkpoint, holds pickled objects, or is not a mapping.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise PathsegError("checkpoint not found", p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or ["unpickling refused"])[0]
        raise PathsegError("refusing to load: the checkpoint holds pickled Python objects, not only tensors "
                           f"(weights_only=True: {first[:160]})", p) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PathsegError(f"not a valid PyTorch checkpoint ({first[:160]})", p) from None
    if not isinstance(obj, dict):
        raise PathsegError(f"not a checkpoint: holds a {type(obj).__name__}, not a mapping", p)
    return obj
