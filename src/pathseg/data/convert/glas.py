"""GlaS (Warwick-QU gland segmentation challenge, MICCAI 2015).

Accepted source layouts:

* official: one folder (``Warwick QU Dataset (Released 2016_07_08)/``) holding ``train_<n>.bmp`` with
  ``train_<n>_anno.bmp``, the same for ``testA_<n>`` and ``testB_<n>``, and ``Grade.csv``;
* re-packed: ``<split>/images/<id>.png`` with ``<split>/masks/<id>.png`` and an optional ``grade.csv``.

Output: task ``instance``, classes background (0) / gland (1); instance maps from instance-labelled annotations
(the official ``_anno.bmp``) or connected components of binary masks; ``<split>/labels.csv`` with columns
``id,grade`` (``benign``/``malignant``, the GlaS grade) when a grade table is present.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pathseg.data.convert.base import (
    CONVERTERS,
    ConvertConfig,
    ConvertSummary,
    check_counts,
    find_dir,
    image_files,
    is_repacked,
    pair_by_stem,
    repacked_splits,
    write_labels,
)
from pathseg.data.convert.gland import GLAND_CLASSES, Sample, write_gland_set
from pathseg.data.layout import DatasetInfo
from pathseg.errors import DataError

EXPECTED = {"train": 85, "testA": 60, "testB": 20}
_OFFICIAL = re.compile(r"^(train|testA|testB)_\d+$")


def _official(root: Path) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}
    for img in image_files(root):
        match = _OFFICIAL.match(img.stem)
        if not match:
            continue
        anno = [p for p in image_files(root) if p.stem == f"{img.stem}_anno"]
        if not anno:
            raise DataError(f"image has no annotation ({img.stem}_anno.bmp)", img)
        samples.setdefault(match.group(1), []).append((img.stem, img, anno[0]))
    return samples


def repacked_samples(root: Path, mask_dir: str = "masks") -> dict[str, list[Sample]]:
    """Samples of a re-packed layout: ``<split>/images/<id>.*`` with ``<split>/<mask_dir>/<id>.*``."""
    samples: dict[str, list[Sample]] = {}
    for split in repacked_splits(root):
        samples[split] = list(pair_by_stem(root / split / "images", root / split / mask_dir))
    return samples


def _read_grades(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    col = next((i for i, h in enumerate(header) if h == "grade (glas)"), None)
    if col is None:
        col = next((i for i, h in enumerate(header) if h.startswith("grade")), None)
    if col is None or "name" not in header:
        raise DataError("grade table needs a 'name' and a 'grade (GlaS)' column", path)
    name = header.index("name")
    return {r[name].strip(): r[col].strip() for r in rows[1:] if len(r) > max(name, col)}


@CONVERTERS.register("glas")
def convert_glas(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert GlaS (see the module docstring for the accepted layouts)."""
    root = find_dir(src, lambda d: any(p.stem.endswith("_anno") for p in image_files(d)))
    if root is not None:
        samples = _official(root)
    else:
        root = find_dir(src, is_repacked)
        if root is None:
            raise DataError("no GlaS release found (expected train_1.bmp + train_1_anno.bmp, or "
                            "train/images + train/masks)", src)
        samples = repacked_samples(root)
    info = DatasetInfo(name="glas", task="instance", classes=list(GLAND_CLASSES), mpp=0.62,
                       source=f"GlaS (Warwick-QU) from {src}",
                       licence="GlaS challenge terms: research use only, no commercial use")
    summary = write_gland_set(samples, dst, cfg, info)
    grade_files = [p for d in dict.fromkeys([root, src, root.parent]) for p in sorted(d.glob("*"))
                   if p.name.lower() == "grade.csv"]
    if grade_files:
        grades = _read_grades(grade_files[0])
        for split, items in samples.items():
            rows = [[sid, grades[sid]] for sid, _, _ in items if sid in grades]
            missing = len(items) - len(rows)
            if missing:
                summary.warnings.append(f"glas {split}: {missing} images have no grade in {grade_files[0]}")
            if rows:
                write_labels(dst / split / "labels.csv", ["id", "grade"], rows)
        summary.notes.append(f"image labels: 'grade' from {grade_files[0]}")
    else:
        summary.warnings.append("glas: no grade.csv found; no image labels written")
    check_counts(summary, "glas", EXPECTED)
    return summary
