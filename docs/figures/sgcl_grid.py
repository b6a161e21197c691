"""Draw SGCL's positives and negatives of one anchor tile on the tile grid of real slides: ``docs/img/sgcl_grid.png``.

The tile grid comes from a tile index (``pathseg tile``); the memory banks and k-means labels from an SGCL run on that
index (``pathseg pretrain --method sgcl``). For one interior anchor tile the figure colours its spatial neighbours
(δ), its semantic positives (auxiliary anchor + kNN + agreement of the k-means labellings) and one step's Beta-sampled
semi-hard negatives, exactly as :class:`pathseg.ssl.sgcl.method.SGCL` selects them.

Usage::

    pathseg tile ../shared/data/slides --out /tmp/tiles --mpp 1.0 --size 64 --min-tissue 0.5 --slide-mpp 0.5
    pathseg pretrain --method sgcl --data /tmp/tiles/tiles.csv --out /tmp/sgcl ...   # see docs/methods/sgcl.md
    .venv/bin/python docs/figures/sgcl_grid.py --run /tmp/sgcl [--out docs/img/sgcl_grid.png]

Slides are read from the shared data folder (never copied into the repository); only the PNG is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch, Rectangle

from pathseg.data.tiles import TileDataset
from pathseg.ssl.engine import load_method_from_run
from pathseg.ssl.sgcl import mine_negatives, semantic_positives, spatial_neighbors

COLOURS = {"anchor": "#ffd400", "spatial": "#1f77b4", "semantic": "#2ca02c", "negative": "#d62728"}
THUMB = 16  # pixels per tile in the mosaic


def select(method: object, anchor: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Boolean masks ``[N]`` of the anchor's spatial neighbours, semantic positives and sampled negatives."""
    m = method  # an SGCL model with trained banks
    v, u = m.bank_global.bank, m.bank_backbone.bank  # type: ignore[attr-defined]
    idx = torch.tensor([anchor])
    z = v[idx]  # the anchor's memory entry stands in for a fresh forward pass
    spatial = spatial_neighbors(m.bank_slide[idx], m.bank_xy[idx], m.bank_slide, m.bank_xy,  # type: ignore[attr-defined]
                                m.dis_threshold)  # type: ignore[attr-defined]
    sem = semantic_positives(z, idx, z @ v.T, spatial, v, m.labels, m.aux_num, m.nei_k)  # type: ignore[attr-defined]
    sem &= ~spatial
    exclude = spatial | sem
    exclude[0, anchor] = True
    g = torch.Generator().manual_seed(seed)
    ranks = torch.multinomial(m.rank_pdf, m.nei_k, replacement=False, generator=g)  # type: ignore[attr-defined]
    neg, valid = mine_negatives(u[idx] @ u.T, exclude, ranks, m.top)  # type: ignore[attr-defined]
    negatives = torch.zeros_like(spatial)
    negatives[0, neg[valid]] = True
    return {"spatial": spatial[0].numpy(), "semantic": sem[0].numpy(), "negative": negatives[0].numpy()}


def pick_anchor(method: object, slide: int) -> int:
    """An interior tile of ``slide`` (most spatial neighbours, then nearest the slide's tile centroid)."""
    xy, s = method.bank_xy, method.bank_slide  # type: ignore[attr-defined]
    on = torch.nonzero(s == slide).flatten()
    counts = spatial_neighbors(s[on], xy[on], s, xy, method.dis_threshold).sum(1)  # type: ignore[attr-defined]
    full = on[counts == counts.max()]
    centre = xy[on].mean(0)
    return int(full[torch.argmin(((xy[full] - centre) ** 2).sum(1))])


def draw(run: Path, out: Path) -> None:
    """Write the figure."""
    loaded, cfg = load_method_from_run(run, run / "checkpoints" / "last.ckpt")
    method: Any = loaded
    method.eval()
    tiles = TileDataset(cfg.data)
    names = sorted({r.slide_id for r in tiles.records})
    n_slides = len(names)
    anchor = pick_anchor(method, int(method.bank_slide[np.argmax([r.slide_id == names[-1] for r in tiles.records])]))
    masks = select(method, anchor)
    fig, axes = plt.subplots(1, n_slides, figsize=(6.5 * n_slides, 6.2), dpi=90)
    for k, name in enumerate(names):
        ax = np.atleast_1d(axes)[k]
        rows = [i for i, r in enumerate(tiles.records) if r.slide_id == name]
        r0 = min(tiles.records[i].row for i in rows)
        c0 = min(tiles.records[i].col for i in rows)
        h = max(tiles.records[i].row for i in rows) - r0 + 1
        w = max(tiles.records[i].col for i in rows) - c0 + 1
        mosaic = np.full((h * THUMB, w * THUMB, 3), 255, np.uint8)
        for i in rows:
            rec = tiles.records[i]
            img = tiles.read(i)
            step = max(1, img.shape[0] // THUMB)
            y, x = (rec.row - r0) * THUMB, (rec.col - c0) * THUMB
            mosaic[y:y + THUMB, x:x + THUMB] = img[::step, ::step][:THUMB, :THUMB]
        ax.imshow(mosaic, alpha=0.85)
        for i in rows:
            rec = tiles.records[i]
            kind = "anchor" if i == anchor else next((key for key in ("spatial", "semantic", "negative")
                                                       if masks[key][i]), None)
            if kind is None:
                continue
            edge = "black" if kind == "anchor" else COLOURS[kind]
            ax.add_patch(Rectangle(((rec.col - c0) * THUMB, (rec.row - r0) * THUMB), THUMB, THUMB,
                                   facecolor=COLOURS[kind], alpha=0.9 if kind == "anchor" else 0.55,
                                   edgecolor=edge, lw=1.5 if kind == "anchor" else 1.2))
        counts = {key: int(masks[key][rows].sum()) for key in masks}
        ax.set_title(f"{name}: {len(rows)} tiles\n{counts['spatial']} spatial, {counts['semantic']} semantic, "
                     f"{counts['negative']} negatives", fontsize=10)
        ax.axis("off")
    handles = [Patch(color=COLOURS[k], label=k) for k in COLOURS]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(f"SGCL selections of one anchor tile (δ = {method.dis_threshold:g} tiles, nei_k = {method.nei_k}, "
                 f"{method.labels.shape[0]} × k-means with {method.kmeans_k} clusters)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    tiles.close()


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="SGCL pretraining run on a tile index")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "img" / "sgcl_grid.png")
    args = parser.parse_args()
    draw(args.run, args.out)


if __name__ == "__main__":
    main()
