"""Shared pieces of the converters: the config, the registry, the summary and small writing helpers.

This module is light (no converter is imported), so ``pathseg --help`` stays fast.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from pathseg.errors import DataError
from pathseg.registry import Registry

T = TypeVar("T")


@dataclass
class ConvertConfig:
    """Convert a public data set release (or a re-packed copy of it) into pathseg's canonical layout."""

    name: str = field(metadata={"positional": True, "help": "converter: glas, monuseg, kather2016, nct-crc-he, "
                                                          "bcss, luad-histoseg, bcss-wsss, crag"})
    src: Path = field(metadata={"positional": True, "help": "the release folder (official or re-packed layout)"})
    out: Path = field(metadata={"help": "output data set directory (must not exist unless --overwrite)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    grouping: Literal["none", "5class"] = field(
        default="none", metadata={"help": "bcss only: keep the 21 BCSS tissue codes as classes or group them into 5"})
    mpp: float = field(default=0.0, metadata={
        "help": "bcss only: resample to this µm/px (0 = the release's 0.25; PLM's protocol trains at 0.5)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})


@dataclass
class ConvertSummary:
    """What a converter did: images per split, warnings (e.g. count differences) and notes to print."""

    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Converter = Callable[[Path, Path, ConvertConfig], ConvertSummary]
CONVERTERS: Registry[Converter] = Registry("data set converter")


def progress(items: Iterable[T], desc: str, cfg: ConvertConfig, total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar on stderr when ``cfg.progress`` is set and stderr is a terminal."""
    from tqdm import tqdm

    show = cfg.progress and sys.stderr.isatty()
    yield from tqdm(items, desc=desc, total=total, disable=not show, leave=False, file=sys.stderr)


def check_counts(summary: ConvertSummary, dataset: str, expected: dict[str, int]) -> None:
    """Compare the images per split with the official release and add a warning per difference."""
    for split, n in expected.items():
        got = summary.counts.get(split, 0)
        if got != n:
            summary.warnings.append(f"{dataset} {split}: {got} images, the official release has {n}"
                                    + (" (split missing)" if got == 0 else ""))


def find_dir(src: Path, test: Callable[[Path], bool], depth: int = 2) -> Path | None:
    """The first of ``src`` and its subfolders (breadth first, up to ``depth`` levels) passing ``test``."""
    level = [src]
    for _ in range(depth + 1):
        for d in level:
            if test(d):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    return None


def is_repacked(path: Path) -> bool:
    """A re-packed layout: split folders that hold ``images/``."""
    return any((c / "images").is_dir() for c in path.iterdir() if c.is_dir())


def repacked_splits(path: Path) -> list[str]:
    """Split folders of a re-packed layout, sorted."""
    return sorted(c.name for c in path.iterdir() if c.is_dir() and (c / "images").is_dir())


def image_files(folder: Path, suffixes: tuple[str, ...] = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
                ) -> list[Path]:
    """Image files of a folder, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def pair_by_stem(image_dir: Path, mask_dir: Path, what: str = "mask") -> list[tuple[str, Path, Path]]:
    """``(id, image, mask)`` for every image of ``image_dir``, its mask the file of ``mask_dir`` with its stem.

    Raises:
        DataError: An image has no file of the same stem in ``mask_dir`` (names the image).
    """
    masks = {p.stem: p for p in image_files(mask_dir)}
    items = []
    for img in image_files(image_dir):
        if img.stem not in masks:
            raise DataError(f"image has no {what} in {mask_dir}", img)
        items.append((img.stem, img, masks[img.stem]))
    return items


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def safe_id(stem: str) -> str:
    """A file-name-safe sample id: runs of characters other than letters, digits, ``_`` and ``-`` become ``_``."""
    return _UNSAFE.sub("_", stem).strip("_")


def save_image(src: Path, dst: Path) -> tuple[int, int]:
    """Save ``src`` as an RGB PNG at ``dst`` (copied when it is an RGB PNG already); returns ``(height, width)``.

    Raises:
        DataError: ``src`` cannot be decoded.
    """
    from PIL import Image

    from pathseg.io import read_rgb, write_png

    try:
        with Image.open(src) as img:
            fmt, mode, (w, h) = img.format, img.mode, img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", src) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "PNG" and mode == "RGB":
        shutil.copyfile(src, dst)  # decoded in full by the final check
        return h, w
    arr = read_rgb(src)
    write_png(dst, arr)
    return arr.shape[0], arr.shape[1]


def save_mask(dst: Path, mask: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """Write a class-index mask as a palette PNG."""
    from pathseg.io import write_png

    dst.parent.mkdir(parents=True, exist_ok=True)
    write_png(dst, mask.astype(np.uint8), palette=palette)


def save_instances(dst: Path, inst: np.ndarray) -> None:
    """Write an instance label map as a zlib-compressed integer TIFF (uint16, or uint32 when needed)."""
    import tifffile

    from pathseg.io import atomic_path

    dtype = np.uint16 if inst.max(initial=0) < 65536 else np.uint32
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tifffile.imwrite(tmp, inst.astype(dtype), compression="zlib")


def binary_or_instances(ann: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split an annotation into a 0/1 foreground mask and an instance map.

    A mask with values in ``{0, 1}`` or ``{0, 255}`` is binary: instances are its 8-connected components.
    Any other integer mask is instance-labelled: each value > 0 is one object (relabelled 1..N).

    Returns:
        ``(foreground, instances, was_instance_labelled)``.
    """
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential

    values = np.unique(ann)
    if set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}:
        fg = ann > 0
        return fg.astype(np.uint8), label(fg, connectivity=2).astype(np.int32), False
    inst = relabel_sequential(ann.astype(np.int64))[0]
    return (inst > 0).astype(np.uint8), inst.astype(np.int32), True


def read_annotation(path: Path) -> np.ndarray:
    """Read a mask/annotation image as a 2-D integer array (RGB masks with equal channels are accepted)."""
    from PIL import Image

    from pathseg.io import read_mask

    try:
        return read_mask(path)
    except DataError:
        pass
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode mask ({exc})", path) from None
    if arr.ndim == 3 and np.all(arr[..., :3] == arr[..., :1]):
        return arr[..., 0]
    raise DataError(f"mask must be single-channel, got shape {arr.shape}", path)


def write_labels(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a ``labels.csv`` atomically."""
    import csv
    import io

    from pathseg.io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def pixel_size(img_path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header."""
    from PIL import Image

    try:
        with Image.open(img_path) as img:
            return img.size[1], img.size[0]
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", img_path) from None
