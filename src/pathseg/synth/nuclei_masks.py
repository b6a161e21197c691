"""Pseudo nucleus masks for UNIT pretraining (domain X of Song et al., IEEE TMI 2024, §1 of docs/methods/unit.md).

The original release lacks its mask generator; this is our design from the paper's figure and config names:
irregular non-overlapping nuclei of two types, either placed uniformly at random (``random``, the ablation's
``multichannel_random``) or lining synthetic crypts with stromal nuclei scattered outside (``structured``).
Every size is given in µm and converted with ``mpp``, so masks match the resolution of the real tiles.

A result is an instance map (int32, 0 = background, one id per nucleus), the type of every instance (1 = the G
channel, epithelial-like; 2 = the B channel, stromal/lymphocyte-like) and a smooth texture field; :func:`render`
turns them into the mask image G sees (``multichannel``: R = one-pixel inner contour, G/B = textured interior of
type 1/2) or into the ablation formats ``binary``, ``grey`` and ``2channel``.

Randomness comes from a ``numpy.random.Generator`` given by the caller (datasets derive its seed from torch's RNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

Layout = Literal["random", "structured"]
RenderMode = Literal["multichannel", "2channel", "grey", "binary"]
RENDER_MODES: tuple[str, ...] = ("multichannel", "2channel", "grey", "binary")
LAYOUTS: tuple[str, ...] = ("random", "structured")
LOW_HARMONICS = (2, 3, 4)  # smooth irregularity (amplitude <= ``irregularity``)
HIGH_HARMONICS = (6, 7, 8, 9)  # slight jaggedness of the outline


@dataclass(frozen=True)
class NucleusShape:
    """Size and elongation of one nucleus kind (semi-axes in µm).

    Attributes:
        semi_major_um: Range of the semi-major axis ``a``.
        aspect: Range of ``b / a``.
    """

    semi_major_um: tuple[float, float]
    aspect: tuple[float, float]


EPITHELIAL = NucleusShape((2.6, 5.0), (0.45, 0.75))
FIBROBLAST = NucleusShape((2.4, 4.6), (0.35, 0.6))
LYMPHOCYTE = NucleusShape((1.4, 2.2), (0.8, 1.0))


@dataclass(frozen=True)
class MaskParams:
    """Parameters of the pseudo-mask generator (µm-based; defaults give 10-40 nuclei per 64 µm tile).

    Attributes:
        mpp: Micrometres per pixel of the masks (0.25 = 40x, as the real tiles).
        layout: ``random`` (uniform placement) or ``structured`` (crypts + stroma).
        density_per_mm2: Nuclei per mm² of the random layout.
        type1_fraction: Share of type-1 (epithelial-like) nuclei in the random layout.
        crypt_density_per_mm2: Crypts per mm² (structured).
        crypt_radius_um: Range of the lumen radius of a crypt (structured).
        stroma_density_per_mm2: Scattered type-2 nuclei per mm² outside crypts (structured).
        lymphocyte_fraction: Share of small round lymphocytes among type-2 nuclei.
        irregularity: Max amplitude of each low-order radial harmonic (2-4).
        jagged: Max amplitude of each high-order harmonic (outline roughness).
        max_overlap: A candidate is kept when at most this share of its pixels is occupied (then clipped).
        min_area_um2: Smaller (clipped) nuclei are dropped.
        texture_sigma_um: Correlation length of the chromatin-like texture.
        texture_range: Interior intensity range (fractions of 255).
    """

    mpp: float = 0.25
    layout: Layout = "structured"
    density_per_mm2: float = 5500.0
    type1_fraction: float = 0.5
    crypt_density_per_mm2: float = 70.0
    crypt_radius_um: tuple[float, float] = (12.0, 30.0)
    stroma_density_per_mm2: float = 1800.0
    lymphocyte_fraction: float = 0.5
    irregularity: float = 0.12
    jagged: float = 0.02
    max_overlap: float = 0.15
    min_area_um2: float = 4.0
    texture_sigma_um: float = 0.6
    texture_range: tuple[float, float] = (0.4, 1.0)


@dataclass
class NucleusMasks:
    """A generated canvas: ``instances`` int32 ``[H, W]``, ``types`` int8 ``[K + 1]`` (index = id; 0 unused) and
    ``texture`` float32 ``[H, W]`` in ``texture_range``."""

    instances: np.ndarray
    types: np.ndarray
    texture: np.ndarray


class _Canvas:
    """Sequential rasterisation with overlap rejection and clipping (no two nuclei share a pixel)."""

    def __init__(self, shape: tuple[int, int], params: MaskParams, rng: np.random.Generator) -> None:
        self.labels = np.zeros(shape, dtype=np.int32)
        self.types: list[int] = [0]
        self.p, self.rng = params, rng
        self.min_area = params.min_area_um2 / params.mpp**2

    def shape_of(self, kind: NucleusShape) -> tuple[float, float]:
        """Random semi-axes ``(a, b)`` in pixels."""
        a = self.rng.uniform(*kind.semi_major_um) / self.p.mpp
        return a, a * self.rng.uniform(*kind.aspect)

    def add(self, cy: float, cx: float, a: float, b: float, angle: float, kind: int) -> bool:
        """Try to place one nucleus; returns whether it was kept."""
        amps = np.concatenate([self.rng.uniform(-self.p.irregularity, self.p.irregularity, len(LOW_HARMONICS)),
                               self.rng.uniform(-self.p.jagged, self.p.jagged, len(HIGH_HARMONICS))])
        phases = self.rng.uniform(0, 2 * np.pi, len(amps))
        half = int(np.ceil(a * (1 + np.abs(amps).sum()))) + 1
        h, w = self.labels.shape
        y0, x0 = round(cy) - half, round(cx) - half
        ylo, yhi, xlo, xhi = max(0, y0), min(h, y0 + 2 * half + 1), max(0, x0), min(w, x0 + 2 * half + 1)
        if ylo >= yhi or xlo >= xhi:
            return False
        ys, xs = np.mgrid[ylo:yhi, xlo:xhi]
        dy, dx = ys - cy, xs - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
        phi = np.arctan2(v, u)
        ks = np.array(LOW_HARMONICS + HIGH_HARMONICS, dtype=np.float64)
        bound = 1.0 + (amps * np.cos(phi[..., None] * ks + phases)).sum(-1)
        inside = np.hypot(u, v) <= bound
        window = self.labels[ylo:yhi, xlo:xhi]
        area = int(inside.sum())
        if area == 0 or (inside & (window > 0)).sum() > self.p.max_overlap * area:
            return False
        free = inside & (window == 0)
        comp, n = ndimage.label(free)  # 4-connectivity: clipping may split a nucleus, keep the largest part
        if n > 1:
            free = comp == (np.argmax(np.bincount(comp.ravel())[1:]) + 1)
        if free.sum() < self.min_area:
            return False
        window[free] = len(self.types)
        self.types.append(kind)
        return True

    def scatter(self, allowed: np.ndarray, count: int, kinds: list[tuple[NucleusShape, int]], probs: list[float],
                tries: int = 4) -> None:
        """Place up to ``count`` nuclei with centres uniformly in ``allowed`` (``tries`` candidates per nucleus)."""
        flat = np.flatnonzero(allowed)
        if flat.size == 0:
            return
        placed = 0
        for _ in range(count * tries):
            if placed >= count:
                break
            iy, ix = np.divmod(int(flat[self.rng.integers(flat.size)]), allowed.shape[1])
            shape, kind = kinds[int(self.rng.choice(len(kinds), p=probs))]
            a, b = self.shape_of(shape)
            placed += self.add(iy + self.rng.uniform(-0.5, 0.5), ix + self.rng.uniform(-0.5, 0.5), a, b,
                               self.rng.uniform(0, np.pi), kind)


def _area_mm2(shape: tuple[int, int], mpp: float) -> float:
    return shape[0] * shape[1] * (mpp * 1e-3) ** 2


def _stroma_kinds(p: MaskParams) -> tuple[list[tuple[NucleusShape, int]], list[float]]:
    return [(LYMPHOCYTE, 2), (FIBROBLAST, 2)], [p.lymphocyte_fraction, 1.0 - p.lymphocyte_fraction]


def _crypt_curve(rng: np.random.Generator, cy: float, cx: float, radius: float,
                 n: int = 720) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[n, 2]`` (y, x) of a closed Fourier-perturbed circle and its radius ``[n]``."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.full(n, radius)
    for k in (2, 3, 4):
        r += radius * rng.uniform(-0.1, 0.1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.stack([cy + r * np.sin(theta), cx + r * np.cos(theta)], 1), r


def _line_crypt(canvas: _Canvas, pts: np.ndarray, radius: float) -> None:
    """Epithelial nuclei along a closed curve (lumen ``radius``), major axis normal to it, one width apart."""
    tangent = np.roll(pts, -1, 0) - np.roll(pts, 1, 0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)  # outward for a counter-clockwise (y, x) curve
    seg = np.linalg.norm(np.roll(pts, -1, 0) - pts, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = canvas.rng.uniform(0, 5)
    while s < arc[-1]:
        i = int(np.searchsorted(arc, s, side="right") - 1) % len(pts)
        a, b = canvas.shape_of(EPITHELIAL)
        centre = pts[i] + normal[i] * a * 0.95
        angle = float(np.arctan2(normal[i, 0], normal[i, 1]))  # major axis along the normal
        canvas.add(float(centre[0]), float(centre[1]), a, b, angle + canvas.rng.normal(0, 0.1), 1)
        s += 2 * b * canvas.rng.uniform(0.7, 0.95) * radius / (radius + a)  # spacing measured at the centres


def _structured(canvas: _Canvas) -> None:
    p, rng = canvas.p, canvas.rng
    shape = canvas.labels.shape
    n_crypts = int(rng.poisson(p.crypt_density_per_mm2 * _area_mm2(shape, p.mpp)))
    ring = 2.2 * EPITHELIAL.semi_major_um[1] / p.mpp  # epithelium thickness (+ margin)
    crypts: list[tuple[float, float, float]] = []
    for _ in range(n_crypts * 20):
        if len(crypts) >= n_crypts:
            break
        r = rng.uniform(*p.crypt_radius_um) / p.mpp
        cy, cx = rng.uniform(-r, shape[0] + r), rng.uniform(-r, shape[1] + r)
        if all(np.hypot(cy - y, cx - x) > 1.15 * (r + q) + 2 * ring for y, x, q in crypts):
            crypts.append((cy, cx, r))
    occupied = np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx, r in crypts:
        pts, radii = _crypt_curve(rng, cy, cx, r)
        _line_crypt(canvas, pts, r)
        ang = np.arctan2(yy - cy, xx - cx) % (2 * np.pi)
        r_at = radii[(ang / (2 * np.pi) * len(radii)).astype(int) % len(radii)]
        occupied |= np.hypot(yy - cy, xx - cx) < r_at + ring
    count = int(rng.poisson(p.stroma_density_per_mm2 * _area_mm2(shape, p.mpp)))
    canvas.scatter(~occupied, count, *_stroma_kinds(p))


def _random(canvas: _Canvas) -> None:
    p = canvas.p
    count = int(canvas.rng.poisson(p.density_per_mm2 * _area_mm2(canvas.labels.shape, p.mpp)))
    other, probs = _stroma_kinds(p)
    kinds = [(EPITHELIAL, 1), *other]
    weights = [p.type1_fraction, *((1.0 - p.type1_fraction) * np.asarray(probs)).tolist()]
    canvas.scatter(np.ones(canvas.labels.shape, dtype=bool), count, kinds, weights)


def texture_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float,
                  value_range: tuple[float, float]) -> np.ndarray:
    """Low-pass noise rescaled to ``value_range`` (chromatin-like mottling)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), max(sigma_px, 0.5))
    lo, hi = float(noise.min()), float(noise.max())
    unit = (noise - lo) / (hi - lo) if hi > lo else np.zeros(shape)
    return (value_range[0] + unit * (value_range[1] - value_range[0])).astype(np.float32)


