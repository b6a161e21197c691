"""Draw PLM's precise location matching on a real GlaS image: ``docs/img/plm_grid.png``.

Two views of GlaS ``train_1`` from PLM's view pipeline (geometry only, no colour jitter, so that the tissue is
recognisable), their 7 × 7 cell grids in the source image, and for three query cells the key cells that overlap
them with their matching weights ``M^q_ij`` (the row-normalised overlap) and the coverage ``ω^q_i``.

Usage::

    .venv/bin/python docs/figures/plm_grid.py [--glas ../shared/data/glas] [--out docs/img/plm_grid.png]

The image is read from the shared data folder (never copied into the repository); only the PNG is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from pathseg.io import read_rgb
from pathseg.ssl.plm import grid_boxes, overlap_fractions
from pathseg.ssl.plm.geometry import row_normalize
from pathseg.ssl.plm.views import Geometry, apply_geometry

ROOT = Path(__file__).resolve().parents[2]
G, SIZE = 7, 224
COLOURS = [(0.1, 0.45, 0.95), (0.95, 0.3, 0.1), (0.1, 0.7, 0.25)]


def _views(h: int, w: int) -> tuple[Geometry, Geometry]:
    """Two overlapping crops (ratio within 3/4-4/3 as RandomResizedCrop); view 2 is flipped horizontally."""
    q = Geometry(top=int(0.10 * h), left=int(0.18 * w), height=int(0.62 * h), width=int(0.50 * w))
    k = Geometry(top=int(0.30 * h), left=int(0.36 * w), height=int(0.58 * h), width=int(0.42 * w), hflip=True)
    return q, k


def _grid(ax: Axes, colour: str) -> None:
    for t in range(G + 1):
        ax.axhline(t * SIZE / G - 0.5, color=colour, lw=0.6)
        ax.axvline(t * SIZE / G - 0.5, color=colour, lw=0.6)


def _cell(ax: Axes, idx: int, colour: tuple[float, float, float], alpha: float, text: str = "") -> None:
    r, c, s = idx // G, idx % G, SIZE / G
    ax.add_patch(Rectangle((c * s - 0.5, r * s - 0.5), s, s, facecolor=(*colour, alpha), edgecolor=colour, lw=1.5))
    if text:
        ax.text((c + 0.5) * s, (r + 0.5) * s, text, ha="center", va="center", fontsize=6.5, color="white",
                fontweight="bold")


def draw(glas: Path, out: Path) -> Path:
    """Render the figure from ``glas/train/images/train_1.png`` to ``out``."""
    img = read_rgb(glas / "train" / "images" / "train_1.png")
    h, w = img.shape[:2]
    src = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    gq, gk = _views(h, w)
    boxes_q = grid_boxes(gq.record((h, w))[None], G)
    boxes_k = grid_boxes(gk.record((h, w))[None], G)
    pq, _ = overlap_fractions(boxes_q, boxes_k)
    mq, wq = row_normalize(pq)
    picks = [2 * G + 3, 4 * G + 5, 6 * G + 6]  # query cells: one partly covered by view 2, two inside it
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6), gridspec_kw={"width_ratios": [1.49, 1, 1]})
    ax = axes[0]
    ax.imshow(img)
    for geom, boxes, edge in ((gq, boxes_q, "tab:blue"), (gk, boxes_k, "tab:orange")):
        for t, le, b, r in boxes[0].tolist():
            ax.add_patch(Rectangle((le * w, t * h), (r - le) * w, (b - t) * h, fill=False, edgecolor=edge, lw=0.4))
        ax.add_patch(Rectangle((geom.left, geom.top), geom.width, geom.height, fill=False, edgecolor=edge, lw=2))
    for i, colour in zip(picks, COLOURS):
        t, le, b, r = boxes_q[0, i].tolist()
        ax.add_patch(Rectangle((le * w, t * h), (r - le) * w, (b - t) * h, facecolor=(*colour, 0.55),
                               edgecolor=colour, lw=1.5))
    ax.set_title("(a) GlaS train_1: view 1 (blue) and view 2 (orange) cells", fontsize=9)
    for a, geom, title in ((axes[1], gq, "(b) view 1 (query), 7×7 cells"),
                           (axes[2], gk, "(c) view 2 (key, flipped): weights $M^q_{ij}$")):
        a.imshow(apply_geometry(src, geom, SIZE).permute(1, 2, 0).numpy())
        _grid(a, "white")
        a.set_title(title, fontsize=9)
    for i, colour in zip(picks, COLOURS):
        _cell(axes[1], i, colour, 0.55, f"ω={float(wq[0, i]):.2f}")
        for j in torch.nonzero(mq[0, i] > 0).flatten().tolist():
            weight = float(mq[0, i, j])
            _cell(axes[2], j, colour, 0.15 + 0.7 * weight, f"{weight:.2f}")
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glas", type=Path, default=ROOT.parent / "shared" / "data" / "glas")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "plm_grid.png")
    args = ap.parse_args()
    print(draw(args.glas, args.out))


if __name__ == "__main__":
    main()
