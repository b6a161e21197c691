"""SLIC (scikit-image, pathseg's default) against SLICO (OpenCV ``ximgproc``, the URL original) at URL's settings.

Both run through :func:`pathseg.ssl.url.superpixels.compute_superpixels` (region size 32, compactness/ruler 10,
10 iterations, no smoothing; scikit-image with ``slic_zero``) on real GlaS training images, and the script prints,
per backend: superpixels per image, mean superpixel size, boundary recall and under-segmentation error against the
GlaS gland masks, and the time per image; then the ratios SLICO / SLIC and how well the two partitions agree (mean
best IoU of every SLICO superpixel with a SLIC one, and the reverse). A fixed 32-px grid (the original's
``fixed_sp`` ablation) is printed as a reference for both.

    .venv/bin/python benchmarks/superpixels.py [--data /work/shared/data/glas/train] [--images 10]

Boundary recall: the share of mask-boundary pixels that lie within ``--tolerance`` pixels (2) of a superpixel
boundary. Under-segmentation error (Neubert and Protzel 2012): ``(1/N) Σ_G Σ_{S ∩ G ≠ ∅} min(|S ∩ G|, |S \\ G|)``
over the connected regions ``G`` of the mask (glands and background).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from pathseg.io import read_mask, read_rgb
from pathseg.ssl.url.config import SuperpixelConfig
from pathseg.ssl.url.superpixels import compute_superpixels


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1] |= labels[:-1] != labels[1:]
    return edge


def boundary_recall(sp: np.ndarray, gt: np.ndarray, tolerance: int = 2) -> float:
    """Share of ground-truth boundary pixels within ``tolerance`` pixels of a superpixel boundary."""
    gt_edge = boundaries(gt)
    near = ndimage.binary_dilation(boundaries(sp), iterations=tolerance) if tolerance else boundaries(sp)
    return float((near & gt_edge).sum() / max(gt_edge.sum(), 1))


def undersegmentation_error(sp: np.ndarray, gt: np.ndarray) -> float:
    """Neubert and Protzel's corrected under-segmentation error."""
    n_sp, n_gt = int(sp.max()) + 1, int(gt.max()) + 1
    joint = np.bincount(gt.ravel() * n_sp + sp.ravel(), minlength=n_gt * n_sp).reshape(n_gt, n_sp)
    size = joint.sum(0, keepdims=True)
    return float(np.minimum(joint, size - joint)[joint > 0].sum() / gt.size)


def best_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the superpixels of ``a`` of their best IoU with a superpixel of ``b``."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = np.bincount(a.ravel() * nb + b.ravel(), minlength=na * nb).reshape(na, nb).astype(np.float64)
    union = joint.sum(1, keepdims=True) + joint.sum(0, keepdims=True) - joint
    return float((joint / np.maximum(union, 1)).max(1).mean())


def regions(mask: np.ndarray) -> np.ndarray:
    """Connected regions of a binary mask, glands and background alike, as ids ``0..N-1``."""
    fg, n_fg = ndimage.label(mask > 0)
    bg, _ = ndimage.label(mask == 0)
    return np.where(mask > 0, fg - 1, bg + n_fg - 1).astype(np.int64)


def run(data: Path, count: int, tolerance: int) -> dict[str, dict[str, float]]:
    """Mean statistics of both backends over the first ``count`` images (sorted names) of ``data/images``."""
    names = sorted(p.name for p in (data / "images").glob("*.png"))[:count]
    configs = {"slic": SuperpixelConfig(backend="slic"), "slico": SuperpixelConfig(backend="opencv_slico"),
               "grid": SuperpixelConfig(backend="grid")}
    stats: dict[str, dict[str, list[float]]] = {k: {} for k in (*configs, "agreement")}
    for name in names:
        rgb, gt = read_rgb(data / "images" / name), regions(read_mask(data / "masks" / name))
        maps = {}
        for key, cfg in configs.items():
            t0 = time.perf_counter()
            sp = compute_superpixels(rgb, cfg).astype(np.int64)
            seconds = time.perf_counter() - t0
            maps[key] = sp
            values = {"segments": float(sp.max() + 1), "mean_size_px": sp.size / float(sp.max() + 1),
                      "boundary_recall": boundary_recall(sp, gt, tolerance),
                      "undersegmentation_error": undersegmentation_error(sp, gt), "seconds": seconds}
            for k, v in values.items():
                stats[key].setdefault(k, []).append(v)
        stats["agreement"].setdefault("best_iou_slico_to_slic", []).append(best_iou(maps["slico"], maps["slic"]))
        stats["agreement"].setdefault("best_iou_slic_to_slico", []).append(best_iou(maps["slic"], maps["slico"]))
        stats["agreement"].setdefault("best_iou_slico_to_grid", []).append(best_iou(maps["slico"], maps["grid"]))
        stats["agreement"].setdefault("best_iou_slic_to_grid", []).append(best_iou(maps["slic"], maps["grid"]))
    return {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in stats.items()}


def main() -> None:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/glas/train"))
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--tolerance", type=int, default=2)
    args = p.parse_args()
    res = run(args.data, args.images, args.tolerance)
    print(f"{args.images} images of {args.data}; region 32, compactness/ruler 10, 10 iterations")
    print(f"{'metric':26s} {'SLIC (skimage)':>15s} {'SLICO (cv2)':>12s} {'SLICO/SLIC':>11s} {'grid 32':>9s}")
    for metric in res["slic"]:
        a, b, g = res["slic"][metric], res["slico"][metric], res["grid"][metric]
        print(f"{metric:26s} {a:15.4f} {b:12.4f} {b / a if a else float('nan'):11.3f} {g:9.4f}")
    for metric, v in res["agreement"].items():
        print(f"{metric:26s} {v:15.4f}")


if __name__ == "__main__":
    main()
