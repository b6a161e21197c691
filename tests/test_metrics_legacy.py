"""The URL original's per-batch Dice/IoU (legacy evaluator) against hand computations, and how it differs."""

from __future__ import annotations

import numpy as np
import pytest

from pathseg.metrics import segmentation_metrics
from pathseg.metrics.legacy import LegacyPerBatchScores, legacy_per_batch_metrics, legacy_tiles


def test_absent_class_scores_zero_in_a_batch() -> None:
    """The spec's check: a perfect prediction with 1 of 5 classes absent gives mDice 0.8 (pathseg: 1.0)."""
    t = np.array([[0, 1], [2, 3]])
    legacy = legacy_per_batch_metrics([(t, t)], num_classes=5)
    assert legacy["legacy_per_batch_mdice"] == pytest.approx(0.8)
    assert legacy["legacy_per_batch_miou"] == pytest.approx(0.8)
    assert segmentation_metrics(t, t, num_classes=5)["mdice"] == pytest.approx(1.0)


def test_hand_computed_batches_differ_from_pooled() -> None:
    """Three tiles, batch size 2: batches {A, B} and {C} (a partial last batch of weight 1)."""
    a_p, a_t = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    b_p, b_t = np.array([1, 1, 1, 1]), np.array([1, 1, 0, 1])
    c_p, c_t = np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0])
    got = legacy_per_batch_metrics([(a_p, a_t), (b_p, b_t), (c_p, c_t)], num_classes=2, batch_size=2)
    # batch 1 (A+B): class 0: inter 2, |P| 2, |G| 4; class 1: inter 4, |P| 6, |G| 4
    d1 = [2 * 2 / (2 + 4 + 1e-8), 2 * 4 / (6 + 4 + 1e-8)]
    i1 = [2 / (2 + 4 - 2 + 1e-8), 4 / (6 + 4 - 4 + 1e-8)]
    # batch 2 (C): class 0 perfect, class 1 absent from both -> 0
    d2, i2 = [4 * 2 / (8 + 1e-8), 0.0], [4 / (4 + 1e-8), 0.0]
    dice = [(2 * x + 1 * y) / 3 for x, y in zip(d1, d2)]
    iou = [(2 * x + 1 * y) / 3 for x, y in zip(i1, i2)]
    assert got["legacy_per_batch_dice_per_class"] == pytest.approx(dice)
    assert got["legacy_per_batch_iou_per_class"] == pytest.approx(iou)
    assert got["legacy_per_batch_miou"] == pytest.approx(np.mean(iou))
    assert got["legacy_per_batch_mdice"] == pytest.approx(np.mean(dice))
    assert got["legacy_per_batch_pixel_accuracy"] == pytest.approx((2 * 6 / 8 + 1 * 1.0) / 3)
    assert got["legacy_per_batch_batches"] == 2
    pooled = segmentation_metrics([a_p, b_p, c_p], [a_t, b_t, c_t], num_classes=2)
    # pooled over the data set: class 0 inter 6 / union 8, class 1 inter 4 / union 6
    assert pooled["miou"] == pytest.approx((6 / 8 + 4 / 6) / 2)
    assert abs(got["legacy_per_batch_miou"] - pooled["miou"]) > 0.1


def test_per_batch_pooling_inflates_a_rare_class() -> None:
    """A rare class predicted well in one batch and missed in many others: per-batch averaging with absent = 0
    and pooling give different answers; the batch size changes the legacy value, never the pooled one."""
    rng = np.random.default_rng(0)
    tiles = []
    for i in range(8):
        t = (rng.random((8, 8)) < 0.5).astype(np.int64)
        p = t.copy()
        if i % 2:
            p[:2] = 1 - p[:2]
        tiles.append((p, t))
    legacy2 = legacy_per_batch_metrics(tiles, 2, batch_size=2)["legacy_per_batch_miou"]
    legacy8 = legacy_per_batch_metrics(tiles, 2, batch_size=8)["legacy_per_batch_miou"]
    pooled = segmentation_metrics([p for p, _ in tiles], [t for _, t in tiles], 2)["miou"]
    assert legacy8 == pytest.approx(pooled, abs=1e-6)  # one batch of everything = pooling (no class absent)
    assert legacy2 != pytest.approx(pooled, abs=1e-4)


def test_ignore_index_is_left_out() -> None:
    p, t = np.array([0, 1, 1]), np.array([0, 1, 255])
    acc = LegacyPerBatchScores(2, batch_size=32)
    acc.update(p, t)
    assert acc.compute()["legacy_per_batch_miou"] == pytest.approx(1.0)


def test_tiles_cover_the_image_with_a_flush_last_row() -> None:
    target = np.arange(600 * 300).reshape(600, 300)
    tiles = list(legacy_tiles(target, target, tile=256))
    starts = [(int(t[0, 0]) // 300, int(t[0, 0]) % 300) for _, t in tiles]
    assert starts == [(0, 0), (0, 44), (256, 0), (256, 44), (344, 0), (344, 44)]
    assert all(t.shape == (256, 256) for _, t in tiles)
    small = list(legacy_tiles(target[:100, :100], target[:100, :100]))
    assert len(small) == 1 and small[0][1].shape == (100, 100)
