"""Weakly supervised tissue sets with patch labels in file names: LUAD-HistoSeg and BCSS-WSSS.

Accepted source layouts:

* official: ``train/`` (or ``training/``) holding ``<name>[a b c d].png`` (LUAD-HistoSeg, e.g.
  ``1031280-2300-27920-[1 0 0 1].png``) or ``<name>[abcd].png`` (BCSS-WSSS, e.g. ``...+0[1101].png``), and
  ``val/img/*.png`` + ``val/mask/*.png``, ``test/img/*.png`` + ``test/mask/*.png`` (palette PNGs, index 4 =
  background);
* re-packed: ``<split>/images/*.png`` (training names carry the labels) with ``<split>/masks/*.png`` for val/test.

Output: task ``patch_labels`` with the four tissue classes plus ``background`` (index 4, the ``exclude_index``
left out of WSSS metrics). ``<split>/labels.csv`` has one 0/1 column per tissue class (not background): parsed
from the file name for training patches, and "class present in the mask" for val/test patches. Masks keep their
palette indices (RGB masks are mapped through the palette).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pathseg.data.convert.base import (
    CONVERTERS,
    ConvertConfig,
    ConvertSummary,
    check_counts,
    find_dir,
    image_files,
    progress,
    safe_id,
    save_image,
    save_mask,
    write_labels,
)
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.errors import DataError

_LABEL = re.compile(r"\[\s*([01])\s*([01])\s*([01])\s*([01])\s*\]\s*$")

LUAD_CLASSES = [ClassInfo("TE", 0, (205, 51, 51)), ClassInfo("NEC", 1, (0, 255, 0)),
                ClassInfo("LYM", 2, (65, 105, 225)), ClassInfo("TAS", 3, (255, 165, 0)),
                ClassInfo("background", 4, (255, 255, 255))]
BCSS_WSSS_CLASSES = [ClassInfo("TUM", 0, (255, 0, 0)), ClassInfo("STR", 1, (0, 255, 0)),
                     ClassInfo("LYM", 2, (0, 0, 255)), ClassInfo("NEC", 3, (153, 0, 255)),
                     ClassInfo("background", 4, (255, 255, 255))]
LUAD_EXPECTED = {"train": 16678, "val": 300, "test": 307}
BCSS_WSSS_EXPECTED = {"train": 23422, "val": 3418, "test": 4986}


def parse_patch_label(stem: str) -> tuple[str, list[int]] | None:
    """Split ``name[1 0 0 1]`` / ``name[1001]`` into ``(name, [1, 0, 0, 1])``; None without a label."""
    match = _LABEL.search(stem)
    if match is None:
        return None
    name = stem[: match.start()].rstrip(" -_+")
    return name, [int(g) for g in match.groups()]


def _mask_indices(path: Path, palette: list[tuple[int, int, int]]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("RGB") if img.mode in {"RGB", "RGBA"} else img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode mask ({exc})", path) from None
    if arr.ndim == 3:
        out = np.full(arr.shape[:2], 255, dtype=np.uint8)
        for i, color in enumerate(palette):
            out[np.all(arr == np.asarray(color, dtype=arr.dtype), axis=-1)] = i
        if (out == 255).any():
            raise DataError("RGB mask has colours outside the class palette", path)
        return out
    if arr.max(initial=0) >= len(palette):
        raise DataError(f"mask value {int(arr.max())} is not a class index (0-{len(palette) - 1})", path)
    return arr.astype(np.uint8)


def _sources(src: Path) -> dict[str, tuple[Path, Path | None]]:
    """``{split: (image folder, mask folder or None)}`` for the official or the re-packed layout."""
    root = find_dir(src, lambda d: any((d / t).is_dir() for t in ("train", "training", "val", "test")))
    if root is None:
        raise DataError("no train/, val/ or test/ folder found", src)
    out: dict[str, tuple[Path, Path | None]] = {}
    for name in ("train", "training", "val", "test"):
        d = root / name
        if not d.is_dir():
            continue
        split = "train" if name == "training" else name
        for img_dir, mask_dir in (("img", "mask"), ("images", "masks")):
            if (d / img_dir).is_dir():
                out[split] = (d / img_dir, d / mask_dir if (d / mask_dir).is_dir() else None)
                break
        else:
            out[split] = (d, None)
    return out


def _convert(src: Path, dst: Path, cfg: ConvertConfig, info: DatasetInfo, expected: dict[str, int]) -> ConvertSummary:
    summary = ConvertSummary()
    tissue = [c.name for c in info.classes if c.index != info.exclude_index]
    palette = info.palette()
    for split, (img_dir, mask_dir) in _sources(src).items():
        rows: list[list[str]] = []
        seen: dict[str, Path] = {}
        files = image_files(img_dir, (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
        for f in progress(files, f"{info.name} {split}", cfg):
            parsed = parse_patch_label(f.stem)
            sample_id = safe_id(parsed[0] if parsed else f.stem)
            if sample_id in seen:
                raise DataError(f"id '{sample_id}' is also the id of {seen[sample_id]}", f)
            seen[sample_id] = f
            mask_file = mask_dir / f.name if mask_dir is not None else None
            if mask_file is not None and not mask_file.is_file():
                raise DataError(f"image has no mask in {mask_dir}", f)
            shape = save_image(f, dst / split / "images" / f"{sample_id}.png")
            if mask_file is not None:
                mask = _mask_indices(mask_file, palette)
                if mask.shape != shape:
                    raise DataError("mask size differs from image size", mask_file)
                save_mask(dst / split / "masks" / f"{sample_id}.png", mask, palette)
                present = set(np.unique(mask).tolist())
                rows.append([sample_id, *(str(int(i in present)) for i in range(len(tissue)))])
            elif parsed is not None:
                rows.append([sample_id, *map(str, parsed[1])])
            else:
                raise DataError("training patch name carries no label like '[1 0 0 1]' or '[1001]'", f)
        write_labels(dst / split / "labels.csv", ["id", *tissue], rows)
        summary.counts[split] = len(rows)
        positives = np.asarray([[int(v) for v in r[1:]] for r in rows]).sum(axis=0) if rows else [0] * len(tissue)
        summary.notes.append(f"{info.name} {split}: {len(rows)} patches; positives " +
                             ", ".join(f"{c} {int(n)}" for c, n in zip(tissue, positives)))
    write_dataset_info(dst, info)
    check_counts(summary, info.name, expected)
    return summary


@CONVERTERS.register("luad-histoseg")
def convert_luad(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert LUAD-HistoSeg (lung adenocarcinoma; TE, NEC, LYM, TAS)."""
    info = DatasetInfo(name="luad-histoseg", task="patch_labels", classes=list(LUAD_CLASSES), exclude_index=4,
                       white_background=True, mpp=None, source=f"LUAD-HistoSeg (Han et al. 2022) from {src}",
                       licence="see the release")
    return _convert(src, dst, cfg, info, LUAD_EXPECTED)


@CONVERTERS.register("bcss-wsss")
def convert_bcss_wsss(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert BCSS-WSSS (breast; TUM, STR, LYM, NEC)."""
    info = DatasetInfo(name="bcss-wsss", task="patch_labels", classes=list(BCSS_WSSS_CLASSES), exclude_index=4,
                       white_background=False, mpp=0.25, source=f"BCSS-WSSS (Han et al. 2022) from {src}",
                       licence="CC0 1.0 (BCSS)")
    return _convert(src, dst, cfg, info, BCSS_WSSS_EXPECTED)
