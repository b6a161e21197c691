"""Helpers of ``benchmarks/gpu_run.sh`` (not a test): the device copy of a comparison config, the joint unlabeled
set, and the JPEG re-encoding that makes GlaS + MoNuSeg fit the device tool's 64 MiB carry limit.

Usage::

    python benchmarks/gpu_config.py jpeg data/gpu --quality 90
    python benchmarks/gpu_config.py unlabeled OUT data/gpu/glas/train/images data/gpu/monuseg/train/images
    python benchmarks/gpu_config.py config configs/compare/glas_gpu_10min.yaml OUT.yaml --glas data/gpu/glas \
        --unlabeled OUT [--cpu]

``--cpu`` keeps every step of the config (methods, tasks, fractions) but shrinks every budget so that the same
pipeline runs in minutes on a CPU (the script's ``CPU=1`` mode).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("gpu_config")
#: Appended to every pretraining's overrides by --cpu (later overrides win).
CPU_PRETRAIN = ["trainer.max_steps=2", "trainer.accelerator=cpu", "trainer.precision=32-true", "batch_size=4",
                "num_workers=0", "crop_size=64", "method_args.queue_size=64", "checkpoint.every_n_steps=1"]
#: Appended to every task's overrides by --cpu.
CPU_TASK = ["trainer.max_steps=2", "trainer.val_every_steps=2", "trainer.batch_size=2", "trainer.num_workers=0",
            "trainer.accelerator=cpu", "trainer.precision=32-true", "crop_size=64", "inference.batch_size=8",
            "inference.overlap=0", "inference.num_examples=0"]


def to_jpeg(root: Path, quality: int) -> int:
    """Re-encode every ``*/images/*.png`` under ``root`` as JPEG (masks and instance maps stay lossless)."""
    from PIL import Image

    count = 0
    for png in sorted(root.glob("**/images/*.png")):
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), "JPEG", quality=quality)
        png.unlink()
        count += 1
    return count


def build_unlabeled(out: Path, sources: list[Path]) -> int:
    """One canonical ``unlabeled`` set whose split ``train`` holds the images of every source folder."""
    from pathseg.data.layout import DatasetInfo, write_dataset_info

    write_dataset_info(out, DatasetInfo(name="glas_monuseg_unlabeled", task="unlabeled"))
    images = out / "train" / "images"
    images.mkdir(parents=True, exist_ok=True)
    count = 0
    for src in sources:
        prefix = src.parent.parent.name  # data/gpu/<set>/train/images
        for f in sorted(src.iterdir()):
            shutil.copy(f, images / f"{prefix}_{f.name}")
            count += 1
    return count


def device_config(path: Path, glas: Path, unlabeled: Path, cpu: bool) -> dict[str, Any]:
    """The comparison config with the device's data paths (and, for ``cpu``, tiny budgets)."""
    cfg = yaml.safe_load(path.read_text())
    cfg["unlabeled"] = str(unlabeled)
    for task in cfg["tasks"]:
        task["data"] = str(glas)
        if cpu:
            task["overrides"] = [*task.get("overrides", []), *CPU_TASK]
            task["test_images"] = 2
    if cpu:
        cfg["seeds"] = cfg["seeds"][:1]
        for method in cfg["methods"]:
            if method.get("pretrain"):
                method["overrides"] = [*method.get("overrides", []), *CPU_PRETRAIN]
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("jpeg")
    j.add_argument("root", type=Path)
    j.add_argument("--quality", type=int, default=90)
    u = sub.add_parser("unlabeled")
    u.add_argument("out", type=Path)
    u.add_argument("sources", type=Path, nargs="+")
    c = sub.add_parser("config")
    c.add_argument("config", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--glas", type=Path, required=True)
    c.add_argument("--unlabeled", type=Path, required=True)
    c.add_argument("--cpu", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "jpeg":
        log.info("re-encoded %d images as JPEG q%d", to_jpeg(args.root, args.quality), args.quality)
    elif args.cmd == "unlabeled":
        log.info("unlabeled set %s: %d images", args.out, build_unlabeled(args.out, args.sources))
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(yaml.safe_dump(device_config(args.config, args.glas, args.unlabeled, args.cpu),
                                           sort_keys=False))
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
