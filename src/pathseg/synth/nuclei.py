"""Nuclei as non-overlapping jittered ellipses: placement by random sequential adsorption, batched rasterisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

N_HARMONICS = 3  # boundary irregularity: harmonics 2..4 of the polar angle


@dataclass
class Ellipses:
    """Parameters of ``n`` nuclei (all arrays of length ``n``; ``harm`` is ``[n, 2 * N_HARMONICS]``)."""

    cy: np.ndarray
    cx: np.ndarray
    a: np.ndarray
    b: np.ndarray
    angle: np.ndarray
    harm: np.ndarray
    jitter: float

    def __len__(self) -> int:
        return len(self.cy)

    def extent(self) -> np.ndarray:
        """Radius of a circle that surely contains each nucleus (the boundary factor is at most 1 + sum |amp|)."""
        return self.a * (1.0 + np.abs(self.harm[:, :N_HARMONICS]).sum(axis=1))

    def select(self, keep: np.ndarray) -> Ellipses:
        """The nuclei where ``keep`` is true."""
        return Ellipses(self.cy[keep], self.cx[keep], self.a[keep], self.b[keep], self.angle[keep],
                        self.harm[keep], self.jitter)


def sample_ellipses(
    rng: np.random.Generator,
    region: np.ndarray,
    count: int,
    semi_major_px: tuple[float, float],
    aspect: tuple[float, float],
    jitter: float,
    direction: np.ndarray | None = None,
) -> Ellipses:
    """Draw ``count`` candidate nuclei with centres uniformly inside ``region``.

    Args:
        rng: Random generator.
        region: ``[H, W]`` bool mask of allowed centres.
        count: Number of candidates.
        semi_major_px: Range of the semi-major axis in pixels.
        aspect: Range of the minor/major ratio.
        jitter: Boundary irregularity amplitude per harmonic.
        direction: Optional ``[H, W]`` orientation field (radians) that the nuclei follow.
    """
    flat = np.flatnonzero(region)
    if flat.size == 0 or count <= 0:
        empty = np.zeros(0, dtype=np.float64)
        return Ellipses(empty, empty, empty, empty, empty, np.zeros((0, 2 * N_HARMONICS)), jitter)
    idx = flat[rng.integers(0, flat.size, count)]
    iy, ix = np.divmod(idx, region.shape[1])
    cy = iy + rng.uniform(-0.5, 0.5, count)
    cx = ix + rng.uniform(-0.5, 0.5, count)
    a = rng.uniform(*semi_major_px, count)
    b = a * rng.uniform(*aspect, count)
    if direction is None:
        angle = rng.uniform(0, np.pi, count)
    else:
        angle = direction[iy, ix].astype(np.float64) + rng.normal(0, 0.12, count)
    harm = np.concatenate(
        [rng.uniform(-jitter, jitter, (count, N_HARMONICS)), rng.uniform(0, 2 * np.pi, (count, N_HARMONICS))], axis=1
    )
    return Ellipses(cy, cx, a, b, angle, harm, jitter)


def reject_overlaps(nuc: Ellipses, gap: float = 1.0) -> Ellipses:
    """Keep nuclei in order unless they would touch an earlier kept one (random sequential adsorption).

    Two nuclei conflict when their centres are closer than the sum of their :meth:`Ellipses.extent` plus ``gap``.
    """
    n = len(nuc)
    if n < 2:
        return nuc
    ext = nuc.extent()
    pts = np.stack([nuc.cy, nuc.cx], axis=1)
    pairs = cKDTree(pts).query_pairs(r=2 * float(ext.max()) + gap, output_type="ndarray")
    if pairs.size:
        d = np.hypot(*(pts[pairs[:, 0]] - pts[pairs[:, 1]]).T)
        pairs = pairs[d < ext[pairs[:, 0]] + ext[pairs[:, 1]] + gap]
    pairs = np.sort(pairs, axis=1)  # (earlier, later)
    order = np.argsort(pairs[:, 0], kind="stable")
    first, later = pairs[order, 0], pairs[order, 1]
    starts = np.searchsorted(first, np.arange(n + 1))
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if keep[i] and starts[i] < starts[i + 1]:
            keep[later[starts[i] : starts[i + 1]]] = False
    return nuc.select(keep)


def endpoints_inside(nuc: Ellipses, region: np.ndarray) -> np.ndarray:
    """Whether the four axis end points of each nucleus lie in ``region`` (points outside the image count as in)."""
    h, w = region.shape
    ok = np.ones(len(nuc), dtype=bool)
    ca, sa = np.cos(nuc.angle), np.sin(nuc.angle)
    for r, c, s in ((nuc.a, ca, sa), (nuc.b, -sa, ca)):
        for sign in (-1.0, 1.0):
            y = np.rint(nuc.cy + sign * r * s).astype(np.int64)
            x = np.rint(nuc.cx + sign * r * c).astype(np.int64)
            inside_img = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            ok &= ~inside_img | region[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]
    return ok


def rasterise(
    nuc: Ellipses, shape: tuple[int, int], first_id: int, labels: np.ndarray, radial: np.ndarray, chunk: int = 1024
) -> None:
    """Draw nuclei into ``labels`` (ids ``first_id, first_id + 1, ...``) and their normalised radius into ``radial``.

    ``radial`` is 0 at a nucleus centre and 1 on its boundary; it is used for rim shading. Pixels are only written
    where the nucleus covers them, so nuclei must not overlap (see :func:`reject_overlaps`).
    """
    if len(nuc) == 0:
        return
    h, w = shape
    half = int(np.ceil(nuc.extent().max())) + 1
    off = np.arange(-half, half + 1)
    ks = np.arange(2, 2 + N_HARMONICS)
    for s in range(0, len(nuc), chunk):
        sl = slice(s, s + chunk)
        cy, cx = nuc.cy[sl, None, None], nuc.cx[sl, None, None]
        py = np.rint(cy).astype(np.int64) + off[None, :, None]
        px = np.rint(cx).astype(np.int64) + off[None, None, :]
        dy, dx = py - cy, px - cx
        ca, sa = np.cos(nuc.angle[sl])[:, None, None], np.sin(nuc.angle[sl])[:, None, None]
        u = (dx * ca + dy * sa) / nuc.a[sl, None, None]
        v = (-dx * sa + dy * ca) / nuc.b[sl, None, None]
        rho = np.hypot(u, v)
        phi = np.arctan2(v, u)
        amp, ph = nuc.harm[sl, :N_HARMONICS], nuc.harm[sl, N_HARMONICS:]
        bound = 1.0 + np.einsum("nk,nyxk->nyx", amp, np.cos(phi[..., None] * ks + ph[:, None, None, :]))
        inside = (rho <= bound) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
        n_idx, yi, xi = np.nonzero(inside)
        ys, xs = py[n_idx, yi, 0], px[n_idx, 0, xi]
        labels[ys, xs] = first_id + s + n_idx
        radial[ys, xs] = (rho / bound)[n_idx, yi, xi]
