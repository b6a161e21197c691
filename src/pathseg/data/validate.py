"""The fast data set check run before training or evaluation starts, with a per-file cache.

:func:`validate_for_training` checks what would otherwise fail (or silently go wrong) in the middle of a run:
every image of the splits used opens and has an intact file (PIL ``verify``, no pixel decoding), every mask is
present, has its image's size and holds only class indices or ``ignore_index``. The messages are those of
``pathseg data check``. Per-file results (image size, mask histogram) are cached in
``DIR/.pathseg_check_cache.json`` keyed by path, file size and modification time, so a second run reads no mask;
the cache is written atomically and is skipped when ``DIR`` is read-only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.errors import DataError

log = logging.getLogger(__name__)

CACHE_NAME = ".pathseg_check_cache.json"
CACHE_VERSION = 1
LABELLED_TASKS = ("segmentation", "instance")


def mask_values_problem(bad: Sequence[int], classes: Sequence[int], ignore_index: int) -> str:
    """The message for mask values that are neither class indices nor ``ignore_index``."""
    return f"mask values {list(bad)[:5]} are neither class indices {sorted(classes)} nor ignore_index {ignore_index}"


def size_problem(what: str, shape: Sequence[int], image_shape: Sequence[int]) -> str:
    """The message for a mask (or instance map) whose ``(H, W)`` differs from its image's."""
    return f"{what} size {shape[1]}x{shape[0]} differs from image size {image_shape[1]}x{image_shape[0]}"


def class_warnings(split: str, class_pixels: dict[str, int], ignored: int, ignore_index: int) -> list[str]:
    """Warnings for a split whose masks leave a class without any pixel, or ignore every pixel.

    A binary 0/255 mask read as classes ``{0: background, 1: gland}`` is the typical case: 255 is then
    ``ignore_index``, the gland class has no pixel and an evaluation reports gland IoU 0.
    """
    labelled = sum(class_pixels.values())
    total = labelled + ignored
    if total == 0:
        return []
    hint = (f" (if {ignore_index} marks a class, as in 0/255 masks, re-import the masks with a mapping, e.g. "
            f"'pathseg data import ... --mapping 0:background,{ignore_index}:gland')")
    if labelled == 0:
        return [f"split '{split}': every mask pixel is ignore_index {ignore_index}; nothing is labelled" + hint]
    empty = [name for name, n in class_pixels.items() if n == 0]
    if not empty:
        return []
    text = f"split '{split}': class{'es' if len(empty) > 1 else ''} {', '.join(repr(e) for e in empty)} " \
           f"{'have' if len(empty) > 1 else 'has'} no labelled pixel"
    if ignored:
        text += f" ({ignored / total:.1%} of the pixels are ignore_index {ignore_index})" + hint
    return [text]


class _Cache:
    """Per-file results keyed by path relative to the data set, file size and mtime."""

    def __init__(self, root: Path) -> None:
        self.path = root / CACHE_NAME
        self.entries: dict[str, Any] = {}
        self.dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
                self.entries = dict(data.get("files", {}))
        except (OSError, ValueError):
            pass
        self.root = root

    def _key(self, path: Path) -> tuple[str, list[int]]:
        st = path.stat()
        return str(path.relative_to(self.root)), [st.st_size, st.st_mtime_ns]

    def get(self, path: Path) -> dict[str, Any] | None:
        name, stamp = self._key(path)
        entry = self.entries.get(name)
        return entry["result"] if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, path: Path, result: dict[str, Any]) -> None:
        name, stamp = self._key(path)
        self.entries[name] = {"stamp": stamp, "result": result}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from pathseg.io import atomic_write_text

        try:
            atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "files": self.entries}))
        except OSError as exc:  # a read-only data set is fine: the check is simply redone next time
            log.debug("cannot write %s (%s)", self.path, exc)


def _image_result(path: Path) -> dict[str, Any]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            img.verify()  # chunk/CRC and structure check without decoding pixels (catches truncated PNGs)
    except (OSError, SyntaxError, ValueError) as exc:
        return {"error": f"cannot decode image ({exc})"}
    return {"shape": [h, w]}


