"""File input/output helpers: atomic writes and checked image reading."""

from pathseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, resumable_dir, staging_dir
from pathseg.io.images import read_mask, read_rgb, write_png

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_mask",
    "read_rgb",
    "resumable_dir",
    "staging_dir",
    "write_png",
]
