"""CRAG (colorectal adenocarcinoma gland data set, Graham et al. 2019): gland instances.

Accepted source layouts:

* official: ``CRAG/train/Images/*.png`` with ``CRAG/train/Annotation/*.png`` (instance-labelled), and
  ``CRAG/valid/Images`` + ``CRAG/valid/Annotation`` (written as split ``test``);
* re-packed: ``<split>/images/*.png`` with ``<split>/masks/*.png`` (instance-labelled or binary).

Output: task ``instance``, classes background (0) / gland (1), masks and instance maps as for GlaS.
"""

from __future__ import annotations

from pathlib import Path

from pathseg.data.convert.base import (
    CONVERTERS,
    ConvertConfig,
    ConvertSummary,
    check_counts,
    find_dir,
    is_repacked,
    pair_by_stem,
)
from pathseg.data.convert.gland import GLAND_CLASSES, Sample, write_gland_set
from pathseg.data.convert.glas import repacked_samples
from pathseg.data.layout import DatasetInfo
from pathseg.errors import DataError

EXPECTED = {"train": 173, "test": 40}
_SPLITS = {"train": "train", "valid": "test", "test": "test"}


def _official(root: Path) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}
    for folder, split in _SPLITS.items():
        d = root / folder
        if not (d / "Images").is_dir():
            continue
        samples[split] = list(pair_by_stem(d / "Images", d / "Annotation", "annotation"))
    return samples


@CONVERTERS.register("crag")
def convert_crag(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert CRAG (see the module docstring for the accepted layouts)."""
    root = find_dir(src, lambda d: any((d / f / "Images").is_dir() for f in _SPLITS))
    if root is not None:
        samples = _official(root)
    else:
        root = find_dir(src, is_repacked)
        if root is None:
            raise DataError("no CRAG release found (expected train/Images + train/Annotation)", src)
        samples = repacked_samples(root)
    info = DatasetInfo(name="crag", task="instance", classes=list(GLAND_CLASSES), mpp=0.55,
                       source=f"CRAG (Graham et al. 2019) from {src}", licence="research use (see the release)")
    summary = write_gland_set(samples, dst, cfg, info)
    check_counts(summary, "crag", EXPECTED)
    return summary
