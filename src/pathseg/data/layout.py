"""The canonical data set layout that every pathseg task reads.

::

    DIR/dataset.yaml                 # DatasetInfo below
    DIR/<split>/images/<id>.png      # RGB
    DIR/<split>/masks/<id>.png       # segmentation: uint8 class index; ignore_index (255) = unlabeled pixel
    DIR/<split>/instances/<id>.tif   # instances: integer label map, 0 = background
    DIR/<split>/instance_classes/<id>.json   # optional: {"<instance id>": class index}
    DIR/<split>/labels.csv           # classification (id,label) or patch_labels (id,<class>,<class>,... as 0/1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pathseg.config.core import from_dict, read_yaml, save_config
from pathseg.errors import ConfigError, DataError

Task = Literal["segmentation", "instance", "classification", "patch_labels", "unlabeled"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class ClassInfo:
    """One class of a data set.

    Args:
        name: Human-readable name (e.g. ``"gland"``).
        index: The value of this class in masks and label files.
        color: RGB colour used in overlays and palette PNGs.
    """

    name: str
    index: int
    color: tuple[int, int, int] = (0, 0, 0)


@dataclass
class DatasetInfo:
    """Contents of ``dataset.yaml``.

    Args:
        name: Data set name.
        task: What the labels are: segmentation, instance, classification, patch_labels or unlabeled.
        classes: The classes, with their indices and colours.
        ignore_index: Mask value of unlabeled pixels.
        mpp: Resolution in micrometres per pixel, if known.
        source: Where the data came from (release name, URL or path).
        licence: The data's licence or terms of use.
        exclude_index: A class left out of WSSS metrics (e.g. background in LUAD-HistoSeg), if any.
        white_background: Whether white pixels of a patch are the ``exclude_index`` background in WSSS pseudo masks
            (LUAD-HistoSeg: true; BCSS-WSSS: false, white fat is tissue there); ``None``: not stated.
    """

    name: str
    task: Task
    classes: list[ClassInfo] = field(default_factory=list)
    ignore_index: int = 255
    mpp: float | None = None
    source: str = ""
    licence: str = ""
    exclude_index: int | None = None
    white_background: bool | None = None

    def validate(self) -> None:
        """Check class indices are unique and distinct from ``ignore_index``."""
        indices = [c.index for c in self.classes]
        if len(set(indices)) != len(indices):
            raise ConfigError(f"class indices are not unique: {indices}")
        if self.ignore_index in indices:
            raise ConfigError(f"ignore_index {self.ignore_index} is also a class index")

    @property
    def num_classes(self) -> int:
        """Number of classes (max index + 1)."""
        return max((c.index for c in self.classes), default=-1) + 1

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by index."""
        return [c.name for c in sorted(self.classes, key=lambda c: c.index)]

    def palette(self) -> list[tuple[int, int, int]]:
        """Colours indexed by class index (black where an index has no class)."""
        pal = [(0, 0, 0)] * max(self.num_classes, 1)
        for c in self.classes:
            pal[c.index] = tuple(c.color)  # type: ignore[assignment]
        return pal


def read_dataset_info(root: str | os.PathLike[str]) -> DatasetInfo:
    """Read and validate ``DIR/dataset.yaml``.

    Raises:
        DataError: The file is missing.
        ConfigError: The file is invalid (names the file).
    """
    path = Path(root) / "dataset.yaml"
    if not path.is_file():
        raise DataError("not a pathseg data set (dataset.yaml missing; see 'pathseg data convert')", root)
    try:
        return from_dict(DatasetInfo, read_yaml(path))
    except ConfigError as exc:
        raise ConfigError(exc.message, path) from None


def write_dataset_info(root: str | os.PathLike[str], info: DatasetInfo) -> None:
    """Write ``DIR/dataset.yaml`` atomically."""
    info.validate()
    save_config(info, Path(root) / "dataset.yaml")


def list_splits(root: str | os.PathLike[str]) -> list[str]:
    """Split folder names under ``root`` (those holding ``images/``), sorted."""
    return sorted(p.name for p in Path(root).iterdir() if (p / "images").is_dir())


def list_ids(root: str | os.PathLike[str], split: str) -> list[str]:
    """Sample ids of a split: image file names without suffix, sorted.

    Raises:
        DataError: The split does not exist.
    """
    folder = Path(root) / split / "images"
    if not folder.is_dir():
        raise DataError(f"split '{split}' not found (have: {', '.join(list_splits(root)) or 'none'})", root)
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def image_path(root: str | os.PathLike[str], split: str, sample_id: str) -> Path:
    """Path of a sample's image (PNG preferred, other suffixes accepted)."""
    folder = Path(root) / split / "images"
    for suffix in IMAGE_SUFFIXES:
        p = folder / f"{sample_id}{suffix}"
        if p.exists():
            return p
    return folder / f"{sample_id}.png"


def mask_path(root: str | os.PathLike[str], split: str, sample_id: str) -> Path:
    """Path of a sample's segmentation mask."""
    return Path(root) / split / "masks" / f"{sample_id}.png"


def instance_path(root: str | os.PathLike[str], split: str, sample_id: str) -> Path:
    """Path of a sample's instance label map."""
    return Path(root) / split / "instances" / f"{sample_id}.tif"


def labels_path(root: str | os.PathLike[str], split: str) -> Path:
    """Path of a split's ``labels.csv``."""
    return Path(root) / split / "labels.csv"


def read_labels_csv(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Read a ``labels.csv``: its header and its rows by id.

    Returns:
        The column names (the first is ``id``) and ``{id: {column: value}}`` in file order.

    Raises:
        DataError: The file is missing, has no ``id`` column first, or repeats an id (names the file and line).
    """
    import csv

    p = Path(path)
    if not p.is_file():
        raise DataError("labels.csv not found", p)
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0].strip() != "id":
        raise DataError("labels.csv must start with a header whose first column is 'id'", p)
    header = [h.strip() for h in rows[0]]
    out: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"line {line}: expected {len(header)} columns, got {len(row)}", p)
        sample_id = row[0].strip()
        if sample_id in out:
            raise DataError(f"line {line}: id '{sample_id}' is repeated", p)
        out[sample_id] = {h: v.strip() for h, v in zip(header[1:], row[1:])}
    return header, out
