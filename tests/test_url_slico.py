"""The original's superpixels: OpenCV SLICO (``opencv`` extra, opencv-contrib) through pathseg's backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathseg.ssl.url.config import SuperpixelConfig
from pathseg.ssl.url.superpixels import compute_superpixels, relabel

cv2 = pytest.importorskip("cv2", reason="opencv-contrib not installed (pip install 'pathseg[opencv]')")
if not hasattr(cv2, "ximgproc"):
    pytest.skip("cv2 without ximgproc: install opencv-contrib-python-headless", allow_module_level=True)

GLAS = Path("/work/shared/data/glas/train/images/train_1.png")


def _image() -> np.ndarray:
    if GLAS.is_file():
        from pathseg.io import read_rgb

        return read_rgb(GLAS)[:256, :320]
    rng = np.random.default_rng(0)
    return (rng.random((256, 320, 3)) * 255).astype(np.uint8)


def test_backend_is_the_original_call() -> None:
    """``createSuperpixelSLIC(rgb, region_size=32)`` with OpenCV's defaults (SLICO, ruler 10), 10 iterations."""
    rgb = _image()
    seg = cv2.ximgproc.createSuperpixelSLIC(rgb, region_size=32)
    seg.iterate(10)
    original = relabel(seg.getLabels())
    ours = compute_superpixels(rgb, SuperpixelConfig(backend="opencv_slico"))
    assert np.array_equal(ours, original)
    assert 0.7 * 256 * 320 / 32**2 < ours.max() + 1 < 1.3 * 256 * 320 / 32**2


def test_slico_differs_from_plain_slic() -> None:
    rgb = _image()
    slico = compute_superpixels(rgb, SuperpixelConfig(backend="opencv_slico"))
    seg = cv2.ximgproc.createSuperpixelSLIC(rgb, algorithm=cv2.ximgproc.SLIC, region_size=32, ruler=10.0)
    seg.iterate(10)
    assert not np.array_equal(slico, relabel(seg.getLabels()))
