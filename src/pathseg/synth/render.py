"""Render H&E-like tissue with known ground truth from a class map.

Pipeline for one image: class map (regions) -> per-class stain amounts and textures (H and E optical densities)
-> nuclei placed per class as non-overlapping jittered ellipses -> necrotic debris -> per-image stain variation,
blur and noise -> Beer–Lambert RGB. Everything is vectorised numpy and deterministic for a given generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pathseg.synth.classes import (
    DEBRIS_DENSITY,
    DEBRIS_RADIUS_UM,
    DEFAULT_MPP,
    DEFAULT_WEIGHTS,
    NECROSIS,
    STROMA,
    TISSUE_CLASSES,
    TUMOUR,
)
from pathseg.synth.fields import fibre_field, smooth_noise, voronoi_labels
from pathseg.synth.nuclei import endpoints_inside, rasterise, reject_overlaps, sample_ellipses
from pathseg.synth.stain import jitter_stains, od_to_rgb

CANDIDATES_PER_TARGET = 4  # candidate nuclei drawn per wanted nucleus before overlap rejection


@dataclass
class SynthSample:
    """One synthetic image and its ground truth.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        mask: ``[H, W]`` uint8 tissue class per pixel (see :data:`pathseg.synth.classes.TISSUE_CLASSES`).
        instances: ``[H, W]`` int32 nucleus instance ids, 0 = no nucleus; ids are ``1..n``.
        instance_classes: Tissue class of each instance id.
    """

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    instance_classes: dict[int, int] = field(default_factory=dict)


def make_rng(seed: int, index: int = 0) -> np.random.Generator:
    """The generator of image ``index`` of a data set with ``seed`` (independent of how many images are made)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def random_layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    mpp: float = DEFAULT_MPP,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    dominant: int | None = None,
    dominant_share: float = 0.8,
) -> np.ndarray:
    """A random class map of irregular regions.

    Args:
        rng: Random generator.
        shape: ``(H, W)``.
        mpp: µm per pixel (region sizes scale with it: about one region per 100 µm x 100 µm, at least 3).
        weights: Probability of each class per region.
        dominant: If given, each region has this class with probability ``dominant_share``.
        dominant_share: See ``dominant``.
    """
    h, w = shape
    area_um2 = h * w * mpp * mpp
    n_cells = int(rng.integers(3, 6) + area_um2 / 10000.0)
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    if dominant is not None:
        others = p.copy()
        others[dominant] = 0
        others = others / others.sum() * (1 - dominant_share)
        others[dominant] = dominant_share
        p = others
    classes = rng.choice(len(p), size=n_cells, p=p)
    side = min(h, w)
    return voronoi_labels(rng, shape, classes.tolist(), warp=0.18 * side, warp_sigma=0.2 * side)


