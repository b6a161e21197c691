"""Write synthetic data sets in the canonical layout (see :mod:`pathseg.data.layout`).

Every data set also gets ``synth.json``: the generator parameters and the tissue class table. Per kind:

* ``segmentation``: ``images/`` + ``masks/`` (tissue classes).
* ``instance``: ``images/`` + ``instances/<id>.tif`` (uint16 nucleus ids, uint32 beyond 65535)
  + ``masks/`` (0 background, 1 nucleus)
  + ``instance_classes/<id>.json`` (every id -> 1, the nucleus class). The tissue class of each nucleus
  (tumour, stroma, lymphocytes) is recorded in ``synth.json`` under ``nucleus_tissue_class``.
* ``patch_labels``: ``images/`` + ``masks/`` + ``labels.csv`` with one 0/1 column per tissue class (a class is
  present when it covers at least ``min_coverage`` of the image); background is ``exclude_index``.
* ``classification``: ``images/`` + ``labels.csv`` (``id,label``; the class covering most of the image).
* ``unlabeled``: ``images/`` only.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.io import atomic_write_text, staging_dir, write_png
from pathseg.runs import write_json
from pathseg.synth.classes import BACKGROUND, TISSUE_CLASSES
from pathseg.synth.config import DEFAULT_SPLITS, SynthConfig, parse_splits, split_counts
from pathseg.synth.render import SynthSample, class_fractions, generate_sample

NUCLEUS_CLASSES = [ClassInfo("background", 0, (0, 0, 0)), ClassInfo("nucleus", 1, (40, 40, 200))]


def tissue_class_infos() -> list[ClassInfo]:
    """The tissue classes as :class:`ClassInfo` entries."""
    return [ClassInfo(c.name, c.index, c.color) for c in TISSUE_CLASSES]


def dataset_info(cfg: SynthConfig) -> DatasetInfo:
    """The ``dataset.yaml`` contents for a synthetic data set of ``cfg.kind``."""
    source = f"pathseg synth --kind {cfg.kind} --n {cfg.n} --size {cfg.image_size} --seed {cfg.seed}"
    common = {"name": f"synth-{cfg.kind}", "mpp": cfg.mpp, "source": source, "licence": "CC0 (generated)"}
    if cfg.kind == "instance":
        return DatasetInfo(task="instance", classes=list(NUCLEUS_CLASSES), **common)  # type: ignore[arg-type]
    if cfg.kind == "patch_labels":
        return DatasetInfo(task="patch_labels", classes=tissue_class_infos(), exclude_index=BACKGROUND,
                           **common)  # type: ignore[arg-type]
    if cfg.kind == "unlabeled":
        return DatasetInfo(task="unlabeled", classes=[], **common)  # type: ignore[arg-type]
    return DatasetInfo(task=cfg.kind, classes=tissue_class_infos(), **common)  # type: ignore[arg-type]


def sample_for(cfg: SynthConfig, index: int) -> SynthSample:
    """Image ``index`` of the data set described by ``cfg`` (classification images have a dominant class)."""
    dominant = index % len(TISSUE_CLASSES) if cfg.kind == "classification" else None
    return generate_sample(cfg.seed, index, cfg.image_size, cfg.mpp, dominant=dominant)


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _write_sample(split_dir: Path, sid: str, s: SynthSample, cfg: SynthConfig) -> list[str] | None:
    """Write one sample's files; returns its labels.csv row, if the kind has one."""
    import tifffile

    write_png(split_dir / "images" / f"{sid}.png", s.image)
    names = [c.name for c in TISSUE_CLASSES]
    if cfg.kind in ("segmentation", "patch_labels"):
        write_png(split_dir / "masks" / f"{sid}.png", s.mask)
    if cfg.kind == "instance":
        write_png(split_dir / "masks" / f"{sid}.png", (s.instances > 0).astype(np.uint8))
        (split_dir / "instances").mkdir(parents=True, exist_ok=True)
        dtype = np.uint16 if s.instances.max() < 2**16 else np.uint32
        tifffile.imwrite(split_dir / "instances" / f"{sid}.tif", s.instances.astype(dtype), compression="zlib")
        table = {str(i): 1 for i in sorted(s.instance_classes)}
        atomic_write_text(split_dir / "instance_classes" / f"{sid}.json", json.dumps(table) + "\n")
    frac = class_fractions(s.mask)
    if cfg.kind == "patch_labels":
        return [sid] + [str(int(frac[c.index] >= cfg.min_coverage)) for c in TISSUE_CLASSES if c.index != BACKGROUND]
    if cfg.kind == "classification":
        return [sid, names[int(np.argmax(frac))]]
    return None


def write_synth_dataset(cfg: SynthConfig, progress: bool = True) -> dict[str, int]:
    """Generate and write a tile data set (all kinds but ``slide``) under ``cfg.out``, atomically.

    Returns:
        Images per split.
    """
    splits = parse_splits(cfg.splits or (["train:1"] if cfg.kind == "unlabeled" else DEFAULT_SPLITS))
    counts = split_counts(cfg.n, splits)
    start = time.time()
    nucleus_types: dict[str, dict[str, int]] = {}
    with staging_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        write_dataset_info(tmp, dataset_info(cfg))
        index = 0
        for split, count in counts:
            split_dir = tmp / split
            (split_dir / "images").mkdir(parents=True, exist_ok=True)
            rows: list[list[str]] = []
            for _ in range(count):
                sid = f"synth_{index:05d}"
                s = sample_for(cfg, index)
                row = _write_sample(split_dir, sid, s, cfg)
                if row is not None:
                    rows.append(row)
                if cfg.kind == "instance":
                    nucleus_types[sid] = {str(k): v for k, v in sorted(s.instance_classes.items())}
                index += 1
            if cfg.kind == "patch_labels":
                header = ["id"] + [c.name for c in TISSUE_CLASSES if c.index != BACKGROUND]
                atomic_write_text(split_dir / "labels.csv", _csv_text([header, *rows]))
            elif cfg.kind == "classification":
                atomic_write_text(split_dir / "labels.csv", _csv_text([["id", "label"], *rows]))
            if progress:
                print(f"synth: {split}: {count} images ({time.time() - start:.1f} s)", flush=True)
        meta = synth_metadata(cfg)
        if nucleus_types:
            meta["nucleus_tissue_class"] = nucleus_types
        write_json(tmp / "synth.json", meta)
    return dict(counts)


def synth_metadata(cfg: SynthConfig) -> dict[str, object]:
    """Generator parameters and the tissue class table, written as ``synth.json``."""
    return {
        "generator": "pathseg.synth",
        "kind": cfg.kind,
        "n": cfg.n,
        "size": cfg.image_size,
        "seed": cfg.seed,
        "mpp": cfg.mpp,
        "tissue_classes": [
            {"index": c.index, "name": c.name, "color": list(c.color),
             "nucleus_semi_major_um": list(c.nuclei.semi_major_um) if c.nuclei else None,
             "nuclei_per_1000um2": c.nuclei.density if c.nuclei else None}
            for c in TISSUE_CLASSES
        ],
    }
