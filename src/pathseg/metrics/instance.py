"""Instance-segmentation metrics of the gland and nucleus literature, all from one contingency table.

Per image, :func:`instance_metrics` compares two integer instance maps (0 = background, ids arbitrary):

* ``aji`` — aggregated Jaccard index as distributed with MoNuSeg (Kumar et al., IEEE TMI 2017): every ground-truth
  object is paired with the prediction of highest IoU (a prediction may serve several); AJI = Σ|G∩S| / (Σ|G∪S| +
  areas of unpaired ground-truth objects + areas of predictions used by no pair). ``aji_plus`` uses a one-to-one
  pairing maximising the total IoU (Hungarian algorithm; Graham et al., HoVer-Net, MedIA 2019).
* ``dq``, ``sq``, ``pq`` — panoptic quality (Kirillov et al., CVPR 2019) with the unique matching at IoU > 0.5.
* ``object_f1``, ``object_dice``, ``object_hausdorff`` — the GlaS challenge definitions (Sirinukunwattana et al.,
  MedIA 2017), "overlaps most" counting object pixels only (background excluded).
* ``dice`` — binary foreground Dice (``legacy_dice=True``: the UNIT code's ``2(I+1)/(|P|+|T|+1)``).

Empty maps follow the official evaluations: both empty → 1 for every score (Hausdorff 0); exactly one empty → 0
(Hausdorff ``inf``). Pairings come from ``np.bincount`` of ``pred * (n_true + 1) + true``; only the Hausdorff
distances loop, over the distinct matched pairs, each on the pair's bounding box. :class:`InstanceMetricAccumulator`
averages a split; :func:`pathseg.metrics.coco.coco_ap` scores ranked instances. Definitions: ``docs/instance.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

KD_FACTOR, KD_MIN = 32, 4096  # joint boxes larger than this use edge k-d trees instead of distance transforms
KEYS = ("aji", "aji_plus", "dq", "sq", "pq", "object_f1", "object_dice", "object_hausdorff", "dice")


def relabel(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the ids of an instance map to ``0..n`` keeping their order (0 stays background); returns ``(map, n)``.

    Raises:
        ValueError: Not an integer map, or negative ids.
    """
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"instance maps must hold integers, got {a.dtype}")
    if a.size == 0:
        return a.astype(np.int64), 0
    top = int(a.max())
    if int(a.min()) < 0:
        raise ValueError("instance ids must be >= 0")
    if top <= 4 * a.size + 1024:
        present = np.bincount(a.ravel(), minlength=top + 1) > 0
        present[0] = True
        lut = np.cumsum(present) - 1
        return lut[a], int(present.sum() - 1)
    ids, inv = np.unique(a, return_inverse=True)
    inv = inv.reshape(a.shape) + (0 if ids[0] == 0 else 1)
    return inv.astype(np.int64), int(len(ids) - (ids[0] == 0))


@dataclass
class Overlap:
    """The contingency table of two relabelled maps, kept sparse.

    Attributes:
        pred_area: Pixels per prediction id (index 0 = background), length ``n_pred + 1``.
        true_area: Pixels per ground-truth id, length ``n_true + 1``.
        pi: Prediction id of each overlapping object pair (both ids > 0).
        ti: Ground-truth id of each pair.
        inter: Intersection of each pair (> 0).
    """

    pred_area: np.ndarray
    true_area: np.ndarray
    pi: np.ndarray
    ti: np.ndarray
    inter: np.ndarray

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return len(self.pred_area) - 1

    @property
    def n_true(self) -> int:
        """Number of ground-truth objects."""
        return len(self.true_area) - 1

    @property
    def iou(self) -> np.ndarray:
        """IoU of each pair."""
        return self.inter / (self.pred_area[self.pi] + self.true_area[self.ti] - self.inter)