def _mask_result(path: Path) -> dict[str, Any]:
    from pathseg.io import read_mask

    try:
        mask = read_mask(path)
    except DataError as exc:
        return {"error": exc.message}
    if mask.dtype != np.uint8:
        return {"error": f"mask must be 8-bit, got {mask.dtype}", "shape": list(mask.shape)}
    hist = np.bincount(mask.ravel(), minlength=256)
    return {"shape": list(mask.shape), "hist": {str(v): int(hist[v]) for v in np.flatnonzero(hist)}}


def _cached(cache: _Cache, path: Path, fn: Any) -> dict[str, Any]:
    result = cache.get(path)
    if result is None:
        result = fn(path)
        cache.put(path, result)
    return result


def _check_split(root: Path, name: str, info: Any, classes: list[int], ignore_index: int, task: str,
                 cache: _Cache) -> list[str]:
    """Raise the first problem of one split; return its warnings."""
    from pathseg.data.layout import image_path, mask_path
    from pathseg.data.split import resolve_ids

    folder, ids = resolve_ids(root, name)
    if not ids:
        raise DataError(f"split '{folder}' has no images", root / folder / "images")
    counts = np.zeros(256, dtype=np.int64)
    for sid in ids:
        img = image_path(root, folder, sid)
        res = _cached(cache, img, _image_result)
        if "error" in res:
            raise DataError(res["error"], img)
        if task not in LABELLED_TASKS:
            continue
        mpath = mask_path(root, folder, sid)
        if not mpath.is_file():
            raise DataError(f"image has no mask (expected masks/{sid}.png)", img)
        mres = _cached(cache, mpath, _mask_result)
        if "shape" in mres and list(mres["shape"]) != list(res["shape"]):
            raise DataError(size_problem("mask", mres["shape"], res["shape"]), mpath)
        if "error" in mres:
            raise DataError(mres["error"], mpath)
        valid = set(classes) | {ignore_index}
        bad = sorted(int(v) for v in mres["hist"] if int(v) not in valid)
        if bad:
            raise DataError(mask_values_problem(bad, classes, ignore_index), mpath)
        for v, n in mres["hist"].items():
            counts[int(v)] += n
    if task not in LABELLED_TASKS:
        return []
    names = {c.index: c.name for c in info.classes}
    pixels = {names[i]: int(counts[i]) for i in sorted(names)}
    ignored = int(counts[ignore_index]) if 0 <= ignore_index < 256 else 0
    return class_warnings(folder, pixels, ignored, ignore_index)


def validate_for_training(
    root: str | os.PathLike[str],
    splits: Sequence[str],
    num_classes: int | None = None,
    ignore_index: int | None = None,
    task: str | None = None,
) -> list[str]:
    """Check the splits a run will read, before it starts; raise the first problem as ``data check`` words it.

    Args:
        root: Data set directory (canonical layout).
        splits: Split folders or id-list names (``DIR/splits/<name>.txt``) the run reads; ``""`` entries are
            skipped.
        num_classes: Classes of the model: mask values must be in ``[0, num_classes)`` or ``ignore_index``
            (default: the class indices of ``dataset.yaml``).
        ignore_index: Mask value ignored by the loss (default: that of ``dataset.yaml``).
        task: ``segmentation``/``instance`` (masks are checked) or another task (images only); default the data
            set's task.

    Returns:
        Warnings (a class without labelled pixels, an entirely ignored split), also logged.

    Raises:
        DataError: Missing data set, split or mask; an image that cannot be read; a mask of another size or with
            values outside the classes. The error names the file.
    """
    from pathseg.data.layout import read_dataset_info

    path = Path(root)
    info = read_dataset_info(path)
    info.validate()
    ignore = info.ignore_index if ignore_index is None else int(ignore_index)
    classes = sorted(c.index for c in info.classes) if num_classes is None else list(range(int(num_classes)))
    cache = _Cache(path)
    warnings: list[str] = []
    try:
        for name in dict.fromkeys(s for s in splits if s):
            warnings += _check_split(path, name, info, classes, ignore, task or info.task, cache)
    finally:
        cache.save()
    for line in warnings:
        log.warning(line)
    return warnings
