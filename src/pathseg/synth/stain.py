"""Beer–Lambert colour model for H&E: stain optical densities (OD) to RGB and back.

Transmitted light through a stained section follows ``I = I0 * 10**(-OD)`` per RGB channel, and the optical density
is a sum over stains, ``OD_rgb = c_H * v_H + c_E * v_E``, where ``v`` are unit stain vectors (the OD each stain
produces per unit concentration in R, G, B) and ``c`` are the per-pixel stain amounts. The default vectors are the
standard ones of Ruifrok & Johnston (2001), as used by ``skimage.color.rgb_from_hed``.
"""

from __future__ import annotations

import numpy as np

#: Ruifrok & Johnston haematoxylin and eosin OD vectors (rows, unit length after normalisation).
RUIFROK_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float64)


def normalise_rows(m: np.ndarray) -> np.ndarray:
    """Scale each row of ``m`` to unit Euclidean length."""
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def jitter_stains(rng: np.random.Generator, amount: float = 0.04, base: np.ndarray = RUIFROK_HE) -> np.ndarray:
    """Stain vectors perturbed per image (staining protocol / scanner variation), still unit length and positive.

    Args:
        rng: Random generator.
        amount: Standard deviation of the additive perturbation of each vector component.
        base: ``[2, 3]`` H and E OD vectors.
    """
    m = normalise_rows(base) + rng.normal(0.0, amount, size=base.shape)
    return normalise_rows(np.clip(m, 0.01, None))


def od_to_rgb(h: np.ndarray, e: np.ndarray, stains: np.ndarray = RUIFROK_HE, i0: float = 250.0) -> np.ndarray:
    """Render stain amounts as an RGB image with the Beer–Lambert law.

    Args:
        h: ``[H, W]`` haematoxylin optical density (amount along the H vector).
        e: ``[H, W]`` eosin optical density.
        stains: ``[2, 3]`` stain OD vectors (rows: H, E), normalised here.
        i0: Incident light intensity (the brightness of an empty slide), 0-255.

    Returns:
        ``[H, W, 3]`` float32 intensities in ``[0, i0]`` (not yet rounded).
    """
    v = normalise_rows(np.asarray(stains, dtype=np.float64)).astype(np.float32)
    od = h[..., None] * v[0] + e[..., None] * v[1]
    return (np.float32(i0) * np.power(np.float32(10.0), -od)).astype(np.float32)


def rgb_to_od(rgb: np.ndarray, i0: float = 255.0) -> np.ndarray:
    """Optical density per RGB channel, ``-log10(I / I0)`` (``I`` clipped to at least 1)."""
    return -np.log10(np.clip(rgb.astype(np.float64), 1.0, i0) / i0)


def unmix(rgb: np.ndarray, stains: np.ndarray = RUIFROK_HE, i0: float = 255.0) -> np.ndarray:
    """Least-squares H and E amounts of an RGB image (colour deconvolution).

    Returns:
        ``[H, W, 2]`` optical densities along the H and E vectors.
    """
    v = normalise_rows(np.asarray(stains, dtype=np.float64))
    od = rgb_to_od(rgb, i0).reshape(-1, 3)
    coef, *_ = np.linalg.lstsq(v.T, od.T, rcond=None)
    return coef.T.reshape(*rgb.shape[:2], 2)