def _tissue_od(
    rng: np.random.Generator, cmap: np.ndarray, mpp: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stain amounts of the non-nuclear tissue and the fibre direction field."""
    shape = cmap.shape
    lut_h = np.array([c.h_od for c in TISSUE_CLASSES], dtype=np.float32)
    lut_e = np.array([c.e_od for c in TISSUE_CLASSES], dtype=np.float32)
    coarse = smooth_noise(rng, shape, 15.0 / mpp)
    mottled = smooth_noise(rng, shape, 2.0 / mpp)
    fine = smooth_noise(rng, shape, 0.7)
    h = lut_h[cmap] * (1 + 0.18 * coarse + 0.15 * fine)
    e = lut_e[cmap] * (1 + 0.15 * coarse + 0.12 * fine)
    streaks, direction = fibre_field(rng, shape, wavelength=rng.uniform(2.5, 4.0) / mpp, waviness=5.0,
                                     sigma=10.0 / mpp)
    stroma = cmap == STROMA
    fib = np.clip(streaks + 0.45 * smooth_noise(rng, shape, 0.8 / mpp), 0, 1) ** 2
    e = np.where(stroma, lut_e[STROMA] * (0.45 + 0.9 * fib) * (1 + 0.12 * coarse), e)
    tumour = cmap == TUMOUR
    e = np.where(tumour, e * (1 + 0.18 * mottled), e)
    necrosis = cmap == NECROSIS
    e = np.where(necrosis, lut_e[NECROSIS] * (1 + 0.3 * mottled + 0.15 * fine), e)
    h = np.where(necrosis, h * (1 + 0.5 * smooth_noise(rng, shape, 1.2 / mpp)), h)
    return np.clip(h, 0, None), np.clip(e, 0, None), direction


def _draw_nuclei(
    rng: np.random.Generator, cmap: np.ndarray, mpp: float, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Place and rasterise the nuclei of every class; returns instance ids, radial map and the class per id."""
    shape = cmap.shape
    labels = np.zeros(shape, dtype=np.int32)
    radial = np.zeros(shape, dtype=np.float32)
    next_id = 1
    classes: dict[int, int] = {}
    for tc in TISSUE_CLASSES:
        spec = tc.nuclei
        if spec is None:
            continue
        region = cmap == tc.index
        area_um2 = float(region.sum()) * mpp * mpp
        target = int(rng.poisson(spec.density * area_um2 / 1000.0))
        semi = (spec.semi_major_um[0] / mpp, spec.semi_major_um[1] / mpp)
        nuc = sample_ellipses(rng, region, CANDIDATES_PER_TARGET * target, semi, spec.aspect,
                              spec.boundary_jitter, direction if spec.align else None)
        nuc = nuc.select(endpoints_inside(nuc, region))
        nuc = reject_overlaps(nuc, gap=1.0)
        nuc = nuc.select(np.arange(len(nuc)) < target)
        rasterise(nuc, shape, next_id, labels, radial)
        classes.update({next_id + i: tc.index for i in range(len(nuc))})
        next_id += len(nuc)
    # clip to the own region (the footprint check above uses axis end points only)
    lut_cls = np.zeros(next_id, dtype=np.int16)
    for i, c in classes.items():
        lut_cls[i] = c
    outside = (labels > 0) & (lut_cls[labels] != cmap)
    labels[outside] = 0
    labels, classes = _relabel(labels, classes)
    return labels, radial, classes


def _relabel(labels: np.ndarray, classes: dict[int, int]) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber ids to ``1..n`` after clipping (drops nuclei that lost all their pixels); keeps a mapping."""
    present = np.unique(labels)
    present = present[present > 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    new_classes = {int(lut[i]): classes[int(i)] for i in present}
    return lut[labels], new_classes


def _debris(rng: np.random.Generator, cmap: np.ndarray, mpp: float) -> np.ndarray:
    """Haematoxylin OD of karyorrhectic debris (small dark fragments) in necrosis."""
    shape = cmap.shape
    region = cmap == NECROSIS
    out = np.zeros(shape, dtype=np.float32)
    area_um2 = float(region.sum()) * mpp * mpp
    count = int(rng.poisson(DEBRIS_DENSITY * area_um2 / 1000.0))
    if count == 0:
        return out
    nuc = sample_ellipses(rng, region, count, (DEBRIS_RADIUS_UM[0] / mpp, DEBRIS_RADIUS_UM[1] / mpp),
                          (0.5, 1.0), 0.15)
    labels = np.zeros(shape, dtype=np.int32)
    radial = np.zeros(shape, dtype=np.float32)
    rasterise(nuc, shape, 1, labels, radial)
    strength = np.concatenate([[0.0], rng.uniform(0.35, 0.9, len(nuc))]).astype(np.float32)
    return np.where(region, strength[labels], 0).astype(np.float32)


def render(rng: np.random.Generator, cmap: np.ndarray, mpp: float = DEFAULT_MPP) -> SynthSample:
    """Render an H&E-like image for the class map ``cmap``.

    Args:
        rng: Random generator (consumed deterministically).
        cmap: ``[H, W]`` uint8 tissue class map.
        mpp: µm per pixel; nucleus sizes and texture scales follow it.

    Returns:
        The image, the class mask (``cmap``), nucleus instances and their classes.
    """
    shape = cmap.shape
    h, e, direction = _tissue_od(rng, cmap, mpp)
    labels, radial, classes = _draw_nuclei(rng, cmap, mpp, direction)
    in_nuc = labels > 0
    chromatin = smooth_noise(rng, shape, 0.8)
    nuc_od, nuc_chrom = _per_id_stain(rng, classes)
    rim = 0.78 + 0.3 * radial**3
    h_nuc = nuc_od[labels] * rim * (1 + nuc_chrom[labels] * chromatin)
    h = np.where(in_nuc, h_nuc, h)
    e = np.where(in_nuc, 0.1 + 0.25 * e, e)
    debris = _debris(rng, cmap, mpp)
    h = np.where(debris > 0, np.maximum(h, debris * (1 + 0.3 * chromatin)), h)
    e = np.where(debris > 0, e * 0.7, e)
    # per-image staining variation, optics and sensor noise
    h = h * np.float32(rng.uniform(0.85, 1.15))
    e = e * np.float32(rng.uniform(0.8, 1.2))
    sigma = rng.uniform(0.4, 0.8)
    h = ndimage.gaussian_filter(h.astype(np.float32), sigma)
    e = ndimage.gaussian_filter(e.astype(np.float32), sigma)
    rgb = od_to_rgb(h, e, jitter_stains(rng, 0.03), i0=float(rng.uniform(240.0, 252.0)))
    rgb += rng.normal(0.0, 2.0, rgb.shape).astype(np.float32)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return SynthSample(image=image, mask=cmap.astype(np.uint8), instances=labels, instance_classes=classes)


def _per_id_stain(rng: np.random.Generator, classes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nuclear haematoxylin OD and chromatin texture amplitude per instance id (index 0 unused)."""
    n = max(classes, default=0) + 1
    lo, hi, chrom = (np.zeros(n, dtype=np.float32) for _ in range(3))
    for i, c in classes.items():
        spec = TISSUE_CLASSES[c].nuclei
        if spec is not None:
            lo[i], hi[i], chrom[i] = spec.h_od[0], spec.h_od[1], spec.chromatin
    return (lo + (hi - lo) * rng.random(n, dtype=np.float32)).astype(np.float32), chrom


def generate_sample(
    seed: int,
    index: int = 0,
    size: int = 256,
    mpp: float = DEFAULT_MPP,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    dominant: int | None = None,
) -> SynthSample:
    """Generate image ``index`` of the data set with ``seed``.

    Args:
        seed: Data set seed.
        index: Image number; each image has its own generator, so image ``i`` does not depend on how many are made.
        size: Side length in pixels (square images).
        mpp: µm per pixel.
        weights: Class probabilities of the regions.
        dominant: Make this class cover most of the image (classification data).
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = make_rng(seed, index)
    cmap = random_layout(rng, (size, size), mpp, weights, dominant)
    return render(rng, cmap, mpp)


def class_fractions(mask: np.ndarray, num_classes: int = len(TISSUE_CLASSES)) -> np.ndarray:
    """Share of pixels of each class in ``mask``."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(1, mask.size)


__all__ = ["SynthSample", "class_fractions", "generate_sample", "make_rng", "random_layout", "render"]