def generate_masks(shape: tuple[int, int], params: MaskParams, rng: np.random.Generator) -> NucleusMasks:
    """One canvas of pseudo nuclei (see the module docstring).

    Args:
        shape: ``(H, W)`` in pixels at ``params.mpp``.
        params: Layout, sizes and texture.
        rng: Random generator (the only source of randomness).
    """
    canvas = _Canvas(shape, params, rng)
    (_structured if params.layout == "structured" else _random)(canvas)
    tex = texture_field(rng, shape, params.texture_sigma_um / params.mpp, params.texture_range)
    return NucleusMasks(canvas.labels, np.asarray(canvas.types, dtype=np.int8), tex)


def inner_contour(instances: np.ndarray) -> np.ndarray:
    """Pixels of an instance with a 4-neighbour of another label (or background, or the image border is not one)."""
    pad = np.pad(instances, 1, mode="edge")
    c = pad[1:-1, 1:-1]
    diff = (pad[:-2, 1:-1] != c) | (pad[2:, 1:-1] != c) | (pad[1:-1, :-2] != c) | (pad[1:-1, 2:] != c)
    return diff & (c > 0)


def render(instances: np.ndarray, types: np.ndarray, texture: np.ndarray | None,
           mode: RenderMode = "multichannel") -> np.ndarray:
    """The mask image ``uint8 [H, W, 3]`` in one of :data:`RENDER_MODES` (§1.2 of the spec).

    ``multichannel``: R = inner contour, G = textured type-1 interiors, B = textured type-2 interiors;
    ``2channel``: the same with R = 0; ``grey``: B copied into G where G is 0, repeated 3x; ``binary``: 255 on
    every nucleus pixel, all channels.
    """
    fg = instances > 0
    if mode == "binary":
        return np.repeat((fg * 255).astype(np.uint8)[..., None], 3, axis=2)
    tex = np.ones(instances.shape, np.float32) if texture is None else texture
    kind = np.asarray(types)[instances]
    g = np.where(fg & (kind == 1), np.rint(tex * 255), 0).astype(np.uint8)
    b = np.where(fg & (kind == 2), np.rint(tex * 255), 0).astype(np.uint8)
    if mode == "grey":
        grey = np.where(g == 0, b, g)
        return np.stack([grey, grey, grey], axis=2)
    r = (inner_contour(instances) * 255).astype(np.uint8) if mode == "multichannel" else np.zeros_like(g)
    return np.stack([r, g, b], axis=2)


def renumber(instances: np.ndarray) -> np.ndarray:
    """Ids renumbered to ``1..K`` in order of first appearance (row-major), background kept 0."""
    ids, inverse = np.unique(instances, return_inverse=True)
    order = np.zeros(len(ids), dtype=np.int32)
    nonzero = ids != 0
    first = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(first, inverse.ravel(), np.arange(inverse.size))
    ranks = np.argsort(np.argsort(np.where(nonzero, first, -1)))
    order[nonzero] = ranks[nonzero] - (~nonzero).sum() + 1
    return order[inverse].reshape(instances.shape).astype(np.int32)
