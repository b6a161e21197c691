"""Classification metrics against brute-force computations (pairwise AUC, per-class loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathseg.metrics import binary_auc, classification_metrics
from pathseg.metrics.classification import rankdata


def pairwise_auc(pos_mask, score):
    """P(score_pos > score_neg) + 0.5 P(equal), over all positive/negative pairs."""
    pos = [s for s, m in zip(score, pos_mask) if m]
    neg = [s for s, m in zip(score, pos_mask) if not m]
    if not pos or not neg:
        return None
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def brute(y, scores):
    k = scores.shape[1]
    pred = [max(range(k), key=lambda c: (row[c], -c)) for row in scores]
    acc = sum(p == t for p, t in zip(pred, y)) / len(y)
    recalls, f1s, aucs = [], [], []
    for c in range(k):
        tp = sum(1 for p, t in zip(pred, y) if p == c and t == c)
        fp = sum(1 for p, t in zip(pred, y) if p == c and t != c)
        fn = sum(1 for p, t in zip(pred, y) if p != c and t == c)
        if tp + fn:
            recalls.append(tp / (tp + fn))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
        a = pairwise_auc([t == c for t in y], scores[:, c].tolist())
        if a is not None:
            aucs.append(a)
    return acc, sum(recalls) / len(recalls), sum(f1s) / len(f1s), sum(aucs) / len(aucs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = 40, 4
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    scores = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)  # rounding creates ties
    out = classification_metrics(y, scores)
    acc, bacc, f1, auc = brute(y, scores)
    assert out["accuracy"] == pytest.approx(acc)
    assert out["balanced_accuracy"] == pytest.approx(bacc)
    assert out["macro_f1"] == pytest.approx(f1)
    assert out["auc"] == pytest.approx(auc)
    assert np.asarray(out["confusion_matrix"]).sum() == n


def test_auc_ranks_equal_pairwise_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(20):
        score = rng.integers(0, 5, size=30).astype(float)
        pos = rng.random(30) < 0.4
        assert binary_auc(pos, score) == pytest.approx(pairwise_auc(pos.tolist(), score.tolist()))


def test_rankdata_average_ties():
    np.testing.assert_allclose(rankdata(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_binary_one_dimensional_and_two_columns_agree():
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    a = classification_metrics(y, p1)
    b = classification_metrics(torch.tensor(y), torch.tensor(np.stack([1 - p1, p1], 1)))
    assert a["auc"] == pytest.approx(b["auc"])
    assert a["auc"] == pytest.approx(pairwise_auc((y == 1).tolist(), p1.tolist()))
    assert a["accuracy"] == pytest.approx(4 / 6)


def test_absent_class_and_undefined_auc():
    y = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    out = classification_metrics(y, scores)
    assert out["auc_per_class"][2] is None  # class 2 has no positives
    assert out["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    # class 2 is predicted once (FP) so it enters macro F1 with 0
    assert out["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    single = classification_metrics(np.zeros(3, int), np.array([[0.8, 0.2]] * 3))
    assert single["auc"] is None and single["accuracy"] == 1.0


def test_bad_shapes():
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 5]), np.zeros((2, 2)))
