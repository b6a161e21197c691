"""Helpers of the whole-slide inference tests: a tiny real network, its run folder, small synthetic slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pathseg.inference.model import LoadedModel
from pathseg.slides.write import write_pyramidal_tiff
from pathseg.tasks.common import ModelSpec

GLASS = (242, 240, 244)
COLOURS = [(210, 120, 180), (120, 50, 140), (230, 170, 200)]
NAMES = ["background", "gland", "nucleus"]


def tiny_net(seed: int = 0) -> nn.Module:
    """A small untrained conv net whose output varies with colour and, near window borders, with position."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(7, stride=1, padding=3),
                        nn.Conv2d(8, 3, 1))
    with torch.no_grad():  # last layer fitted so that glass -> 0, pink -> 1, purple -> 2 (logit margin 4)
        colours = torch.tensor([GLASS, *COLOURS], dtype=torch.float32) / 255.0
        x = (colours - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
        feats = torch.relu(net[0](x[:, :, None, None].expand(-1, -1, 3, 3)))[:, :, 1, 1]
        target = torch.full((4, 3), -2.0)
        for row, cls in enumerate([0, 1, 2, 1]):
            target[row, cls] = 2.0
        a = torch.cat([feats, torch.ones(4, 1)], dim=1)
        sol = torch.linalg.lstsq(a, target).solution  # [9, 3]
        net[3].weight.copy_(sol[:8].T[:, :, None, None])
        net[3].bias.copy_(sol[8])
    return net.eval()


def tiny_model(folder: Path, mpp: float = 0.5, window: int = 128, overlap: float = 0.25) -> LoadedModel:
    """The tiny net as a loaded 3-class segmentation model (weights file = a stand-in path in ``folder``)."""
    spec = ModelSpec(task="segmentation", encoder="tiny", num_classes=3, window=window, overlap=overlap,
                     class_names=list(NAMES), colors=[[0, 0, 0], [230, 60, 60], [40, 90, 230]])
    weights = folder / "tiny.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    if not weights.exists():
        weights.write_bytes(b"tiny")
    return LoadedModel(tiny_net(), spec, mpp, "test", folder, weights)


def tissue_slide(h: int, w: int, blobs: list[tuple[int, int, int]], seed: int = 0) -> np.ndarray:
    """RGB glass with tissue discs ``(cy, cx, radius)``: wide bands of three colours and purple dots (r = 9 px,
    every 64 px), which make holes in the pink classes."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = GLASS
    yy, xx = np.mgrid[0:h, 0:w]
    for cy, cx, r in blobs:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        shade = ((yy + 2 * xx) // 200) % 3
        for k, colour in enumerate(COLOURS):
            img[inside & (shade == k)] = colour
        dots = ((yy % 64) - 32) ** 2 + ((xx % 64) - 32) ** 2 < 81
        img[inside & dots] = COLOURS[1]
    img += rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_slide(path: Path, h: int, w: int, blobs: list[tuple[int, int, int]], mpp: float | None = 0.5) -> np.ndarray:
    """Write a lossless (deflate) pyramidal slide; ``mpp=None`` writes no resolution tags. Returns level 0."""
    img = tissue_slide(h, w, blobs)
    if mpp is None:
        import tifffile

        tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="zlib", metadata=None)
        with tifffile.TiffWriter(path, append=True) as tif:
            tif.write(img[::2, ::2], tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=1,
                      metadata=None)
    else:
        write_pyramidal_tiff(path, img, mpp=mpp, compression="deflate")
    return img
