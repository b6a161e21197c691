"""The data-worker side of URL's views: the random draw of both views and the canvas they are cut from.

A sample is the patch centre, a square *canvas* of the image around it (large enough for every scale, rotation,
shear and shift; pixels outside the image reflected, or zero with ``parity``, exactly as sampling the whole
image would read them), the canvas of the superpixel ids (stages 2 and joint; −1 outside, 0 with ``parity``) and
the random parameters of the two views as small tensors. :func:`render_item` renders it per sample (the
reference, and ``views.batched: false``); :class:`pathseg.ssl.url.batched.BatchedViews` renders a collated batch
in the training step. Item keys of a raw sample:

- ``canvas`` ``uint8 [3, W, W]``, ``center`` ``float64 [2]`` (``x, y`` in canvas pixels);
- ``geom`` ``float64 [2, 6]``: angle, shear, shift x, shift y, flip h, flip v of views 1 and 2;
- ``photo`` ``float64 [2, 9]``: op (0 gauss, 1 median, 2 noise), kernel x, kernel y, noise σ, noise per
  channel, hue, saturation, brightness, contrast; ``order`` ``int64 [2, 4]``; ``noise_seed`` ``int64 [2]``;
- stages ``2`` / ``joint``: ``canvas_ids`` ``int32 [Wi, Wi]``, ``ids_center`` ``float64 [2]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from pathseg.ssl.url.config import Stage, ViewConfig
from pathseg.ssl.url.views import (
    Geometry,
    Photometric,
    apply_photometric,
    normalize,
    sample_geometry,
    sample_photometric,
    view_noise,
    warp_ids,
    warp_image,
)

OPS = ("gauss", "median", "noise")


def stage_scales(cfg: ViewConfig, stage: Stage) -> list[float]:
    """The zooms a stage renders (stage 2: the native scale only)."""
    return list(cfg.scales) if stage != "2" else [1.0]


def max_shift(cfg: ViewConfig, stage: Stage) -> float:
    """Translation range of a stage's views in output pixels (dense views add ``dense_translate``)."""
    if stage == "1":
        return cfg.translate * cfg.patch_size / 2
    return (cfg.translate + cfg.dense_translate) * cfg.patch_size


def canvas_sides(cfg: ViewConfig, stage: Stage, crop_size: int) -> tuple[int, int]:
    """Sides of the image canvas and of the id canvas (0 in stage 1) that every view of a stage stays inside."""
    spread = crop_size * math.sqrt(2) / 2 * (1 + abs(math.tan(math.radians(cfg.shear))))
    reach = spread + math.sqrt(2) * max_shift(cfg, stage)
    zmin = min(stage_scales(cfg, stage))
    margin = 2 + (2 / zmin if zmin < 1 and not cfg.parity else 0)  # bilinear support, antialias support
    side = 2 * math.ceil(reach / zmin + margin)
    return side, (2 * math.ceil(reach + 2) if stage != "1" else 0)


def _source_index(start: int, side: int, n: int, reflect: bool) -> tuple[Tensor, Tensor]:
    """Source indices of ``start .. start + side - 1`` along an axis of length ``n`` and whether they are inside."""
    idx = torch.arange(start, start + side)
    inside = (idx >= 0) & (idx < n)
    if reflect:  # symmetric about the outer pixel edges, as grid_sample's reflection padding
        r = idx % (2 * n)
        return torch.where(r >= n, 2 * n - 1 - r, r), torch.ones_like(inside)
    return idx.clamp(0, n - 1), inside


def cut_canvas(image: Tensor, center: tuple[float, float], side: int, reflect: bool, fill: int = 0
               ) -> tuple[Tensor, tuple[float, float]]:
    """The ``side²`` canvas of ``image`` ``[..., H, W]`` around ``center`` and the centre in canvas pixels."""
    x0, y0 = math.floor(center[0]) - side // 2, math.floor(center[1]) - side // 2
    local = (center[0] - x0, center[1] - y0)
    if x0 >= 0 and y0 >= 0 and x0 + side <= image.shape[-1] and y0 + side <= image.shape[-2]:
        return image[..., y0:y0 + side, x0:x0 + side].clone(), local  # inside the image: a plain slice
    ys, y_in = _source_index(y0, side, image.shape[-2], reflect)
    xs, x_in = _source_index(x0, side, image.shape[-1], reflect)
    out = image[..., ys, :][..., xs]
    if not reflect:
        out = torch.where(y_in[:, None] & x_in[None, :], out, torch.full_like(out, fill))
    return out, local


def geometry_row(g: Geometry) -> list[float]:
    """A geometry as the six numbers of ``geom``."""
    return [g.angle, g.shear, g.shift[0], g.shift[1], float(g.flip_h), float(g.flip_v)]


def geometry_from(row: Tensor) -> Geometry:
    """The geometry of one ``geom`` row."""
    v = row.tolist()
    return Geometry(angle=v[0], shear=v[1], shift=(v[2], v[3]), flip_h=v[4] > 0.5, flip_v=v[5] > 0.5)


def photo_row(p: Photometric) -> list[float]:
    """A photometric draw as the nine numbers of ``photo`` (its ``order`` goes to ``order``)."""
    return [float(OPS.index(p.op)), float(p.kernel[0]), float(p.kernel[1]), p.noise_std,
            float(p.noise_per_channel), p.hue, p.saturation, p.brightness, p.contrast]


