"""Post-processing of the proposal-free models: marker-controlled watershed into an instance map.

* :func:`hover_watershed` (nuclei) — after HoVer-Net (Graham et al., MedIA 2019): the predicted horizontal/vertical
  maps fall sharply between touching nuclei; markers are foreground pixels of low boundary energy, and the
  watershed of that energy floods the foreground from them.
* :func:`contour_watershed` (glands) — after contour-aware networks (Chen et al., DCAN, CVPR 2016): markers are
  pixels likely to be interior and unlikely to be contour; the watershed of the contour probability assigns the
  remaining foreground (contours included) to them.

Defaults are the values documented in ``docs/instance.md``; every one is an argument.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _clean_markers(markers: np.ndarray, open_radius: int, min_size: int) -> np.ndarray:
    from skimage.measure import label
    from skimage.morphology import disk

    markers = ndimage.binary_fill_holes(markers)
    if open_radius > 0:
        markers = ndimage.binary_opening(markers, structure=disk(open_radius))
    return _finish(label(markers, connectivity=1), min_size)


def _finish(inst: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects smaller than ``min_size`` pixels and renumber 1..N."""
    from skimage.segmentation import relabel_sequential

    if min_size > 1:
        area = np.bincount(inst.ravel())
        small = area < min_size
        small[0] = False
        inst = np.where(small[inst], 0, inst)
    return relabel_sequential(inst)[0].astype(np.int32)  # type: ignore[no-any-return]


def hover_watershed(
    foreground: np.ndarray,
    hv: np.ndarray,
    fg_threshold: float = 0.5,
    edge_threshold: float = 0.1,
    sigma: float = 1.0,
    marker_open_radius: int = 1,
    min_size: int = 10,
) -> np.ndarray:
    """Instance map ``[H, W]`` (int32, 0 = background) from HoVer-style outputs.

    Inside a nucleus the horizontal map increases from -1 to +1 along x and the vertical map along y; between two
    touching nuclei (and at the rim) they fall. The boundary energy is therefore ``max(-∂h/∂x, -∂v/∂y, 0)``
    (Gaussian derivatives), which needs no per-image normalisation (HoVer-Net min-max normalises a 21-tap Sobel).

    Args:
        foreground: Foreground probability ``[H, W]``.
        hv: Horizontal and vertical maps ``[2, H, W]`` (about [-1, 1] inside objects).
        fg_threshold: Foreground where the probability is at least this.
        edge_threshold: Foreground pixels whose boundary energy reaches this are never markers (an exact map has
            energy 0 inside objects and about 0.3-0.6 on their boundaries at ``sigma`` 1).
        sigma: Gaussian σ (pixels) of the derivative filters.
        marker_open_radius: Radius of the opening that detaches thin marker bridges (0 = none).
        min_size: Foreground components, markers and final objects smaller than this (pixels) are dropped.
    """
    from skimage.measure import label
    from skimage.segmentation import watershed

    fg = _finish(label(foreground >= fg_threshold, connectivity=1), min_size) > 0
    if not fg.any():
        return np.zeros(foreground.shape, np.int32)
    dh = ndimage.gaussian_filter(hv[0].astype(np.float64), sigma, order=(0, 1))
    dv = ndimage.gaussian_filter(hv[1].astype(np.float64), sigma, order=(1, 0))
    energy = np.maximum(np.maximum(-dh, -dv), 0.0)
    markers = _clean_markers(fg & (energy < edge_threshold), marker_open_radius, min_size)
    return _finish(watershed(energy, markers=markers, mask=fg), min_size)


def contour_watershed(
    probs: np.ndarray,
    fg_threshold: float = 0.5,
    interior_threshold: float = 0.5,
    contour_threshold: float = 0.5,
    marker_open_radius: int = 1,
    min_size: int = 50,
) -> np.ndarray:
    """Instance map ``[H, W]`` (int32) from background/interior/contour probabilities ``[3, H, W]``.

    Args:
        probs: Softmax probabilities of background, interior and contour.
        fg_threshold: Foreground where interior + contour probability is at least this.
        interior_threshold: Markers need an interior probability of at least this...
        contour_threshold: ...and a contour probability below this.
        marker_open_radius: Radius of the opening of the markers (0 = none).
        min_size: Markers and final objects smaller than this (pixels) are dropped (GlaS glands are larger).
    """
    from skimage.segmentation import watershed

    fg = ndimage.binary_fill_holes(probs[1] + probs[2] >= fg_threshold)
    markers = _clean_markers(fg & (probs[1] >= interior_threshold) & (probs[2] < contour_threshold),
                             marker_open_radius, min_size)
    if markers.max() == 0:
        return np.zeros(probs.shape[1:], np.int32)
    return _finish(watershed(probs[2], markers=markers, mask=fg), min_size)
