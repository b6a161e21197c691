"""File input/output helpers: atomic writes, output-path checks and checked image reading."""

from pathseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, resumable_dir, staging_dir
from pathseg.io.checks import check_output_dir, check_output_file, check_output_path, check_writable_dir
from pathseg.io.images import read_mask, read_rgb, write_png

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "check_output_path",
    "check_writable_dir",
    "load_checkpoint_weights_only",
    "read_mask",
    "read_rgb",
    "resumable_dir",
    "staging_dir",
    "write_png",
]


def __getattr__(name: str) -> object:
    """Lazy access to :func:`pathseg.io.checkpoints.load_checkpoint_weights_only` (it imports torch)."""
    if name == "load_checkpoint_weights_only":
        from pathseg.io.checkpoints import load_checkpoint_weights_only

        return load_checkpoint_weights_only
    raise AttributeError(f"module 'pathseg.io' has no attribute {name!r}")
