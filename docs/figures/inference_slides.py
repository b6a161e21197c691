"""Draw the whole-slide inference outputs of the real slides: ``docs/img/inference_slides.png``.

For each slide folder written by ``pathseg predict`` (one row per slide): its ``overlay.png`` (thumbnail with the
class map painted), and the polygons of its ``annotations.geojson`` (level-0 pixel coordinates, QuPath's layout)
drawn over the slide's thumbnail read with OpenSlide: outer rings green, holes yellow.

Usage::

    .venv/bin/python docs/figures/inference_slides.py --pred runs/pred_real \\
        --slides ../shared/data/slides [--out docs/img/inference_slides.png]

The slides stay in the shared data folder (never copied into the repository); only the PNG is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from PIL import Image


def draw_polygons(ax: Axes, geojson: Path, scale: float) -> int:
    """Draw every polygon ring of ``geojson`` scaled by ``scale``; returns the number of polygons."""
    count = 0
    for feature in json.loads(geojson.read_text())["features"]:
        geom = feature["geometry"]
        polygons = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        for rings in polygons:
            count += 1
            for k, ring in enumerate(rings):
                xy = np.asarray(ring, dtype=float) * scale
                ax.plot(xy[:, 0], xy[:, 1], color="yellow" if k else "lime", linewidth=0.6)
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", type=Path, required=True, help="the --out folder of pathseg predict")
    ap.add_argument("--slides", type=Path, required=True, help="folder of the slides that were predicted")
    ap.add_argument("--out", type=Path, default=Path("docs/img/inference_slides.png"))
    args = ap.parse_args()
    import openslide

    folders = sorted(p.parent for p in args.pred.glob("*/overlay.png"))
    fig, axes = plt.subplots(len(folders), 2, figsize=(11, 4.6 * len(folders)), squeeze=False)
    for row, folder in zip(axes, folders):
        overlay = np.asarray(Image.open(folder / "overlay.png").convert("RGB"))
        slide_path = next(p for p in args.slides.iterdir() if p.stem == folder.name)
        with openslide.OpenSlide(str(slide_path)) as slide:
            width = slide.dimensions[0]
            thumb = np.asarray(slide.get_thumbnail((overlay.shape[1], overlay.shape[0])).convert("RGB"))
        row[0].imshow(overlay)
        row[0].set_title(f"{folder.name}: overlay.png", fontsize=9)
        row[1].imshow(thumb)
        n = draw_polygons(row[1], folder / "annotations.geojson", thumb.shape[1] / width)
        row[1].set_title(f"annotations.geojson: {n} polygons", fontsize=9)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
