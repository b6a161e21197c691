"""Weights on disk: deterministic safetensors files and weights-only Lightning resume checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pathseg.errors import PathsegError
from pathseg.io import atomic_path


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike[str],
                     metadata: dict[str, str] | None = None) -> Path:
    """Write tensors (contiguous CPU copies) and string metadata, atomically and byte-reproducibly.

    Tensors are written in key order and metadata keys sorted, so that identical weights give identical files.
    """
    from safetensors.torch import save

    tensors = {k: state[k].detach().cpu().contiguous() for k in sorted(state)}
    meta = {"format": "pt", **{str(k): str(v) for k, v in (metadata or {}).items()}}
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.write_bytes(canonical_safetensors(save(tensors, metadata=meta)))
    return out


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted (the writer's map order varies by run).

    The format is ``u64 header length | JSON header | tensor bytes``; offsets in the header are relative to the
    tensor bytes, which are unchanged, so re-serialising the header keeps the file valid.
    """
    import json

    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor bytes 8-byte aligned, as the writer does
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file.

    Raises:
        PathsegError: Missing or not a safetensors file.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise PathsegError("weights file not found", p)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise PathsegError(f"not a readable safetensors file ({str(exc).splitlines()[0][:120]})", p) from None


def check_resume_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Check that a Lightning checkpoint loads with ``weights_only=True`` before a run resumes from it.

    The reading itself is :func:`pathseg.io.checkpoints.load_checkpoint_weights_only`.

    Raises:
        PathsegError: Missing, truncated, or holding pickled objects (never unpickled).
    """
    from pathseg.io.checkpoints import load_checkpoint_weights_only

    p = Path(path)
    if not p.is_file():
        raise PathsegError("checkpoint to resume from not found", p)
    try:
        load_checkpoint_weights_only(p)
    except PathsegError as exc:
        raise PathsegError(f"cannot resume from this checkpoint: {exc.message}", p) from None
    return p
