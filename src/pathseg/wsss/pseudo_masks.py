"""Pseudo masks from Grad-CAMs: normalisation, restriction to the patch's labels, background rule, combination
rule, optional dense CRF, and palette PNGs in a canonical segmentation layout (spec §2).

Combination of one layer's class maps ``G`` (``[C, H, W]``) for a patch with labels ``y``:

* ``Ĝ = (G − min G) / (max G − min G)`` with one global min/max over all classes (absent ones included);
* keep ``Ĝ_c`` where ``y_c = 1``;
* background channel ``B = 1.000001`` on white pixels (gray > 200 after dropping white 4-connected components
  under 50 px) when the data set needs it, else no background;
* ``PM = argmax [Ĝ_0 y_0, …, Ĝ_{C-1} y_{C-1}, B]``, ties to the lowest index; the background channel maps to the
  data set's exclude index.

Fixed version (default): absent classes get −1 (so they never win, even at the global minimum) and a patch
with no label gets ``ignore_index`` outside the background. ``parity`` multiplies by ``y`` as the original.
"""

from __future__ import annotations

import numpy as np

from pathseg.data.layout import DatasetInfo
from pathseg.errors import ConfigError

BACKGROUND_SCORE = 1.000001


#: Data sets converted before ``dataset.yaml`` had ``white_background``: the original's per-data-set rule (spec §2:
#: LUAD-HistoSeg marks white pixels as background; BCSS-WSSS never does, white fat carries meaning there).
KNOWN_WHITE_BACKGROUND = {"luad-histoseg": True, "bcss-wsss": False}


def background_rule(mode: str, info: DatasetInfo) -> bool:
    """Whether the white-pixel background rule applies to a data set's pseudo masks.

    Args:
        mode: ``pseudo.background``: ``white`` (always), ``none`` (never) or ``auto``: the data set decides —
            its ``white_background`` in ``dataset.yaml``; when that is not stated, the original's rule for the
            two MLPS data sets by name (:data:`KNOWN_WHITE_BACKGROUND`); otherwise whether the data set has an
            exclude (background) class.
        info: The data set's description.
    """
    if mode != "auto":
        return mode == "white"
    if info.white_background is not None:
        return bool(info.white_background)
    if info.name in KNOWN_WHITE_BACKGROUND:
        return KNOWN_WHITE_BACKGROUND[info.name]
    return info.exclude_index is not None


def gray_cv2(rgb: np.ndarray) -> np.ndarray:
    """Gray value as OpenCV's ``COLOR_RGB2GRAY`` computes it (fixed point, rounded): uint8 ``[H, W]``."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14).astype(np.uint8)


def white_background(rgb: np.ndarray, threshold: int = 200, min_size: int = 50) -> np.ndarray:
    """White pixels: gray > ``threshold``, minus white 4-connected components smaller than ``min_size`` pixels."""
    from scipy import ndimage

    white = gray_cv2(rgb) > threshold
    labels, n = ndimage.label(white)  # default structure = 4-connectivity
    if n == 0:
        return white
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def normalise_global(cams: np.ndarray) -> np.ndarray:
    """One global min-max over the whole ``[C, H, W]`` stack (zeros when the stack is constant)."""
    lo, hi = float(cams.min()), float(cams.max())
    if hi - lo <= 0:
        return np.zeros_like(cams, dtype=np.float32)
    return ((cams - lo) / (hi - lo)).astype(np.float32)


def combine(
    cams: np.ndarray,
    labels: np.ndarray,
    background: np.ndarray | None,
    bg_index: int | None,
    ignore_index: int = 255,
    parity: bool = False,
) -> np.ndarray:
    """The combination rule: one pseudo mask from one layer's raw Grad-CAMs.

    Args:
        cams: ``[C, H, W]`` raw Grad-CAMs of every foreground class.
        labels: ``[C]`` 0/1 patch labels.
        background: ``[H, W]`` bool white mask, or ``None`` when the data set has no background rule.
        bg_index: Mask value of background pixels (the exclude index); needed with ``background``.
        ignore_index: Value for pixels of a patch without any label (fixed version only).
        parity: The original rule (absent classes multiplied by 0).

    Returns:
        ``uint8 [H, W]`` class indices.
    """
    num = cams.shape[0]
    norm = normalise_global(cams)
    present = np.asarray(labels).reshape(num, 1, 1) > 0
    scores = norm * present if parity else np.where(present, norm, -1.0)
    channels = [scores]
    if background is not None:
        if bg_index is None:
            raise ValueError("a background mask needs bg_index")
        low = 0.0 if parity else -2.0
        channels.append(np.where(background, BACKGROUND_SCORE, low)[None].astype(np.float32))
    stacked = np.concatenate(channels, axis=0)
    pm = stacked.argmax(axis=0)
    if background is not None:
        pm = np.where(pm == num, bg_index, pm)
    if not parity and not present.any():
        pm = np.where(background if background is not None else False, pm, ignore_index)
    return pm.astype(np.uint8)


def require_crf() -> None:
    """Raise a clear :class:`ConfigError` when the optional dense-CRF package is missing."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        raise ConfigError(
            "pseudo.crf=true needs the optional package pydensecrf2: pip install 'pathseg[crf]' "
            "(or pip install pydensecrf2), or set pseudo.crf=false"
        ) from None


def crf_refine(
    rgb: np.ndarray, cams: np.ndarray, labels: np.ndarray, background: np.ndarray | None, bg_index: int | None,
    iterations: int = 10,
) -> np.ndarray:
    """Dense-CRF refinement of one layer's pseudo mask (an optional extra, not in the original pipeline).

    Unary: the normalised Grad-CAMs of the present classes (plus the background channel), scaled to a
    per-pixel distribution; pairwise: the usual Gaussian (3 px) and bilateral (80 px, 13 colour) kernels.

    Returns:
        ``uint8 [H, W]`` class indices.
    """
    require_crf()
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    present = [c for c in range(cams.shape[0]) if labels[c] > 0]
    if not present:
        return combine(cams, labels, background, bg_index)
    norm = normalise_global(cams)[present]
    values = [c for c in present]
    if background is not None and bg_index is not None:
        norm = np.concatenate([norm, background[None].astype(np.float32)], axis=0)
        values.append(bg_index)
    probs = np.clip(norm, 1e-5, None)
    probs = probs / probs.sum(axis=0, keepdims=True)
    h, w = rgb.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, probs.shape[0])
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(rgb), compat=10)
    q = np.asarray(crf.inference(iterations)).reshape(len(values), h, w)
    return np.asarray(values, dtype=np.uint8)[q.argmax(axis=0)]
