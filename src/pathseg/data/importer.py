"""``pathseg data import``: bring your own images and masks (or GeoJSON annotations) into the canonical layout.

Sources:

* a folder pair: images (``.png``, ``.tif``, ``.jpg``, ``.bmp``) and masks of the same file stem. Masks hold class
  indices (``--classes background,gland`` names them), or any grey values / RGB colours translated by
  ``--mapping 0:background,255:gland`` (``#ff0000:tumour`` or ``255/0/0:tumour`` for colours; the name
  ``ignore`` marks unlabelled pixels). Binary 0/1 or 0/255 masks without a mapping become background/foreground;
* GeoJSON (``--geojson``, e.g. QuPath's export): one file per image named after it (``<stem>.geojson``,
  ``<stem>.json`` or ``<image name>.geojson``); polygons are rasterised (:mod:`pathseg.data.geojson`) with
  classes from ``properties.classification.name``; unannotated pixels are ``background`` or ignored
  (``--unannotated ignore``, for sparse annotations).

The split is built in a staging folder, checked with ``data check`` and only then moved into ``--out``. Importing
another split into an existing imported data set (``--split test``) reuses its classes, so both splits agree.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pathseg.errors import ConfigError, DataError

IGNORE = "ignore"
PALETTE = [(0, 0, 0), (0, 200, 0), (220, 40, 40), (40, 80, 220), (230, 180, 0), (160, 40, 200), (0, 190, 190),
           (250, 120, 0), (120, 120, 120), (255, 105, 180)]
Key = int | tuple[int, int, int]


@dataclass
class ImportConfig:
    """Import your own images with masks (or GeoJSON annotations) as one split of a canonical data set."""

    images: Path = field(metadata={"positional": True, "help": "folder of images (or a folder holding images/)"})
    out: Path = field(metadata={"help": "data set directory to create (or to add the split to)"})
    masks: Path | None = field(default=None, metadata={"help": "folder of masks (default: masks/ beside images/)"})
    geojson: Path | None = field(default=None, metadata={"help": "folder of GeoJSON files instead of masks"})
    mapping: str = field(default="", metadata={"help": "mask value or colour -> class, e.g. 0:background,255:gland"})
    classes: list[str] = field(default_factory=list, metadata={"help": "class names of index masks, in order"})
    split: str = field(default="train", metadata={"help": "split name to write"})
    name: str = field(default="", metadata={"help": "data set name (default: the --out folder name)"})
    mpp: float | None = field(default=None, metadata={"help": "resolution in µm/px, if known"})
    unannotated: Literal["background", "ignore"] = field(
        default="background", metadata={"help": "GeoJSON: pixels outside every polygon"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing data set or split"})

    def validate(self) -> None:
        """Check the options that do not need the files."""
        if self.masks is not None and self.geojson is not None:
            raise ConfigError("give --masks or --geojson, not both")
        if not self.split or "/" in self.split or self.split.startswith(".") or self.split == "splits":
            raise ConfigError(f"--split must be a plain folder name (not 'splits'), got '{self.split}'")
        if self.mpp is not None and self.mpp <= 0:
            raise ConfigError(f"--mpp must be positive, got {self.mpp}")


def _key(text: str) -> Key:
    t = text.strip()
    try:
        if t.startswith("#") and len(t) == 7:
            return (int(t[1:3], 16), int(t[3:5], 16), int(t[5:7], 16))
        if "/" in t:
            r, g, b = (int(v) for v in t.split("/"))
            return (r, g, b)
        return int(t)
    except ValueError:
        raise ConfigError(f"--mapping: '{text}' is not a mask value (0-255), #rrggbb or r/g/b colour") from None


def parse_mapping(text: str) -> dict[Key, str]:
    """``"0:background,255:gland"`` -> ``{0: "background", 255: "gland"}`` (colours as RGB tuples).

    Raises:
        ConfigError: An entry without ``:``, a bad value, or a value given twice.
    """
    out: dict[Key, str] = {}
    for item in (p for p in text.split(",") if p.strip()):
        value, sep, name = item.rpartition(":")
        if not sep or not value.strip() or not name.strip():
            raise ConfigError(f"--mapping: '{item}' must look like VALUE:CLASS (e.g. 255:gland)")
        key = _key(value)
        if key in out:
            raise ConfigError(f"--mapping: value {value.strip()} is given twice")
        out[key] = name.strip()
    return out


def _find_pairs(cfg: ImportConfig) -> tuple[Path, list[tuple[str, Path, Path | None]]]:
    """The image folder and ``(id, image, annotation)`` triples; raises for an image without annotation."""
    from pathseg.data.convert.base import image_files, safe_id

    src = Path(cfg.images)
    if not src.is_dir():
        raise DataError("image folder not found", src)
    img_dir = src / "images" if (src / "images").is_dir() else src
    images = image_files(img_dir)
    if not images:
        raise DataError("no images found (.png, .tif, .jpg, .bmp)", img_dir)
    if cfg.geojson is not None:
        ann_dir = Path(cfg.geojson)
        by_stem = {p.name[: -len(p.suffix)]: p for p in sorted(ann_dir.glob("*")) if p.suffix in (".geojson", ".json")}
    else:
        ann_dir = Path(cfg.masks) if cfg.masks is not None else img_dir.parent / "masks"
        by_stem = {p.stem: p for p in image_files(ann_dir)}
    if not ann_dir.is_dir():
        raise DataError("annotation folder not found (give --masks DIR or --geojson DIR)", ann_dir)
    triples: list[tuple[str, Path, Path | None]] = []
    seen: dict[str, Path] = {}
    for img in images:
        ann = by_stem.get(img.stem) or by_stem.get(img.name)
        if ann is None:
            raise DataError(f"image has no {'GeoJSON' if cfg.geojson else 'mask'} in {ann_dir}", img)
        sid = safe_id(img.stem)
        if sid in seen:
            raise DataError(f"two images give the sample id '{sid}': {seen[sid].name} and {img.name}", img)
        seen[sid] = img
        triples.append((sid, img, ann))
    return img_dir, triples


def _read_labels(path: Path, colour: bool) -> np.ndarray:
    """A mask as ``[H, W]`` grey values, or as ``[H, W]`` packed ``0xRRGGBB`` colours when ``colour``."""
    from pathseg.data.convert.base import read_annotation

    if not colour:
        return read_annotation(path).astype(np.int64)
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode mask ({exc})", path) from None
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _packed(key: Key) -> int:
    return (key[0] << 16) | (key[1] << 8) | key[2] if isinstance(key, tuple) else int(key)


def _show(value: int, colour: bool) -> str:
    return f"#{value:06x}" if colour else str(value)


def _translate(values: np.ndarray, table: dict[int, int], colour: bool, path: Path) -> np.ndarray:
    """Map every pixel through ``table`` (raw value -> class index or ignore); unmapped values are refused."""
    uniq, inverse = np.unique(values, return_inverse=True)
    missing = [int(v) for v in uniq if int(v) not in table]
    if missing:
        known = ", ".join(_show(v, colour) for v in sorted(table))
        raise DataError(f"mask values {[_show(v, colour) for v in missing[:5]]} are not in --mapping ({known})", path)
    return np.asarray([table[int(v)] for v in uniq], dtype=np.uint8)[inverse].reshape(values.shape)


def _resolve_classes(cfg: ImportConfig, triples: list[tuple[str, Path, Path | None]],
                     existing: list[str] | None) -> list[str]:
    """Class names by index, from the existing data set, --mapping, --classes, the GeoJSON files or the masks."""
    from pathseg.data.geojson import read_shapes

    if existing is not None:
        return existing
    if cfg.mapping:
        return list(dict.fromkeys(n for n in parse_mapping(cfg.mapping).values() if n != IGNORE))
    if cfg.geojson is not None:
        found = sorted({s.name for _, _, a in triples for s in read_shapes(a)[0]})  # type: ignore[arg-type]
        first = ["background"] if cfg.unannotated == "background" else []
        order = [*first, *cfg.classes]
        return list(dict.fromkeys([*order, *(n for n in found if n not in order)]))
    if cfg.classes:
        return list(cfg.classes)
    values: set[int] = set()
    for _, _, ann in triples:
        values |= {int(v) for v in np.unique(_read_labels(ann, False))}  # type: ignore[arg-type]
    if values <= {0, 1} or values <= {0, 255}:
        return ["background", "foreground"]
    top = max(v for v in values if v != 255) if values - {255} else 0
    return [f"class{i}" for i in range(top + 1)]


def _mask_for(cfg: ImportConfig, ann: Path, shape: tuple[int, int], names: list[str], ignore: int) -> np.ndarray:
    """The class-index mask of one image."""
    from pathseg.data.geojson import rasterise, read_shapes

    index = {n: i for i, n in enumerate(names)}
    if cfg.geojson is not None:
        shapes, _ = read_shapes(ann)
        unknown = sorted({s.name for s in shapes} - set(index))
        if unknown:
            raise DataError(f"classes {unknown} are not classes of the data set ({', '.join(names)})", ann)
        fill = index.get("background", ignore) if cfg.unannotated == "background" else ignore
        return rasterise(shapes, shape, index, fill)
    mapping = parse_mapping(cfg.mapping) if cfg.mapping else {}
    colour = any(isinstance(k, tuple) for k in mapping)
    if mapping and not all(isinstance(k, tuple) == colour for k in mapping):
        raise ConfigError("--mapping mixes grey values and colours; use one kind")
    values = _read_labels(ann, colour)
    if values.shape != shape:
        raise DataError(f"mask size {values.shape[1]}x{values.shape[0]} differs from image size {shape[1]}x{shape[0]}",
                        ann)
    if mapping:
        unknown = sorted({n for n in mapping.values() if n != IGNORE} - set(index))
        if unknown:
            raise ConfigError(f"--mapping names classes {unknown} that the data set lacks ({', '.join(names)})")
        table = {_packed(k): (ignore if n == IGNORE else index[n]) for k, n in mapping.items()}
    elif names == ["background", "foreground"] and set(np.unique(values).tolist()) <= {0, 255}:
        table = {0: 0, 255: 1}
    else:
        table = {i: i for i in range(len(names))} | {ignore: ignore}
    return _translate(values, table, colour, ann)


def _build_split(cfg: ImportConfig, work: Path, triples: list[tuple[str, Path, Path | None]], names: list[str],
                 ignore: int) -> None:
    from pathseg.data.convert.base import save_image, save_mask

    palette = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    for sid, img, ann in triples:
        assert ann is not None
        h, w = save_image(img, work / cfg.split / "images" / f"{sid}.png")
        save_mask(work / cfg.split / "masks" / f"{sid}.png", _mask_for(cfg, ann, (h, w), names, ignore), palette)


def import_dataset(cfg: ImportConfig) -> tuple[list[str], int, list[str]]:
    """Import one split (see the module docstring).

    Returns:
        The class names by index, the number of images and the check's warnings.

    Raises:
        DataError / ConfigError: Missing or unreadable files, values outside ``--mapping``, sizes that differ, an
            existing split without ``--overwrite``; nothing is left half-written.
    """
    from pathseg.data.check import check_dataset, raise_if_problems
    from pathseg.data.layout import ClassInfo, DatasetInfo, read_dataset_info, write_dataset_info
    from pathseg.io import staging_dir

    out = Path(cfg.out)
    img_dir, triples = _find_pairs(cfg)
    existing = read_dataset_info(out) if (out / "dataset.yaml").is_file() else None
    if existing is not None and existing.task != "segmentation":
        raise DataError(f"is a {existing.task} data set; import adds segmentation splits only", out)
    names = _resolve_classes(cfg, triples, existing.class_names if existing else None)
    ignore = existing.ignore_index if existing else 255
    info = existing or DatasetInfo(name=cfg.name or out.name, task="segmentation", ignore_index=ignore, mpp=cfg.mpp,
                                   classes=[ClassInfo(n, i, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)],
                                   source=f"imported with 'pathseg data import' from {img_dir.resolve()}")
    if existing is None:
        with staging_dir(out, overwrite=cfg.overwrite) as tmp:
            write_dataset_info(tmp, info)
            _build_split(cfg, tmp, triples, names, ignore)
            report = check_dataset(tmp)
            raise_if_problems(report, shown_root=out)
        return names, len(triples), report.warnings
    if (out / cfg.split).exists() and not cfg.overwrite:
        raise DataError(f"split '{cfg.split}' exists already (choose another --split or pass --overwrite)", out)
    work = Path(tempfile.mkdtemp(prefix=f".import-{cfg.split}-", dir=out))
    try:
        write_dataset_info(work, info)
        _build_split(cfg, work, triples, names, ignore)
        report = check_dataset(work)
        raise_if_problems(report, shown_root=out)
        if (out / cfg.split).exists():
            shutil.rmtree(out / cfg.split)
        os.replace(work / cfg.split, out / cfg.split)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return names, len(triples), report.warnings


def import_command(cfg: ImportConfig) -> int:
    """CLI: import, print the classes and the check's warnings, return 0."""
    names, n, warnings = import_dataset(cfg)
    classes = ", ".join(f"{i}:{c}" for i, c in enumerate(names))
    print(f"wrote {Path(cfg.out) / cfg.split}: {n} images; classes {classes}")
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"next: pathseg data check {cfg.out}")
    return 0
