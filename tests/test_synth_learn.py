"""Learnability: a small U-Net trained briefly on CPU segments held-out synthetic images (mIoU >= 0.6)."""

from __future__ import annotations

import numpy as np
import pytest


def _miou(pred: np.ndarray, target: np.ndarray, k: int) -> float:
    """Mean IoU over classes present in target or prediction, from an explicit confusion matrix."""
    cm = np.zeros((k, k), dtype=np.int64)
    for t in range(k):
        for p in range(k):
            cm[t, p] = np.count_nonzero((target == t) & (pred == p))
    ious = []
    for c in range(k):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return float(np.mean(ious))


@pytest.mark.slow
def test_tiny_unet_learns_synthetic_segmentation() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("segmentation_models_pytorch")
    from pathseg.synth.learn import predict, stack_samples, train_tiny_unet

    torch.set_num_threads(2)
    x_train, y_train = stack_samples(seed=0, start=0, count=64, size=128)
    x_test, y_test = stack_samples(seed=0, start=1000, count=32, size=128)  # held out: other generator streams
    res = train_tiny_unet(x_train, y_train, num_classes=5, max_epochs=12, time_limit_s=1800, seed=0)
    pred = predict(res.model, x_test)
    miou = _miou(pred, y_test, 5)
    try:
        from pathseg.metrics import segmentation_metrics
    except ImportError:
        segmentation_metrics = None  # type: ignore[assignment]
    if segmentation_metrics is not None:
        assert segmentation_metrics(pred, y_test, num_classes=5)["miou"] == pytest.approx(miou, abs=1e-9)
    print(f"tiny U-Net: {res.epochs} epochs in {res.seconds:.0f} s, held-out mIoU {miou:.3f}")
    assert miou >= 0.6
