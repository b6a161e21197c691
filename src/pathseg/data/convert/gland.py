"""Shared writer of gland data sets (GlaS, CRAG): image + annotation pairs -> masks and instance maps."""

from __future__ import annotations

from pathlib import Path

from pathseg.data.convert.base import (
    ConvertConfig,
    ConvertSummary,
    binary_or_instances,
    progress,
    read_annotation,
    save_image,
    save_instances,
    save_mask,
)
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.errors import DataError

GLAND_CLASSES = [ClassInfo("background", 0, (0, 0, 0)), ClassInfo("gland", 1, (0, 200, 0))]

# One sample: (id, image file, annotation file or None).
Sample = tuple[str, Path, Path | None]


def write_gland_set(
    samples: dict[str, list[Sample]], dst: Path, cfg: ConvertConfig, info: DatasetInfo
) -> ConvertSummary:
    """Write image/annotation pairs as a canonical instance data set.

    The annotation is binary (``{0,1}`` or ``{0,255}``: instances are connected components) or
    instance-labelled (each value > 0 one gland). The mask is ``gland`` wherever the annotation is > 0.
    """
    summary = ConvertSummary()
    palette = info.palette()
    labelled = 0
    components = 0
    for split, items in samples.items():
        for sample_id, img_path, ann_path in progress(items, f"{info.name} {split}", cfg):
            h, w = save_image(img_path, dst / split / "images" / f"{sample_id}.png")
            if ann_path is None:
                continue
            ann = read_annotation(ann_path)
            if ann.shape != (h, w):
                raise DataError(f"annotation size {ann.shape[1]}x{ann.shape[0]} differs from image size {w}x{h}",
                                ann_path)
            fg, inst, was_instances = binary_or_instances(ann)
            labelled += was_instances
            components += not was_instances
            save_mask(dst / split / "masks" / f"{sample_id}.png", fg, palette)
            save_instances(dst / split / "instances" / f"{sample_id}.tif", inst)
        summary.counts[split] = len(items)
    summary.notes.append(f"instance maps: {labelled} from instance-labelled annotations, "
                         f"{components} from connected components of binary masks")
    write_dataset_info(dst, info)
    return summary
