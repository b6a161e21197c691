"""Synthetic whole slides: tissue pieces on a white background, written as pyramidal tiled TIFFs.

Output of ``pathseg synth --kind slide --out DIR``::

    DIR/slides/<id>.tiff     # pyramidal tiled TIFF (JPEG tiles 256 px, levels by factor 2, µm/px in the
                             # resolution tags: ResolutionUnit = centimeter, XResolution = 1e4 / mpp)
    DIR/masks/<id>.png       # uint8 tissue class per pixel at 1/mask_downsample of level 0 (nearest neighbour:
                             # mask pixel (i, j) is level-0 pixel (i * ds, j * ds)); 0 = background (glass)
    DIR/slides.json          # mpp, mask_downsample, class table and per-slide sizes and tissue fractions
"""

from __future__ import annotations

import time

import numpy as np

from pathseg.io import staging_dir, write_png
from pathseg.runs import write_json
from pathseg.synth.classes import BACKGROUND, TISSUE_CLASSES
from pathseg.synth.config import SynthConfig
from pathseg.synth.fields import smooth_noise, voronoi_labels
from pathseg.synth.render import make_rng, render

SLIDE_WEIGHTS = (0.0, 0.35, 0.35, 0.18, 0.12)  # region classes inside tissue (no background holes)


def slide_layout(
    rng: np.random.Generator, shape: tuple[int, int], mpp: float, tissue_fraction: float = 0.35
) -> np.ndarray:
    """Class map of a slide: a few irregular tissue pieces away from the border, split into tissue regions.

    Args:
        rng: Random generator.
        shape: ``(H, W)`` of level 0.
        mpp: µm per pixel (regions are about 250 µm across).
        tissue_fraction: Approximate share of the slide covered by tissue.
    """
    h, w = shape
    side = min(h, w)
    blob = smooth_noise(rng, shape, side / 10)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    blob = blob - 2.5 * (np.maximum(np.abs(yy), np.abs(xx)) ** 6)  # push tissue away from the slide edges
    tissue = blob > np.quantile(blob, 1 - tissue_fraction)
    region_um = 250.0
    n_cells = max(4, int(h * w * mpp * mpp / region_um**2))
    p = np.asarray(SLIDE_WEIGHTS, dtype=np.float64)
    classes = rng.choice(len(p), size=n_cells, p=p / p.sum())
    cell = region_um / mpp
    cmap = voronoi_labels(rng, shape, classes.tolist(), warp=0.5 * cell, warp_sigma=0.6 * cell)
    return np.where(tissue, cmap, BACKGROUND).astype(np.uint8)


def generate_slide(seed: int, index: int, width: int, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Slide ``index`` for ``seed``: RGB level 0 (``height = 3/4 width``) and its tissue class mask."""
    height = (width * 3) // 4
    rng = make_rng(seed, 1_000_000 + index)
    cmap = slide_layout(rng, (height, width), mpp)
    sample = render(rng, cmap, mpp)
    return sample.image, sample.mask


def write_synth_slides(cfg: SynthConfig, progress: bool = True) -> list[dict[str, object]]:
    """Generate ``cfg.n`` slides of width ``cfg.image_size`` under ``cfg.out`` (atomically).

    Returns:
        One record per slide (as in ``slides.json``).
    """
    from pathseg.slides.write import pyramid_shapes, write_pyramidal_tiff

    records: list[dict[str, object]] = []
    ds = cfg.mask_downsample
    start = time.time()
    with staging_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        for i in range(cfg.n):
            sid = f"slide_{i:03d}"
            rgb, mask = generate_slide(cfg.seed, i, cfg.image_size, cfg.mpp)
            write_pyramidal_tiff(tmp / "slides" / f"{sid}.tiff", rgb, mpp=cfg.mpp, tile_size=256, quality=90)
            write_png(tmp / "masks" / f"{sid}.png", np.ascontiguousarray(mask[::ds, ::ds]),
                      palette=[c.color for c in TISSUE_CLASSES])
            counts = np.bincount(mask.ravel(), minlength=len(TISSUE_CLASSES))
            records.append({
                "id": sid, "slide": f"slides/{sid}.tiff", "mask": f"masks/{sid}.png",
                "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                "levels": [list(s) for s in pyramid_shapes(*rgb.shape[:2])],
                "tissue_fraction": float(1 - counts[BACKGROUND] / mask.size),
                "class_fractions": {c.name: float(counts[c.index] / mask.size) for c in TISSUE_CLASSES},
            })
            if progress:
                print(f"synth: {sid} {rgb.shape[1]}x{rgb.shape[0]} ({time.time() - start:.1f} s)", flush=True)
        write_json(tmp / "slides.json", {
            "generator": "pathseg.synth", "seed": cfg.seed, "mpp": cfg.mpp, "mask_downsample": ds,
            "mask_sampling": "nearest: mask[i, j] = class of level-0 pixel (i * ds, j * ds)",
            "classes": [{"name": c.name, "index": c.index, "color": list(c.color)} for c in TISSUE_CLASSES],
            "slides": records,
        })
    return records
