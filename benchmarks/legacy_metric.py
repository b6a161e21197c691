"""The URL original's per-batch Dice/IoU (``pathseg.metrics.legacy``) against pathseg's pooled metric on real masks.

Crude, model-free predictors (a smoothed Otsu threshold of the grey image, everything gland, everything
background) on a split of a binary data set (GlaS testA by default), so that the numbers only compare the two
metrics on the same predictions:

    .venv/bin/python benchmarks/legacy_metric.py [--data DIR/testA]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage.filters import gaussian, threshold_otsu

from pathseg.io import read_mask, read_rgb
from pathseg.metrics import ConfusionMatrix
from pathseg.metrics.legacy import LegacyPerBatchScores, legacy_tiles


def _otsu(grey: np.ndarray) -> np.ndarray:
    smooth = gaussian(grey, 4)
    return np.asarray(smooth < threshold_otsu(smooth))


RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "otsu_dark_smoothed": _otsu,
    "all_gland": lambda g: np.ones_like(g, bool),
    "all_background": lambda g: np.zeros_like(g, bool),
}


def main() -> None:
    """Print pooled and legacy mIoU / mDice per predictor."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/glas/testA"))
    args = p.parse_args()
    names = sorted(q.name for q in (args.data / "images").glob("*.png"))
    for name, rule in RULES.items():
        cm, old = ConfusionMatrix(2), LegacyPerBatchScores(2)
        for n in names:
            gt = read_mask(args.data / "masks" / n).astype(np.int64)
            gt = np.where(gt == 255, 1, np.minimum(gt, 1)) if gt.max() > 1 else gt  # 0/255 or 0/1 masks
            pred = rule(read_rgb(args.data / "images" / n).mean(-1) / 255.0).astype(np.int64)
            cm.update(pred, gt)
            for tp, tt in legacy_tiles(pred, gt):
                old.update(tp, tt)
        a, b = cm.compute(), old.compute()
        print(f"{name:20s} pooled mIoU {a['miou']:.4f} mDice {a['mdice']:.4f} | legacy mIoU "
              f"{b['legacy_per_batch_miou']:.4f} mDice {b['legacy_per_batch_mdice']:.4f} | "
              f"{len(names)} images, {b['legacy_per_batch_batches']} batches")


if __name__ == "__main__":
    main()
