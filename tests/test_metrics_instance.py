"""Instance metrics against hand-computed values and against the per-object loop implementation of the benchmark."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import pathseg.metrics.instance as inst
from pathseg.metrics import InstanceMetricAccumulator, coco_ap, instance_metrics

ROOT = Path(__file__).resolve().parents[1]


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_instance", ROOT / "benchmarks" / "instance_metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _merged_case() -> tuple[np.ndarray, np.ndarray]:
    """One prediction (7) covering two ground-truth squares (1, 2), a lonely prediction (9) and a lonely object (3)."""
    true = np.array([[1, 1, 0, 2, 2, 0],
                     [1, 1, 0, 2, 2, 0],
                     [0, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 3]])
    pred = np.array([[7, 7, 7, 7, 7, 0],
                     [7, 7, 7, 7, 7, 0],
                     [0, 0, 0, 0, 0, 0],
                     [9, 0, 0, 0, 0, 0]])
    return pred, true


def _touching_case() -> tuple[np.ndarray, np.ndarray]:
    """Two touching objects with non-contiguous ids; the predicted boundary is shifted by one column."""
    true = np.array([[5, 5, 100, 100], [5, 5, 100, 100]])
    pred = np.array([[42, 42, 42, 7], [42, 42, 42, 7]])
    return pred, true


def test_prediction_covering_two_objects_and_lonely_objects() -> None:
    pred, true = _merged_case()
    m = instance_metrics(pred, true)
    # AJI: both squares pair with 7 (I 4, U 10 each); object 3 and prediction 9 are unpaired (+1 each)
    assert m["aji"] == pytest.approx(8 / 22)
    # AJI+: 7 takes one square only; the other square (4), object 3 (1) and prediction 9 (1) join the union
    assert m["aji_plus"] == pytest.approx(4 / 16)
    assert (m["dq"], m["sq"], m["pq"]) == (0.0, 0.0, 0.0)  # IoU 0.4 < 0.5: no match
    # GlaS: 7 covers all of square 1 (its tie-broken most-overlapped object) -> TP; 9 FP; FN = 3 - 1
    assert m["object_f1"] == pytest.approx(2 / (2 + 1 + 2))
    assert m["object_dice"] == pytest.approx((10 / 11 * 4 / 7 + 8 / 9 * 4 / 7) / 2)
    # H(7, square) = 3; 9 is nearest (Hausdorff) to square 1: sqrt(10); object 3 nearest to 9: 5
    assert m["object_hausdorff"] == pytest.approx(((30 + math.sqrt(10)) / 11 + (24 + 5) / 9) / 2)
    assert m["dice"] == pytest.approx(16 / 20)
    assert instance_metrics(pred, true, legacy_dice=True)["dice"] == pytest.approx(2 * 9 / 21)


def test_touching_objects_with_non_contiguous_ids() -> None:
    pred, true = _touching_case()
    m = instance_metrics(pred, true)
    assert m["aji"] == pytest.approx(6 / 10)  # 5 -> 42 (4 / 6), 100 -> 7 (2 / 4, IoU 0.5 beats 0.25)
    assert m["aji_plus"] == pytest.approx(6 / 10)
    assert m["dq"] == pytest.approx(0.5)  # only (42, 5) has IoU > 0.5; (7, 100) has exactly 0.5
    assert m["sq"] == pytest.approx(2 / 3)
    assert m["pq"] == pytest.approx(1 / 3)
    assert m["object_f1"] == pytest.approx(0.5)  # 7 covers exactly half of 100: not > 50 %
    # 100 overlaps 42 and 7 by 2 pixels each: the tie goes to the smaller id, 7 (Dice 4/6; with 42 it would be 0.4)
    assert m["object_dice"] == pytest.approx(0.75)
    assert m["object_hausdorff"] == pytest.approx(1.0)
    assert m["dice"] == pytest.approx(1.0)


def test_aji_reuses_predictions_aji_plus_does_not() -> None:
    true = np.zeros((1, 10), int)
    true[0, :4], true[0, 4:10] = 1, 2
    pred = np.zeros((1, 10), int)
    pred[0, :5], pred[0, 5:10] = 3, 4
    m = instance_metrics(pred, true)
    # IoU(3,1)=4/5, IoU(3,2)=1/10, IoU(4,2)=5/6; AJI: 1->3, 2->4; AJI+: the same pairs
    assert m["aji"] == pytest.approx((4 + 5) / (5 + 6))
    assert m["aji_plus"] == pytest.approx((4 + 5) / (5 + 6))
    pred2 = np.zeros((1, 10), int)
    pred2[0, :9] = 3
    # one prediction over both: AJI uses it twice (I 4 + 5, U 9 + 10); AJI+ once, with 2 (IoU 5/10 > 4/9),
    # and object 1 (4 pixels) joins the union
    m2 = instance_metrics(pred2, true)
    assert m2["aji"] == pytest.approx(9 / 19)
    assert m2["aji_plus"] == pytest.approx(5 / (10 + 4))


def test_empty_maps_follow_the_official_conventions() -> None:
    empty = np.zeros((5, 5), np.uint16)
    some = empty.copy()
    some[1:3, 1:3] = 4
    both = instance_metrics(empty, empty)
    assert all(both[k] == 1.0 for k in inst.KEYS if k != "object_hausdorff")
    assert both["object_hausdorff"] == 0.0
    for pred, true in ((empty, some), (some, empty)):
        m = instance_metrics(pred, true)
        assert all(m[k] == 0.0 for k in inst.KEYS if k != "object_hausdorff")
        assert m["object_hausdorff"] == math.inf


def test_identical_maps_with_permuted_ids_are_perfect() -> None:
    _, true = _merged_case()
    perm = np.array([0, 40, 3, 17])[true]
    m = instance_metrics(perm, true)
    assert all(m[k] == pytest.approx(1.0) for k in inst.KEYS if k != "object_hausdorff")
    assert m["object_hausdorff"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_maps_equal_the_per_object_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _benchmark()
    pred, true = bench.synthetic_pair(96, 40, seed=seed)
    ref = bench.reference_metrics(pred, true)
    fast = instance_metrics(pred, true)
    for key in inst.KEYS:
        assert fast[key] == pytest.approx(ref[key], rel=1e-9), key
    monkeypatch.setattr(inst, "KD_FACTOR", 0)  # every pair through the edge k-d trees
    monkeypatch.setattr(inst, "KD_MIN", 0)
    assert instance_metrics(pred, true)["object_hausdorff"] == pytest.approx(ref["object_hausdorff"], rel=1e-9)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        instance_metrics(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integers"):
        instance_metrics(np.zeros((2, 2)), np.zeros((2, 2), int))


def test_split_aggregation_means_and_pooled_f1() -> None:
    acc = InstanceMetricAccumulator()
    m1 = acc.update(*_merged_case())  # GlaS counts tp 1, fp 1, fn 2
    m2 = acc.update(*_touching_case())  # tp 1, fp 1, fn 1
    out = acc.compute()
    assert out["object_f1"] == pytest.approx((0.4 + 0.5) / 2)
    assert out["object_f1_pooled"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 3))
    assert out["aji"] == pytest.approx((m1["aji"] + m2["aji"]) / 2)  # type: ignore[operator]
    assert (out["num_images"], out["num_objects"], out["num_predicted"]) == (2, 5, 4)
    no_haus = InstanceMetricAccumulator(hausdorff=False)
    no_haus.update(*_touching_case())
    assert no_haus.compute()["object_hausdorff"] is None


def _square(size: int, y: int, x: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y : y + h, x : x + w] = True
    return m


def test_coco_ap_hand_computed() -> None:
    true = _square(32, 4, 4, 10, 10).astype(np.int32) * 3
    hit, miss = _square(32, 4, 4, 10, 10), _square(32, 20, 20, 6, 6)
    # ranked miss first: precision 1/2 at the only recall level -> AP 0.5 at every threshold
    ap = coco_ap([true], [np.stack([miss, hit])], [np.array([0.9, 0.8])])
    assert all(ap[k] == pytest.approx(0.5) for k in ap)
    ap = coco_ap([true], [np.stack([miss, hit])], [np.array([0.1, 0.8])])
    assert all(ap[k] == pytest.approx(1.0) for k in ap)
    # an 8x8 square inside the 10x10 object: IoU 0.64 passes thresholds 0.50, 0.55, 0.60 of ten
    inner = _square(32, 5, 5, 8, 8)
    ap = coco_ap([true], [inner[None]], [np.array([0.7])])
    assert (ap["mask_ap"], ap["mask_ap50"], ap["mask_ap75"]) == pytest.approx((0.3, 1.0, 0.0))
    assert (ap["box_ap"], ap["box_ap50"], ap["box_ap75"]) == pytest.approx((0.3, 1.0, 0.0))
    # explicit boxes (x0, y0, x1, y1) override the mask boxes: the full object box
    ap = coco_ap([true], [inner[None]], [np.array([0.7])], pred_boxes=[np.array([[4.0, 4.0, 14.0, 14.0]])])
    assert ap["box_ap"] == pytest.approx(1.0) and ap["mask_ap"] == pytest.approx(0.3)
    assert coco_ap([true], [np.zeros((0, 32, 32), bool)], [np.zeros(0)])["mask_ap"] == 0.0
