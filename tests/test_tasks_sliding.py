"""Sliding-window inference equals a full forward pass for translation-equivariant models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathseg.tasks.sliding import blend_weights, sliding_window_predict, window_starts


@pytest.fixture
def conv1x1() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, kernel_size=1).eval()


@pytest.mark.parametrize("size", [(20, 24), (32, 32), (45, 70), (32, 77)])
@pytest.mark.parametrize("blend", ["gaussian", "mean"])
def test_equals_full_forward(conv1x1, size, blend):
    image = torch.randn(2, 3, *size)
    got = sliding_window_predict(conv1x1, image, window=32, overlap=0.3, num_classes=4, batch_size=3, blend=blend)
    with torch.no_grad():
        want = conv1x1(image).softmax(1)
    assert got.shape == (2, 4, *size)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_single_image_and_no_overlap(conv1x1):
    image = torch.randn(3, 50, 64)
    got = sliding_window_predict(conv1x1, image, window=16, overlap=0.0)
    with torch.no_grad():
        want = conv1x1(image[None]).softmax(1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_windows_cover_and_blend_in_context():
    # a model that sees its window: output = per-window mean of channel 0, so blending matters
    calls = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    out = sliding_window_predict(model, torch.randn(1, 3, 70, 40), window=32, overlap=0.5, batch_size=4)
    torch.testing.assert_close(out, torch.full((1, 2, 70, 40), 0.5))
    n_windows = len(window_starts(70, 32, 16)) * len(window_starts(40, 32, 16))
    assert sum(calls) == n_windows and max(calls) <= 4


def test_window_starts_and_weights():
    assert window_starts(10, 32, 16) == [0]
    assert window_starts(32, 32, 16) == [0]
    assert window_starts(70, 32, 16) == [0, 16, 32, 38]
    w = blend_weights(33)
    assert w.shape == (33, 33) and w[16, 16] == 1.0 and w.min() >= 1e-3


def test_bad_arguments(conv1x1):
    with pytest.raises(ValueError):
        sliding_window_predict(conv1x1, torch.randn(3, 8, 8), window=8, overlap=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        sliding_window_predict(conv1x1, torch.randn(3, 8, 8), window=8, num_classes=3)


class _WindowDependent(torch.nn.Module):
    """Output = input channel 0 + the window's mean: differs between windows, so the blending shows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + x.mean(dim=(1, 2, 3), keepdim=True)


def _gauss(window: int) -> np.ndarray:
    """The documented window weights, written independently: σ = window / 8, peak 1, floor 1e-3."""
    c = (window - 1) / 2
    g = np.array([np.exp(-((i - c) ** 2) / (2 * (window / 8) ** 2)) for i in range(window)])
    w = np.outer(g, g)
    return np.maximum(w / w.max(), 1e-3)


def _by_hand(image: np.ndarray, window: int, stride: int, weights: np.ndarray) -> np.ndarray:
    h, w = image.shape[1:]
    starts = [sorted({*range(0, n - window + 1, stride), n - window}) for n in (h, w)]
    acc, norm = np.zeros((h, w)), np.zeros((h, w))
    for y0 in starts[0]:
        for x0 in starts[1]:
            tile = image[:, y0:y0 + window, x0:x0 + window]
            acc[y0:y0 + window, x0:x0 + window] += weights * (tile[0] + tile.mean())
            norm[y0:y0 + window, x0:x0 + window] += weights
    return acc / norm


@pytest.mark.parametrize(("size", "overlap"), [((40, 52), 0.5), ((40, 52), 0.25), ((32, 48), 0.0)])
def test_gaussian_blending_equals_hand_computed_average(size: tuple[int, int], overlap: float) -> None:
    torch.manual_seed(0)
    image = torch.rand(3, *size, dtype=torch.float64).float()
    window = 16
    got = sliding_window_predict(_WindowDependent(), image, window=window, overlap=overlap, activation="none")
    stride = int(window * (1 - overlap))
    expected = _by_hand(image.double().numpy(), window, stride, _gauss(window))  # edge windows flush with the border
    assert np.allclose(got[0, 0].numpy(), expected, atol=1e-5)
    flat = sliding_window_predict(_WindowDependent(), image, window=window, overlap=overlap, activation="none",
                                  blend="mean")
    assert np.allclose(flat[0, 0].numpy(), _by_hand(image.double().numpy(), window, stride,
                                                    np.ones((window, window))), atol=1e-5)
    if overlap > 0:  # the two blends really differ where windows overlap
        assert not np.allclose(got.numpy(), flat.numpy(), atol=1e-4)