def photometric_from(row: Tensor, order: Tensor) -> Photometric:
    """The photometric draw of one ``photo`` row and its ``order`` row."""
    v = row.tolist()
    return Photometric(op=OPS[int(v[0])], kernel=(int(v[1]), int(v[2])), noise_std=v[3],
                       noise_per_channel=v[4] > 0.5, order=tuple(int(i) for i in order.tolist()), hue=v[5],
                       saturation=v[6], brightness=v[7], contrast=v[8])


def draw_views(cfg: ViewConfig, gen: torch.Generator, shift: float) -> dict[str, Tensor]:
    """Random parameters of views 1 and 2 (geometry, photometric draw, noise seed), in this order per view."""
    geom, photo, order, seeds = [], [], [], []
    for _ in range(2):
        geom.append(geometry_row(sample_geometry(cfg, gen, shift)))
        p = sample_photometric(cfg, gen)
        photo.append(photo_row(p))
        order.append(list(p.order))
        seeds.append(int(torch.randint(0, 2**62, (), generator=gen)))
    return {"geom": torch.tensor(geom, dtype=torch.float64), "photo": torch.tensor(photo, dtype=torch.float64),
            "order": torch.tensor(order, dtype=torch.int64), "noise_seed": torch.tensor(seeds, dtype=torch.int64)}


def raw_item(image: Tensor, ids: Tensor | None, center: tuple[float, float], cfg: ViewConfig, stage: Stage,
             gen: torch.Generator, crop_size: int) -> dict[str, Tensor]:
    """A raw sample (module docstring) of ``image`` ``uint8 [3, H, W]`` and ``ids`` ``[H, W]`` (or ``None``)."""
    if crop_size % cfg.dense_stride:
        raise ValueError(f"crop_size {crop_size} is not divisible by dense_stride {cfg.dense_stride}")
    side, side_ids = canvas_sides(cfg, stage, crop_size)
    canvas, local = cut_canvas(image, center, side, reflect=not cfg.parity)
    item = {"canvas": canvas, "center": torch.tensor(local, dtype=torch.float64)}
    item.update(draw_views(cfg, gen, max_shift(cfg, stage)))
    if stage != "1":
        if ids is None:
            raise ValueError(f"stage {stage} needs superpixel ids")
        if int(ids.max()) >= 2**24:
            raise ValueError("more than 2**24 superpixel ids in one image")
        id_canvas, id_local = cut_canvas(ids.to(torch.int32), center, side_ids, reflect=False,
                                         fill=0 if cfg.parity else -1)
        item.update(canvas_ids=id_canvas, ids_center=torch.tensor(id_local, dtype=torch.float64))
    return item


def assemble(stage: Stage, crops: Tensor, ids: Tensor | None, view_dim: int) -> dict[str, Tensor]:
    """The objective's keys from rendered ``crops`` (``[..., 2, S, 3, c, c]``, views on ``view_dim``) and ids."""
    out: dict[str, Tensor] = {}
    for v in (0, 1):
        views = crops.select(view_dim, v)
        if stage != "2":
            out[f"scales{v + 1}"] = views
        if stage != "1":
            assert ids is not None
            out[f"image{v + 1}"] = views.select(view_dim, 0)  # scale 0, the native zoom
            out[f"sp{v + 1}"] = ids.select(view_dim, v)
    return out


def render_item(item: dict[str, Tensor], stage: Stage, scales: Sequence[float], crop_size: int, stride: int,
                parity: bool, mean: Sequence[float], std: Sequence[float]) -> dict[str, Tensor]:
    """Render a raw sample per view with :mod:`pathseg.ssl.url.views` (the reference of the batched renderer)."""
    canvas = item["canvas"].float()
    cx, cy = item["center"].tolist()
    crops, id_maps = [], []
    for v in (0, 1):
        geom = geometry_from(item["geom"][v])
        photo = photometric_from(item["photo"][v], item["order"][v])
        warped = torch.stack([warp_image(canvas, (cx, cy), geom, z, crop_size, parity) for z in scales])
        noise = view_noise(photo, int(item["noise_seed"][v]), tuple(warped.shape), warped.device)
        crops.append(normalize(apply_photometric(warped, photo, noise, parity), mean, std))
        if stage != "1":
            ix, iy = item["ids_center"].tolist()
            id_maps.append(warp_ids(item["canvas_ids"], (ix, iy), geom, crop_size, stride, parity))
    return assemble(stage, torch.stack(crops), torch.stack(id_maps) if id_maps else None, 0)


def build_item(image: Tensor, ids: Tensor | None, center: tuple[float, float], cfg: ViewConfig, stage: Stage,
               gen: torch.Generator, crop_size: int, mean: Sequence[float], std: Sequence[float]
               ) -> dict[str, Tensor]:
    """What the data set returns: the raw sample (``cfg.batched``) or its rendered views (per sample)."""
    item = raw_item(image, ids, center, cfg, stage, gen, crop_size)
    if cfg.batched:
        return item
    return render_item(item, stage, stage_scales(cfg, stage), crop_size, cfg.dense_stride, cfg.parity, mean, std)
