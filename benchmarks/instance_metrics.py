"""Benchmark ``pathseg.metrics.instance_metrics`` against a straightforward per-object loop implementation.

A 1000x1000 map with about 1,000 touching objects (Voronoi cells clipped to discs) and a perturbed prediction
(shifted, some objects merged, split, dropped and invented). Both implementations run in the same process; the
script prints both timings, their ratio and whether every value agrees (relative tolerance 1e-9).

    .venv/bin/python benchmarks/instance_metrics.py [--size 1000] [--objects 1000] [--repeat 3]

The loop implementation (:func:`reference_metrics`) follows the textual definitions object by object with full-size
boolean masks, as the challenge scripts do; the tests reuse it as an independent oracle on small maps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import directed_hausdorff


def _hausdorff(pa: np.ndarray, pb: np.ndarray) -> float:
    return float(max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0]))


def _mode_nonzero(values: np.ndarray) -> int:
    values = values[values > 0]
    if values.size == 0:
        return 0
    ids, counts = np.unique(values, return_counts=True)
    return int(ids[np.argmax(counts)])  # ties: smallest id, as MATLAB's mode


def _pairs(pred: np.ndarray, true: np.ndarray, p_ids: list[int], t_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Intersections and unions ``[n_true, n_pred]``, object by object (overlapping pairs only, as HoVer-Net)."""
    col = {i: b for b, i in enumerate(p_ids)}
    inter = np.zeros((len(t_ids), len(p_ids)))
    union = np.zeros((len(t_ids), len(p_ids)))
    for a, j in enumerate(t_ids):
        t_mask = true == j
        for i in np.unique(pred[t_mask]):
            if i == 0:
                continue
            p_mask = pred == i
            inter[a, col[int(i)]] = np.logical_and(t_mask, p_mask).sum()
            union[a, col[int(i)]] = np.logical_or(t_mask, p_mask).sum()
    return inter, union


def _aji(inter: np.ndarray, union: np.ndarray, t_area: np.ndarray, p_area: np.ndarray, plus: bool) -> float:
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if plus:
        rows, cols = linear_sum_assignment(-iou)
    else:
        rows, cols = np.arange(len(t_area)), np.argmax(iou, axis=1)
    num = den = 0.0
    t_done, p_done = set(), set()
    for a, b in zip(rows, cols):
        if iou[a, b] > 0:
            num += inter[a, b]
            den += union[a, b]
            t_done.add(int(a))
            p_done.add(int(b))
    den += sum(t_area[a] for a in range(len(t_area)) if a not in t_done)
    den += sum(p_area[b] for b in range(len(p_area)) if b not in p_done)
    return float(num / den)


def _glas(own: np.ndarray, own_ids: list[int], other: np.ndarray, coords: dict[int, np.ndarray]) -> tuple[float, float]:
    """One half of object Dice and object Hausdorff: Σ ω·Dice and Σ ω·H over the objects of ``own``."""
    total = (own > 0).sum()
    dice = haus = 0.0
    for i in own_ids:
        m = own == i
        k = _mode_nonzero(other[m])
        w = m.sum() / total
        if k:
            o = other == k
            dice += w * 2 * np.logical_and(m, o).sum() / (m.sum() + o.sum())
            haus += w * _hausdorff(np.argwhere(m), coords[k])
        else:
            haus += w * min(_hausdorff(np.argwhere(m), c) for c in coords.values())
    return dice, haus


