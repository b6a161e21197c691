"""Draw URL's three tasks on a real GlaS image with its superpixels: ``docs/img/url_tasks.png``.

Usage::

    .venv/bin/python docs/figures/url_tasks.py [--glas ../shared/data/glas] [--out docs/img/url_tasks.png]

The image is read from the shared data folder (never copied into the repository); only the PNG is written.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import ConnectionPatch
from PIL import Image
from skimage.segmentation import find_boundaries

from pathseg.io import read_rgb
from pathseg.ssl.url.config import SuperpixelConfig, ViewConfig
from pathseg.ssl.url.superpixels import compute_superpixels
from pathseg.ssl.url.views import make_view, sample_center

ROOT = Path(__file__).resolve().parents[2]


def _display(x: torch.Tensor, cfg: ViewConfig) -> np.ndarray:
    mean = torch.tensor(cfg.mean).view(3, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    return ((x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _overlay(rgb: np.ndarray, ids: np.ndarray, highlight: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """Superpixel borders in yellow; highlighted ids tinted."""
    if ids.shape != rgb.shape[:2]:
        ids = np.kron(ids, np.ones((rgb.shape[0] // ids.shape[0], rgb.shape[1] // ids.shape[1]), dtype=ids.dtype))
    out = rgb.astype(float) / 255
    for k, colour in highlight.items():
        m = ids == k
        out[m] = 0.45 * out[m] + 0.55 * np.array(colour)
    out[find_boundaries(ids, mode="inner")] = (1.0, 0.9, 0.2)
    out[ids < 0] = 0.15
    return out


def _centroid(ids: np.ndarray, k: int, scale: float) -> tuple[float, float]:
    ys, xs = np.nonzero(ids == k)
    return float(xs.mean() * scale), float(ys.mean() * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glas", type=Path, default=ROOT.parent / "shared" / "data" / "glas")
    parser.add_argument("--image", default="train_1")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "url_tasks.png")
    args = parser.parse_args()

    rgb = read_rgb(args.glas / "train" / "images" / f"{args.image}.png")
    sp_cfg = SuperpixelConfig(region_size=32)
    ids = compute_superpixels(rgb, sp_cfg)
    cfg = ViewConfig(crop_size=256, patch_size=512, dense_translate=0.05)
    gen = torch.Generator().manual_seed(3)
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()
    center = sample_center(rgb.shape[:2], cfg.patch_size, gen)
    ids_t = torch.from_numpy(ids.astype(np.int64))
    views = [make_view(image, ids_t, center, cfg, gen, cfg.scales, 8.0) for _ in range(2)]
    sp = [v[1].numpy() for v in views if v[1] is not None]
    shared = np.intersect1d(sp[0][sp[0] >= 0], sp[1][sp[1] >= 0])
    counts = np.array([min((sp[0] == k).sum(), (sp[1] == k).sum()) for k in shared])
    mid = sp[0].shape[0] / 2
    dist = np.array([np.hypot(*(np.array(_centroid(sp[0], int(k), 1.0)) - mid)) for k in shared])
    anchor = int(shared[np.argmin(np.where(counts >= np.median(counts), dist, np.inf))])

    fig = plt.figure(figsize=(15, 5.6), dpi=90)
    grid = fig.add_gridspec(2, 9, height_ratios=[1, 1], wspace=0.08, hspace=0.25)
    ax0 = fig.add_subplot(grid[:, 0:2])
    ax0.imshow(_overlay(rgb, ids, {}))
    ax0.plot(*center, "c+", ms=14, mew=2)
    ax0.set_axis_off()
    ax0.set_title(f"GlaS {args.image} with SLIC superpixels\n(region 32 px, {ids.max() + 1} superpixels)", fontsize=9)

    # (a) image-level task: S scales x 2 views
    names = ["×1", "×1/2", "×2/3", "×4/3", "×2"]
    scale_axes = [[fig.add_subplot(grid[r, 2 + c]) for c in range(3)] for r in range(2)]
    shown = [0, 1, 4]
    for r in range(2):
        for c, s in enumerate(shown):
            ax = scale_axes[r][c]
            ax.imshow(_display(views[r][0][s], cfg))
            colour = "lime" if s == 0 else "tomato"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if s == 0 else 1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"view {r + 1}, zoom {names[s]}", fontsize=8)
    fig.add_artist(ConnectionPatch((0.5, 0.0), (0.5, 1.0), "axes fraction", "axes fraction",
                                   axesA=scale_axes[0][0], axesB=scale_axes[1][0], color="lime", lw=2,
                                   arrowstyle="<->"))
    scale_axes[0][1].text(0.5, -0.14, "(a) image level: positive = same zoom in the other view (green),\n"
                          "negatives = the other zooms of the same image, both views (red)",
                          transform=scale_axes[0][1].transAxes, ha="center", va="top", fontsize=8)

    # (b) superpixel level: the same id in both views
    stride = cfg.dense_stride
    sb = [fig.add_subplot(grid[r, 5:7]) for r in range(2)]
    for r in range(2):
        others = [k for k in np.unique(sp[r]) if k >= 0 and k != anchor][:: max(1, len(np.unique(sp[r])) // 6)]
        tint = {anchor: (0.0, 1.0, 0.0), **dict.fromkeys(others, (1.0, 0.2, 0.2))}
        sb[r].imshow(_overlay(_display(views[r][0][0], cfg), sp[r], tint))
        sb[r].set_axis_off()
        sb[r].set_title(f"view {r + 1}: prototypes = mean embedding per id", fontsize=8)
    xy0, xy1 = _centroid(sp[0], anchor, stride), _centroid(sp[1], anchor, stride)
    fig.add_artist(ConnectionPatch(xy0, xy1, "data", "data", axesA=sb[0], axesB=sb[1], color="lime", lw=2,
                                   arrowstyle="<->"))
    sb[1].text(0.5, -0.04, "(b) superpixel level: same id across views = positive (green);\n"
               "all other superpixels of both views = negatives (some in red)",
               transform=sb[1].transAxes, ha="center", va="top", fontsize=8)

    # (c) pixel level: pixels of a superpixel vs the other prototypes, within one view
    pc = fig.add_subplot(grid[:, 7:9])
    pc.imshow(_overlay(_display(views[0][0][0], cfg), sp[0], {anchor: (0, 1, 0)}))
    ax_c, ay_c = xy0
    ys, xs = np.nonzero(sp[0] == anchor)
    pick = np.linspace(0, len(xs) - 1, min(8, len(xs))).astype(int)
    for x, y in zip(xs[pick] * stride + 1, ys[pick] * stride + 1):
        pc.plot([ax_c, x], [ay_c, y], color="lime", lw=1)
    for k in [k for k in np.unique(sp[0]) if k >= 0 and k != anchor][::3]:
        x, y = _centroid(sp[0], int(k), stride)
        pc.plot([ax_c, x], [ay_c, y], color="tomato", lw=0.8, alpha=0.8)
        pc.plot(x, y, "o", color="tomato", ms=3)
    pc.plot(ax_c, ay_c, "*", color="white", ms=14, mec="black")
    pc.set_axis_off()
    pc.set_title("(c) pixel level (one view): the prototype (star) should\nbe close to its own pixels (green) and far "
                 "from the\nother superpixels' prototypes (red)", fontsize=8)
    fig.suptitle("URL: global-to-local contrastive tasks (image → superpixel → pixel)", fontsize=11)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    img = Image.open(buf).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
