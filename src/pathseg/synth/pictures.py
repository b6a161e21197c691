"""Pictures of images with label overlays, class legends and prediction comparisons (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathseg.io import atomic_path


def overlay(image: np.ndarray, mask: np.ndarray, palette: Sequence[tuple[int, int, int]], alpha: float = 0.45,
            skip: Sequence[int] = ()) -> np.ndarray:
    """Blend class colours over ``image`` (classes in ``skip`` are left uncoloured), with class borders darkened."""
    pal = np.asarray(palette, dtype=np.float32)
    idx = np.clip(mask.astype(np.int64), 0, len(pal) - 1)
    colour = pal[idx]
    weight = np.where(np.isin(mask, list(skip)), 0.0, alpha)[..., None]
    out = image.astype(np.float32) * (1 - weight) + colour * weight
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    out[edge] = out[edge] * 0.3
    return np.clip(out, 0, 255).astype(np.uint8)


def save_grid(
    path: str | os.PathLike[str],
    rows: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str],
    class_names: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    title: str = "",
    dpi: int = 80,
) -> Path:
    """Save a grid of RGB panels (one list per row) with a class legend, as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.9 * n_rows + 0.7), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(row):
                ax.imshow(row[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=9)
    handles = [Patch(facecolor=(col[0] / 255.0, col[1] / 255.0, col[2] / 255.0), edgecolor="black", label=name)
               for name, col in zip(class_names, palette)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97 if title else 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


def instance_colours(instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB picture of an instance map: each id a random colour, background black."""
    rng = np.random.default_rng(seed)
    lut = rng.integers(60, 256, size=(int(instances.max()) + 1, 3)).astype(np.uint8)
    lut[0] = 0
    return lut[instances]


def save_examples(path: str | os.PathLike[str], seed: int = 0, n: int = 5, size: int = 192) -> Path:
    """The documentation figure: synthetic images, their tissue classes and nucleus instances."""
    from pathseg.synth.classes import TISSUE_CLASSES
    from pathseg.synth.render import generate_sample

    samples = [generate_sample(seed, i, size) for i in range(n)]
    pal = [c.color for c in TISSUE_CLASSES]
    rows = [[s.image for s in samples], [overlay(s.image, s.mask, pal, alpha=0.5) for s in samples],
            [instance_colours(s.instances, i) for i, s in enumerate(samples)]]
    save_grid(path, rows, ["image", "tissue classes", "nuclei"], [c.name for c in TISSUE_CLASSES], pal,
              title=f"pathseg synth (seed {seed}, {size} px at 0.5 µm/px)", dpi=90)
    from PIL import Image

    with Image.open(path) as img:  # 256-colour palette keeps the documentation figure small
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    return Path(path)
