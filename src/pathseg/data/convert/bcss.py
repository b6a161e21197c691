"""BCSS (Breast Cancer Semantic Segmentation, Amgad et al. 2019): 151 TCGA regions of interest at 0.25 µm/px.

Accepted source layouts:

* official: ``rgbs_colorNormalized/<name>.png`` (or ``images/``) with ``masks/<name>.png`` (all written to split
  ``train``; the release has no official split);
* re-packed: ``<split>/images/*.png`` with ``<split>/masks/*.png``.

Masks hold the BCSS ground-truth codes (``meta/gtruth_codes.tsv``): 0 outside_roi, 1 tumor, 2 stroma,
3 lymphocytic_infiltrate, 4 necrosis_or_debris, 5 glandular_secretions, 6 blood, 7 exclude, 8 metaplasia_NOS,
9 fat, 10 plasma_cells, 11 other_immune_infiltrate, 12 mucoid_material, 13 normal_acinus_or_duct, 14 lymphatics,
15 undetermined, 16 nerve, 17 skin_adnexa, 18 blood_vessel, 19 angioinvasion, 20 dcis, 21 other.

Code 0 (outside the region of interest, "don't care") becomes ``ignore_index`` 255. ``--grouping none`` keeps
the 21 other codes as classes with index ``code - 1``. ``--grouping 5class`` uses the usual grouping:
tumor (tumor, angioinvasion, dcis), stroma, inflammatory (lymphocytic_infiltrate, plasma_cells,
other_immune_infiltrate), necrosis (necrosis_or_debris), other (all remaining codes); ``exclude`` (7) is then
ignored as well.

``--mpp`` resamples the release (0.25 µm/px) on the way: images by area averaging (for a factor of 2 the
same values as the original's bilinear resize: the mean of each 2 x 2 block), masks by
nearest neighbour, both to the same rounded size. PLM's BCSS experiment trains at 0.5 µm/px (its 512 px patches
are resized to 256 px), hence ``--mpp 0.5`` in ``configs/finetune/plm_bcss_frozen.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathseg.data.convert.base import (
    CONVERTERS,
    ConvertConfig,
    ConvertSummary,
    check_counts,
    find_dir,
    is_repacked,
    pair_by_stem,
    progress,
    read_annotation,
    repacked_splits,
    save_image,
    save_mask,
)
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.errors import DataError

BCSS_CODES = ["outside_roi", "tumor", "stroma", "lymphocytic_infiltrate", "necrosis_or_debris",
              "glandular_secretions", "blood", "exclude", "metaplasia_NOS", "fat", "plasma_cells",
              "other_immune_infiltrate", "mucoid_material", "normal_acinus_or_duct", "lymphatics", "undetermined",
              "nerve", "skin_adnexa", "blood_vessel", "angioinvasion", "dcis", "other"]
FIVE_CLASSES = ["tumor", "stroma", "inflammatory", "necrosis", "other"]
FIVE_GROUPS = {"tumor": [1, 19, 20], "stroma": [2], "inflammatory": [3, 10, 11], "necrosis": [4]}
EXPECTED = {"train": 151}
RELEASE_MPP = 0.25
IGNORE = 255
_COLORS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (153, 0, 255), (255, 200, 0), (0, 200, 200), (200, 0, 100)]


def code_lut(grouping: str) -> tuple[np.ndarray, list[str]]:
    """A 256-entry lookup table from BCSS codes to class indices, and the class names."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if grouping == "5class":
        for code in range(1, len(BCSS_CODES)):
            lut[code] = FIVE_CLASSES.index("other")
        for name, codes in FIVE_GROUPS.items():
            lut[codes] = FIVE_CLASSES.index(name)
        lut[BCSS_CODES.index("exclude")] = IGNORE
        return lut, list(FIVE_CLASSES)
    lut[1: len(BCSS_CODES)] = np.arange(len(BCSS_CODES) - 1)
    return lut, BCSS_CODES[1:]


def _samples(src: Path) -> dict[str, list[tuple[str, Path, Path]]]:
    def official(d: Path) -> bool:
        return (d / "masks").is_dir() and any((d / n).is_dir() for n in ("rgbs_colorNormalized", "images"))

    root = find_dir(src, official)
    if root is not None and not is_repacked(root):
        img_dir = root / ("rgbs_colorNormalized" if (root / "rgbs_colorNormalized").is_dir() else "images")
        pairs = {"train": (img_dir, root / "masks")}
    else:
        root = find_dir(src, is_repacked)
        if root is None:
            raise DataError("no BCSS release found (expected rgbs_colorNormalized/ + masks/)", src)
        pairs = {s: (root / s / "images", root / s / "masks") for s in repacked_splits(root)}
    out: dict[str, list[tuple[str, Path, Path]]] = {}
    for split, (img_dir, mask_dir) in pairs.items():
        out[split] = pair_by_stem(img_dir, mask_dir)
    return out


@CONVERTERS.register("bcss")
def convert_bcss(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert BCSS with its class table, or grouped into 5 classes (``--grouping 5class``)."""
    lut, names = code_lut(cfg.grouping)
    classes = [ClassInfo(n, i, _COLORS[i % len(_COLORS)]) for i, n in enumerate(names)]
    info = DatasetInfo(name="bcss" if cfg.grouping == "none" else "bcss-5class", task="segmentation",
                       classes=classes, ignore_index=IGNORE, mpp=cfg.mpp or RELEASE_MPP,
                       source=f"BCSS (Amgad et al. 2019) from {src}",
                       licence="CC0 1.0")
    summary = ConvertSummary()
    palette = info.palette()
    for split, items in _samples(src).items():
        for sample_id, img, mask_path in progress(items, f"bcss {split}", cfg):
            shape = save_image(img, dst / split / "images" / f"{sample_id}.png")
            codes = read_annotation(mask_path)
            if codes.shape != shape:
                raise DataError("mask size differs from image size", mask_path)
            if codes.max(initial=0) >= len(BCSS_CODES):
                raise DataError(f"mask value {int(codes.max())} is not a BCSS code (0-21)", mask_path)
            classes_map = lut[codes.astype(np.int64)]
            if cfg.mpp and cfg.mpp != RELEASE_MPP:
                classes_map = resample_pair(dst / split / "images" / f"{sample_id}.png", classes_map,
                                            RELEASE_MPP / cfg.mpp)
            save_mask(dst / split / "masks" / f"{sample_id}.png", classes_map, palette)
        summary.counts[split] = len(items)
    write_dataset_info(dst, info)
    check_counts(summary, "bcss", EXPECTED)
    return summary


def resample_pair(image_path: Path, mask: np.ndarray, factor: float) -> np.ndarray:
    """Resize the saved image at ``image_path`` in place (area averaging) and return ``mask`` resized to the
    same size (nearest neighbour); the size is ``round(side x factor)``, at least 1 px."""
    from PIL import Image

    from pathseg.io import read_rgb, write_png

    h, w = mask.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = Image.fromarray(read_rgb(image_path)).resize(size, Image.Resampling.BOX)
    write_png(image_path, np.asarray(image))
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
