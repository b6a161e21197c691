"""Tissue detection: known masks recovered, white glass and pen marks excluded, empty slides give nothing."""

from __future__ import annotations

import numpy as np

from pathseg.slides.tissue import TissueParams, box_fractions, detect_tissue, integral
from slides_helpers import BACKGROUND, synthetic_slide


def _downsample(img: np.ndarray, f: int) -> np.ndarray:
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    return img[:h, :w].reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3)).astype(np.uint8)


def test_detects_known_tissue() -> None:
    img, mask = synthetic_slide()
    ov = _downsample(img, 8)  # 0.5 µm/px -> 4 µm/px
    truth = _downsample(mask[..., None].astype(np.uint8) * 255, 8)[..., 0] > 127
    found = detect_tissue(ov, TissueParams(mpp=4.0))
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.97


def test_pen_marks_and_black_are_excluded() -> None:
    img, mask = synthetic_slide()
    img[100:140, 100:2400] = (30, 60, 200)  # blue pen stroke across glass and tissue
    img[1950:1990, 100:2400] = (40, 160, 60)  # green pen
    img[1200:1260, 100:1300] = (15, 15, 20)  # black marker
    pen = np.zeros(mask.shape, bool)
    pen[100:140] = pen[1950:1990] = pen[1200:1260, 100:1300] = True
    found = detect_tissue(_downsample(img, 8), TissueParams(mpp=4.0))
    pen_small = _downsample(pen[..., None].astype(np.uint8) * 255, 8)[..., 0] > 0
    assert not (found & pen_small).any()
    truth = _downsample((mask & ~pen)[..., None].astype(np.uint8) * 255, 8)[..., 0] > 127
    assert (found & truth).sum() / truth.sum() > 0.9


def test_empty_slide_gives_empty_mask() -> None:
    img, _ = synthetic_slide(tissue=False)
    assert not detect_tissue(_downsample(img, 8), TissueParams(mpp=4.0)).any()
    assert not detect_tissue(np.full((50, 60, 3), BACKGROUND, np.uint8)).any()


def test_box_fractions_are_exact_area_fractions() -> None:
    m = np.zeros((10, 10), bool)
    m[2:6, 3:9] = True
    s = integral(m)
    for x0, y0, size in [(0.0, 0.0, 4.0), (2.5, 1.5, 3.0), (3.25, 2.75, 2.0), (7.0, 7.0, 3.0)]:
        # independent computation: supersample the box 100x
        n = 400
        xs = x0 + (np.arange(n) + 0.5) * size / n
        ys = y0 + (np.arange(n) + 0.5) * size / n
        ref = m[np.floor(ys).astype(int)[:, None], np.floor(xs).astype(int)[None, :]].mean()
        got = box_fractions(s, np.array([x0]), np.array([y0]), size)[0]
        assert abs(got - ref) < 0.01
