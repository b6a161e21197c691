"""Superpixel id maps (spec §1.3): computed once per image, cached beside the data, never per epoch.

Cache layout (``DIR`` = a data set in the canonical layout)::

    DIR/<split>/superpixels/<id>_<hash>.png     # uint16 PNG, ids 0..K-1, same size as the image
    DIR/<split>/superpixels/params_<hash>.json  # the parameters the hash stands for

``<hash>`` covers every parameter that changes the map, so maps of different settings live side by side.
Writes are atomic. With ``cache_dir`` the same layout is used under ``cache_dir/<split>/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathseg.errors import ConfigError, DataError, PathsegError
from pathseg.io import atomic_path, atomic_write_text, read_mask, read_rgb
from pathseg.ssl.url.config import SuperpixelConfig

_HASHED = ("backend", "region_size", "compactness", "slic_zero", "iterations", "sigma")


def grid_superpixels(height: int, width: int, region_size: int) -> np.ndarray:
    """Fixed grid of ``region_size`` blocks: id = row · n_cols + col (the spec's ``fixed_sp`` ablation)."""
    cols = -(-width // region_size)
    rr = np.arange(height) // region_size
    cc = np.arange(width) // region_size
    return (rr[:, None] * cols + cc[None, :]).astype(np.int32)


def _slic(rgb: np.ndarray, cfg: SuperpixelConfig) -> np.ndarray:
    from skimage.segmentation import slic

    h, w = rgb.shape[:2]
    n = max(1, round(h * w / cfg.region_size**2))
    labels = slic(
        rgb,
        n_segments=n,
        compactness=cfg.compactness,
        slic_zero=cfg.slic_zero,
        max_num_iter=cfg.iterations,
        sigma=cfg.sigma,
        start_label=0,
        channel_axis=-1,
    )
    return np.asarray(labels, dtype=np.int32)


def _opencv_slico(rgb: np.ndarray, cfg: SuperpixelConfig) -> np.ndarray:
    try:
        import cv2

        ximgproc = cv2.ximgproc
    except (ImportError, AttributeError):
        raise ConfigError(
            "superpixels.backend=opencv_slico needs opencv-contrib (cv2.ximgproc): "
            "pip install 'pathseg[opencv]' or use backend=slic"
        ) from None
    seg = ximgproc.createSuperpixelSLIC(
        np.ascontiguousarray(rgb), algorithm=ximgproc.SLICO, region_size=cfg.region_size, ruler=cfg.compactness
    )
    seg.iterate(cfg.iterations)
    return np.asarray(seg.getLabels(), dtype=np.int32)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Map the ids of ``labels`` to ``0..K-1`` in sorted order."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def compute_superpixels(rgb: np.ndarray, cfg: SuperpixelConfig) -> np.ndarray:
    """Superpixel ids (int32, ``0..K-1``) of an RGB uint8 image ``[H, W, 3]``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got {rgb.shape}")
    if cfg.backend == "grid":
        return grid_superpixels(rgb.shape[0], rgb.shape[1], cfg.region_size)
    if cfg.backend == "opencv_slico":
        return relabel(_opencv_slico(rgb, cfg))
    return relabel(_slic(rgb, cfg))


def params_hash(cfg: SuperpixelConfig) -> str:
    """Short hash of the parameters that change a map."""
    values = {k: getattr(cfg, k) for k in _HASHED}
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def cache_folder(root: str | os.PathLike[str], split: str, cfg: SuperpixelConfig) -> Path:
    """The folder holding a split's cached maps."""
    return Path(cfg.cache_dir) / split if cfg.cache_dir else Path(root) / split / "superpixels"


def cache_path(root: str | os.PathLike[str], split: str, sample_id: str, cfg: SuperpixelConfig) -> Path:
    """Cached map of one sample (the id includes the slide id where the data set has one)."""
    return cache_folder(root, split, cfg) / f"{sample_id}_{params_hash(cfg)}.png"


def _write_map(path: Path, labels: np.ndarray) -> None:
    from PIL import Image

    if int(labels.max(initial=0)) > np.iinfo(np.uint16).max:
        raise DataError(f"{int(labels.max()) + 1} superpixels do not fit uint16: raise superpixels.region_size", path)
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    except PermissionError:
        raise PathsegError("cannot write the superpixel cache here; set superpixels.cache_dir", path.parent) from None


def load_superpixels(
    root: str | os.PathLike[str],
    split: str,
    sample_id: str,
    cfg: SuperpixelConfig,
    rgb: np.ndarray | None = None,
) -> np.ndarray:
    """The superpixel map of one sample: from the cache, else computed (from ``rgb`` if given) and cached.

    A cached map whose size differs from the image is stale and recomputed.
    """
    from pathseg.data.layout import image_path

    if cfg.backend == "grid":
        if rgb is None:
            rgb = read_rgb(image_path(root, split, sample_id))
        return grid_superpixels(rgb.shape[0], rgb.shape[1], cfg.region_size)
    path = cache_path(root, split, sample_id, cfg)
    if path.is_file():
        labels = read_mask(path).astype(np.int32)
        if rgb is None or labels.shape == rgb.shape[:2]:
            return labels
    if rgb is None:
        rgb = read_rgb(image_path(root, split, sample_id))
    labels = compute_superpixels(rgb, cfg)
    _write_map(path, labels)
    return labels


def ensure_superpixels(
    root: str | os.PathLike[str], split: str, ids: Sequence[str], cfg: SuperpixelConfig, progress: bool = True
) -> int:
    """Compute and cache every missing map of ``ids``; returns how many were computed."""
    if cfg.backend == "grid":
        return 0
    cfg.validate()
    folder = cache_folder(root, split, cfg)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise PathsegError("cannot create the superpixel cache; set superpixels.cache_dir", folder) from None
    meta = folder / f"params_{params_hash(cfg)}.json"
    if not meta.exists():
        values = {k: v for k, v in dataclasses.asdict(cfg).items() if k in _HASHED}
        atomic_write_text(meta, json.dumps(values, indent=2) + "\n")
    missing = [i for i in ids if not cache_path(root, split, i, cfg).is_file()]
    if missing:
        from tqdm import tqdm

        for sample_id in tqdm(missing, desc=f"superpixels {split}", disable=not progress, unit="img"):
            load_superpixels(root, split, sample_id, cfg)
    return len(missing)