def reference_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Every metric of :func:`pathseg.metrics.instance_metrics` by explicit loops over objects."""
    p_ids = [int(i) for i in np.unique(pred) if i != 0]
    t_ids = [int(i) for i in np.unique(true) if i != 0]
    if not p_ids or not t_ids:
        both = float(not p_ids and not t_ids)
        return {"aji": both, "aji_plus": both, "dq": both, "sq": both, "pq": both, "object_f1": both,
                "object_dice": both, "object_hausdorff": 0.0 if both else float("inf"), "dice": both}
    inter, union = _pairs(pred, true, p_ids, t_ids)
    t_area = np.array([(true == j).sum() for j in t_ids], float)
    p_area = np.array([(pred == i).sum() for i in p_ids], float)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matched = [iou[a, b] for a in range(len(t_ids)) for b in range(len(p_ids)) if iou[a, b] > 0.5]
    tp = len(matched)
    dq = tp / (tp + 0.5 * (len(p_ids) - tp) + 0.5 * (len(t_ids) - tp))
    sq = float(np.mean(matched)) if tp else 0.0
    tp_glas = 0
    for i in p_ids:
        m = pred == i
        g = _mode_nonzero(true[m])
        if g and np.logical_and(m, true == g).sum() / (true == g).sum() > 0.5:
            tp_glas += 1
    fp, fn = len(p_ids) - tp_glas, len(t_ids) - tp_glas
    p_coords = {i: np.argwhere(pred == i) for i in p_ids}
    t_coords = {j: np.argwhere(true == j) for j in t_ids}
    d1, h1 = _glas(pred, p_ids, true, t_coords)
    d2, h2 = _glas(true, t_ids, pred, p_coords)
    fg_i = np.logical_and(pred > 0, true > 0).sum()
    return {"aji": _aji(inter, union, t_area, p_area, False), "aji_plus": _aji(inter, union, t_area, p_area, True),
            "dq": dq, "sq": sq, "pq": dq * sq, "object_f1": 2 * tp_glas / (2 * tp_glas + fp + fn),
            "object_dice": (d1 + d2) / 2, "object_hausdorff": (h1 + h2) / 2,
            "dice": float(2 * fg_i / ((pred > 0).sum() + (true > 0).sum()))}


def synthetic_pair(size: int, objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ground-truth map of ~``objects`` touching blobs and a perturbed prediction (non-contiguous ids)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int64)
    ys, xs = rng.integers(0, size, objects), rng.integers(0, size, objects)
    seeds[ys, xs] = np.arange(1, objects + 1)
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    true = np.where(dist < 0.55 * size / np.sqrt(objects), seeds[iy, ix], 0)
    pred = np.roll(true, (2, -1), axis=(0, 1)).copy()
    ids = np.unique(pred)[1:]
    drop = rng.choice(ids, len(ids) // 20, replace=False)
    pred[np.isin(pred, drop)] = 0
    from scipy.spatial import cKDTree

    merge = rng.choice(ids, len(ids) // 20, replace=False)  # merged into the object of the nearest seed
    nearest = cKDTree(np.stack([ys, xs], 1)).query(np.stack([ys[merge - 1], xs[merge - 1]], 1), k=2)[1][:, 1] + 1
    lut = np.arange(pred.max() + 1)
    lut[merge] = nearest
    pred = lut[pred]
    split = rng.choice(ids, len(ids) // 20, replace=False)
    yy = np.arange(size)[:, None].repeat(size, 1)
    pred = np.where(np.isin(pred, split) & (yy % 16 < 8), pred + 5 * objects, pred)
    for _ in range(len(ids) // 20):  # invented objects in the background
        y, x = rng.integers(0, size - 8, 2)
        region = pred[y : y + 6, x : x + 6]
        region[region == 0] = 7 * objects + int(rng.integers(1, 10**6))
    return pred * 3 + 11 * (pred > 0), true


def main() -> None:
    """Run the benchmark and print timings, ratio and agreement."""
    from pathseg.metrics import instance_metrics

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pred, true = synthetic_pair(args.size, args.objects)
    print(f"map {args.size}x{args.size}: {len(np.unique(true)) - 1} true, {len(np.unique(pred)) - 1} predicted objects")
    fast_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fast = instance_metrics(pred, true)
        fast_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = reference_metrics(pred, true)
    t_ref = time.perf_counter() - t0
    t_fast = min(fast_times)
    equal = all(np.isclose(fast[k], ref[k], rtol=1e-9, atol=0) for k in ref)  # type: ignore[arg-type]
    for k in ref:
        print(f"  {k:17s} contingency {fast[k]:.10f}  loop {ref[k]:.10f}")
    print(f"contingency-table implementation: {t_fast:.3f} s (best of {args.repeat})")
    print(f"per-object loop implementation:   {t_ref:.3f} s")
    print(f"ratio: {t_ref / t_fast:.1f}x faster; values equal: {equal}")


if __name__ == "__main__":
    main()
