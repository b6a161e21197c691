"""Segmentation metrics against brute-force loops over classes and pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathseg.metrics import ConfusionMatrix, segmentation_metrics


def brute_force(preds, targets, k, ignore=255, exclude=None):
    """Per-class counts by explicit loops over every pixel, then the formulas of docs/metrics.md."""
    tp = [0] * k
    fp = [0] * k
    fn = [0] * k
    gt_count = [0] * k
    correct = 0
    total = 0
    for pred, target in zip(preds, targets):
        for p, t in zip(np.asarray(pred).ravel().tolist(), np.asarray(target).ravel().tolist()):
            if t in (ignore, exclude):
                continue
            total += 1
            gt_count[t] += 1
            if p == t:
                tp[t] += 1
                correct += 1
            else:
                fp[p] += 1
                fn[t] += 1
    iou, dice = [], []
    for c in range(k):
        if c == exclude or tp[c] + fp[c] + fn[c] == 0:
            iou.append(None)
            dice.append(None)
        else:
            iou.append(tp[c] / (tp[c] + fp[c] + fn[c]))
            dice.append(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]))
    scored = [c for c in range(k) if iou[c] is not None]
    miou = sum(iou[c] for c in scored) / len(scored) if scored else None
    mdice = sum(dice[c] for c in scored) / len(scored) if scored else None
    weight = sum(gt_count[c] for c in scored)
    fwiou = sum(gt_count[c] / weight * iou[c] for c in scored) if weight else None
    return {
        "iou_per_class": iou,
        "dice_per_class": dice,
        "miou": miou,
        "mdice": mdice,
        "fwiou": fwiou,
        "pixel_accuracy": correct / total if total else None,
    }


def assert_same(got, want):
    for key, value in want.items():
        g = got[key]
        if isinstance(value, list):
            assert len(g) == len(value), key
            for a, b in zip(g, value):
                assert (a is None) == (b is None), (key, g, value)
                if b is not None:
                    assert a == pytest.approx(b, abs=1e-12), key
        elif value is None:
            assert g is None, key
        else:
            assert g == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_with_ignore_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = 4
    preds = [rng.integers(0, k, size=(7, 9)) for _ in range(3)]
    targets = [rng.integers(0, k, size=(7, 9)) for _ in range(3)]
    for t in targets:
        t[rng.random(t.shape) < 0.2] = 255
    got = segmentation_metrics(preds, targets, num_classes=k)
    assert_same(got, brute_force(preds, targets, k))
    assert np.asarray(got["confusion_matrix"]).sum() == sum(int((t != 255).sum()) for t in targets)


def test_absent_class_left_out_of_means():
    # class 2 occurs nowhere: it must not be scored 0
    pred = np.array([[0, 0, 1, 1]])
    target = np.array([[0, 0, 1, 1]])
    out = segmentation_metrics(pred, target, num_classes=3)
    assert out["iou_per_class"] == [1.0, 1.0, None]
    assert out["dice_per_class"] == [1.0, 1.0, None]
    assert out["miou"] == 1.0 and out["mdice"] == 1.0 and out["fwiou"] == 1.0
    assert out["present_classes"] == [0, 1]


def test_class_only_in_prediction_scores_zero():
    pred = np.array([0, 2, 1, 1])
    target = np.array([0, 0, 1, 1])
    out = segmentation_metrics(pred, target, num_classes=3)
    assert out["iou_per_class"][2] == 0.0
    assert out["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert_same(out, brute_force([pred], [target], 3))


def test_all_ignore_gives_none():
    pred = np.zeros((4, 4), dtype=np.int64)
    target = np.full((4, 4), 255, dtype=np.uint8)
    out = segmentation_metrics(pred, target, num_classes=2)
    assert out["miou"] is None and out["pixel_accuracy"] is None and out["fwiou"] is None
    assert out["iou_per_class"] == [None, None]
    assert out["num_pixels"] == 0


def test_single_class():
    pred = np.zeros((3, 3), dtype=np.int32)
    out = segmentation_metrics(pred, pred.copy(), num_classes=1)
    assert out["miou"] == 1.0 and out["pixel_accuracy"] == 1.0 and out["mdice"] == 1.0


def test_torch_numpy_and_pairs_agree():
    rng = np.random.default_rng(3)
    preds = [rng.integers(0, 3, size=(5, 6)) for _ in range(2)]
    targets = [rng.integers(0, 3, size=(5, 6)) for _ in range(2)]
    a = segmentation_metrics(preds, targets, 3)
    b = segmentation_metrics([torch.from_numpy(p) for p in preds], [torch.from_numpy(t) for t in targets], 3)
    c = segmentation_metrics(iter(zip(preds, targets)), None, 3)
    d = segmentation_metrics(np.stack(preds), torch.from_numpy(np.stack(targets)), 3)
    for other in (b, c, d):
        assert other == a


def test_streaming_equals_one_shot_and_merge():
    rng = np.random.default_rng(4)
    preds = [rng.integers(0, 5, size=(8, 8)) for _ in range(4)]
    targets = [rng.integers(0, 5, size=(8, 8)) for _ in range(4)]
    cm = ConfusionMatrix(5)
    other = ConfusionMatrix(5)
    for i, (p, t) in enumerate(zip(preds, targets)):
        (cm if i % 2 else other).update(p, t)
    cm.merge(other)
    assert cm.compute()["miou"] == pytest.approx(segmentation_metrics(preds, targets, 5)["miou"])
    assert cm.matrix.sum() == 4 * 64
    cm.reset()
    assert cm.matrix.sum() == 0


def test_exclude_index_wsss_convention():
    rng = np.random.default_rng(5)
    k = 5
    preds = [rng.integers(0, k, size=(10, 10)) for _ in range(2)]
    targets = [rng.integers(0, k, size=(10, 10)) for _ in range(2)]
    targets[0][0, :] = 255
    cm = ConfusionMatrix(k, exclude_index=4)
    for p, t in zip(preds, targets):
        cm.update(p, t)
    out = cm.compute()
    assert out["iou_per_class"][4] is None
    assert 4 not in out["present_classes"]
    assert_same(out, brute_force(preds, targets, k, exclude=4))
    assert cm.matrix[4].sum() == 0  # ground-truth background pixels are not counted


def test_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        segmentation_metrics(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="pred holds labels"):
        segmentation_metrics(np.array([3]), np.array([0]), 2)
    with pytest.raises(ValueError, match="target holds labels"):
        segmentation_metrics(np.array([0]), np.array([7]), 2)
    with pytest.raises(TypeError, match="integer"):
        segmentation_metrics(np.array([0.5]), np.array([0]), 2)
    # a prediction outside the classes at an ignored pixel is fine
    out = segmentation_metrics(np.array([9, 1]), np.array([255, 1]), 2)
    assert out["miou"] == 1.0


def test_fwiou_formula_by_hand():
    target = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 1, 1])
    out = segmentation_metrics(pred, target, 2)
    # IoU0 = 2/3, IoU1 = 1/2; frequencies 3/4, 1/4
    assert out["fwiou"] == pytest.approx(0.75 * 2 / 3 + 0.25 * 0.5)
    assert out["pixel_accuracy"] == pytest.approx(0.75)
    assert not math.isnan(out["miou"])