def contingency(pred: np.ndarray, true: np.ndarray, n_pred: int, n_true: int) -> Overlap:
    """:class:`Overlap` of two relabelled maps (``relabel``) from one ``bincount`` (``np.unique`` when huge)."""
    p, t = pred.ravel().astype(np.int64), true.ravel().astype(np.int64)
    width = n_true + 1
    code = p * width + t
    cells = (n_pred + 1) * width
    if cells <= max(4 * code.size, 1 << 22):
        counts = np.bincount(code, minlength=cells)
        codes = np.flatnonzero(counts)
        counts = counts[codes]
    else:
        codes, counts = np.unique(code, return_counts=True)
    pi, ti = codes // width, codes % width
    keep = (pi > 0) & (ti > 0)
    return Overlap(np.bincount(p, minlength=n_pred + 1).astype(np.float64),
                   np.bincount(t, minlength=width).astype(np.float64),
                   pi[keep], ti[keep], counts[keep].astype(np.float64))


def _first_per_group(group: np.ndarray, score: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Indices of the pair with the highest ``score`` per ``group`` value (ties: smallest ``other``)."""
    order = np.lexsort((other, -score, group))
    g = group[order]
    first = np.ones(len(g), bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def _aji(ov: Overlap) -> float:
    best = _first_per_group(ov.ti, ov.iou, ov.pi)
    used = np.zeros(ov.n_pred + 1, bool)
    used[ov.pi[best]] = True
    paired = np.zeros(ov.n_true + 1, bool)
    paired[ov.ti[best]] = True
    inter = ov.inter[best].sum()
    union = (ov.pred_area[ov.pi[best]] + ov.true_area[ov.ti[best]] - ov.inter[best]).sum()
    union += ov.true_area[1:][~paired[1:]].sum() + ov.pred_area[1:][~used[1:]].sum()
    return float(inter / union)


def _one_to_one(ov: Overlap) -> np.ndarray:
    """Pair indices of the one-to-one matching maximising the total IoU (isolated pairs directly, the rest by
    one Hungarian solve over the objects that overlap several others)."""
    from scipy.optimize import linear_sum_assignment

    deg_p, deg_t = np.bincount(ov.pi, minlength=ov.n_pred + 1), np.bincount(ov.ti, minlength=ov.n_true + 1)
    simple = (deg_p[ov.pi] == 1) & (deg_t[ov.ti] == 1)
    chosen = [np.flatnonzero(simple)]
    rest = np.flatnonzero(~simple)
    if len(rest):
        ps, prow = np.unique(ov.pi[rest], return_inverse=True)
        ts, tcol = np.unique(ov.ti[rest], return_inverse=True)
        iou = np.zeros((len(ps), len(ts)))
        index = np.full((len(ps), len(ts)), -1)
        iou[prow, tcol] = ov.iou[rest]
        index[prow, tcol] = rest
        rows, cols = linear_sum_assignment(iou, maximize=True)
        picked = index[rows, cols]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def _aji_plus(ov: Overlap) -> float:
    m = _one_to_one(ov)
    inter = ov.inter[m].sum()
    union = (ov.pred_area[ov.pi[m]] + ov.true_area[ov.ti[m]] - ov.inter[m]).sum()
    unmatched = ov.pred_area[1:].sum() + ov.true_area[1:].sum() - ov.pred_area[ov.pi[m]].sum() \
        - ov.true_area[ov.ti[m]].sum()
    return float(inter / (union + unmatched))


def _pq(ov: Overlap) -> tuple[float, float, float]:
    iou = ov.iou
    matched = iou > 0.5  # unique: two objects cannot both overlap a third by more than half
    tp = int(matched.sum())
    fp, fn = ov.n_pred - tp, ov.n_true - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou[matched].mean()) if tp else 0.0
    return dq, sq, dq * sq


def _most_overlapped(ov: Overlap, from_pred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every object of one map that overlaps the other: ``(its id, the other's id it overlaps most, inter)``."""
    own, other = (ov.pi, ov.ti) if from_pred else (ov.ti, ov.pi)
    best = _first_per_group(own, ov.inter, other)
    return own[best], other[best], ov.inter[best]


def _glas_counts(ov: Overlap) -> tuple[int, int, int]:
    _, g, inter = _most_overlapped(ov, from_pred=True)
    tp = int((inter / ov.true_area[g] > 0.5).sum())
    return tp, ov.n_pred - tp, ov.n_true - tp


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _object_dice(ov: Overlap) -> float:
    total = 0.0
    for from_pred in (True, False):
        own_area, other_area = (ov.pred_area, ov.true_area) if from_pred else (ov.true_area, ov.pred_area)
        own, other, inter = _most_overlapped(ov, from_pred)
        dice = 2 * inter / (own_area[own] + other_area[other])
        total += float((own_area[own] * dice).sum() / own_area[1:].sum())
    return total / 2


def _boxes(lab: np.ndarray, n: int) -> np.ndarray:
    """Inclusive bounding boxes ``[n + 1, 4]`` (y0, x0, y1, x1) of the ids of a relabelled map (row 0 unused)."""
    from scipy import ndimage

    out = np.zeros((n + 1, 4), np.int64)
    for i, sl in enumerate(ndimage.find_objects(lab, max_label=n), start=1):
        if sl is not None:
            out[i] = (sl[0].start, sl[1].start, sl[0].stop - 1, sl[1].stop - 1)
    return out


class _Maps:
    """One relabelled map prepared for Hausdorff distances: bounding boxes and areas; for spread-out objects also
    the pixels grouped per object (one stable sort), object edges (pixels with a 4-neighbour of another id: a
    nearest point of an object seen from outside is always one) and a k-d tree per object edge, built on demand."""

    def __init__(self, lab: np.ndarray, n: int) -> None:
        self.lab, self.n, self.flat, self.width = lab, n, lab.ravel(), lab.shape[1]
        self.area = np.bincount(self.flat, minlength=n + 1)
        self.boxes = _boxes(lab, n)
        self._order: np.ndarray | None = None
        self._edge: np.ndarray | None = None
        self._trees: dict[int, Any] = {}

    def pixels(self, i: int) -> np.ndarray:
        """Flat indices of object ``i``."""
        if self._order is None:
            self._order = np.argsort(self.flat.astype(np.uint16) if self.n < 65536 else self.flat, kind="stable")
            self._start = np.concatenate([[0], np.cumsum(self.area)])
        return self._order[self._start[i]:self._start[i + 1]]

    def coords(self, flat_idx: np.ndarray) -> np.ndarray:
        """``[N, 2]`` row/column coordinates of flat indices."""
        return np.stack(np.divmod(flat_idx, self.width), axis=1)

    def tree(self, i: int) -> Any:
        """k-d tree of the edge pixels of object ``i``."""
        if i not in self._trees:
            from scipy.spatial import cKDTree

            if self._edge is None:
                edge = np.zeros(self.lab.shape, bool)
                for axis in (0, 1):
                    diff = np.diff(self.lab, axis=axis) != 0
                    lo, hi = [slice(None)] * 2, [slice(None)] * 2
                    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
                    edge[tuple(lo)] |= diff
                    edge[tuple(hi)] |= diff
                self._edge = edge.ravel()
            px = self.pixels(i)
            self._trees[i] = cKDTree(self.coords(px[self._edge[px]]))
        return self._trees[i]


def _directed(a: _Maps, ia: int, b: _Maps, ib: int) -> float:
    """Largest distance from a pixel of object ``ia`` of ``a`` to object ``ib`` of ``b`` (0 inside it)."""
    px = a.pixels(ia)
    outside = px[b.flat[px] != ib]
    if outside.size == 0:
        return 0.0
    return float(b.tree(ib).query(a.coords(outside))[0].max())


def _pair_hausdorff(a: _Maps, ia: int, b: _Maps, ib: int) -> float:
    """Exact Hausdorff distance between the pixel sets of object ``ia`` of ``a`` and ``ib`` of ``b``: Euclidean
    distance transforms on the pair's joint box, or edge k-d trees when that box is mostly empty."""
    from scipy.ndimage import distance_transform_edt

    box_a, box_b = a.boxes[ia], b.boxes[ib]
    y0, x0 = min(box_a[0], box_b[0]), min(box_a[1], box_b[1])
    y1, x1 = max(box_a[2], box_b[2]) + 1, max(box_a[3], box_b[3]) + 1
    if (y1 - y0) * (x1 - x0) > KD_FACTOR * (a.area[ia] + b.area[ib]) + KD_MIN:
        return max(_directed(a, ia, b, ib), _directed(b, ib, a, ia))
    ma, mb = a.lab[y0:y1, x0:x1] == ia, b.lab[y0:y1, x0:x1] == ib
    return float(max(distance_transform_edt(~mb)[ma].max(), distance_transform_edt(~ma)[mb].max()))


def _nearest_hausdorff(a: _Maps, ia: int, b: _Maps) -> float:
    """Smallest Hausdorff distance from object ``ia`` of ``a`` to any object of ``b``; candidates are tried in the
    order of a bounding-box lower bound (max |Δ side|) and the search stops once the bound exceeds the best."""
    lower = np.abs(b.boxes[1:] - a.boxes[ia]).max(axis=1)
    best = np.inf
    for k in np.argsort(lower, kind="stable"):
        if lower[k] >= best:
            break
        best = min(best, _pair_hausdorff(a, ia, b, int(k) + 1))
    return float(best)


def _object_hausdorff(ov: Overlap, pred: _Maps, true: _Maps) -> float:
    s1, g1, _ = _most_overlapped(ov, from_pred=True)
    g2, s2, _ = _most_overlapped(ov, from_pred=False)
    width = true.n + 1
    codes, inverse = np.unique(np.concatenate([s1 * width + g1, s2 * width + g2]), return_inverse=True)
    dist = np.array([_pair_hausdorff(pred, int(c // width), true, int(c % width)) for c in codes])
    total = 0.0
    for own, hd, maps, others, area in ((s1, dist[inverse[:len(s1)]], pred, true, ov.pred_area),
                                        (g2, dist[inverse[len(s1):]], true, pred, ov.true_area)):
        per_object = np.zeros(maps.n + 1)
        per_object[own] = hd
        lonely = np.setdiff1d(np.arange(1, maps.n + 1), own)
        per_object[lonely] = [_nearest_hausdorff(maps, int(i), others) for i in lonely]
        total += float((area[1:] * per_object[1:]).sum() / area[1:].sum())
    return total / 2


def instance_scores(
    pred: np.ndarray, true: np.ndarray, legacy_dice: bool = False, hausdorff: bool = True
) -> tuple[dict[str, float | None], tuple[int, int, int]]:
    """:func:`instance_metrics` plus the image's GlaS detection counts ``(tp, fp, fn)`` (for pooled F1)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {true.shape}")
    p, n_pred = relabel(pred)
    t, n_true = relabel(true)
    ov = contingency(p, t, n_pred, n_true)
    fg_p, fg_t, fg_i = ov.pred_area[1:].sum(), ov.true_area[1:].sum(), ov.inter.sum()
    if n_pred == 0 or n_true == 0:
        both = n_pred == n_true
        out: dict[str, float | None] = {k: float(both) for k in KEYS}
        out["object_hausdorff"] = (0.0 if both else float("inf")) if hausdorff else None
        return out, _glas_counts(ov)
    dq, sq, pq = _pq(ov)
    counts = _glas_counts(ov)
    out = {
        "aji": _aji(ov), "aji_plus": _aji_plus(ov), "dq": dq, "sq": sq, "pq": pq, "object_f1": _f1(*counts),
        "object_dice": _object_dice(ov),
        "object_hausdorff": _object_hausdorff(ov, _Maps(p, n_pred), _Maps(t, n_true)) if hausdorff else None,
        "dice": float(2 * (fg_i + 1) / (fg_p + fg_t + 1) if legacy_dice else 2 * fg_i / (fg_p + fg_t)),
    }
    return out, counts


def instance_metrics(
    pred: np.ndarray, true: np.ndarray, legacy_dice: bool = False, hausdorff: bool = True
) -> dict[str, float | None]:
    """Instance metrics of one image (keys :data:`KEYS`; definitions in the module docstring).

    Args:
        pred: Predicted instance map ``[H, W]`` (integers, 0 = background, ids arbitrary).
        true: Ground-truth instance map of the same shape.
        legacy_dice: ``dice`` with the UNIT code's +1 smoothing, ``2(I+1)/(|P|+|T|+1)`` (may exceed 1).
        hausdorff: Compute ``object_hausdorff`` (the slowest key); ``None`` when ``False``.

    Raises:
        ValueError: Shapes differ, or the maps are not non-negative integers.
    """
    return instance_scores(pred, true, legacy_dice=legacy_dice, hausdorff=hausdorff)[0]
