"""Paired views of an image and its superpixel id map (spec §1.2, §1.4, §2.3, §2.4).

One geometric transform (rotation, shear, translation, flips, zoom, then the central crop) is composed into a
single inverse map and sampled once: bilinear for the image, nearest for the ids, so an id names the same
superpixel in every view. Pixels from outside the image get id −1 (ignored by the losses). Colour, blur and
noise touch the image only. All randomness comes from the ``torch.Generator`` passed in (seed it per sample
from the worker's RNG, never with a constant: the original's fixed imgaug seeds repeated the same stream).

With ``ViewConfig.parity`` the original's quirks come back: nearest-neighbour RGB resampling (for the scales and
the rotations alike), zero padding, padding labelled with superpixel id 0 and a no-op contrast step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pathseg.ssl.url.config import ViewConfig


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _chance(gen: torch.Generator, p: float = 0.5) -> bool:
    return float(torch.rand((), generator=gen)) < p


@dataclass
class Geometry:
    """One draw of the geometric augmentation.

    Args:
        angle: Rotation in degrees.
        shear: Shear in degrees.
        shift: Translation ``(x, y)`` in output pixels.
        flip_h: Mirror left-right.
        flip_v: Mirror top-bottom.
    """

    angle: float = 0.0
    shear: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip_h: bool = False
    flip_v: bool = False


def sample_geometry(cfg: ViewConfig, gen: torch.Generator, max_shift: float) -> Geometry:
    """Draw a geometry: rotation, shear, translation up to ``max_shift`` output pixels per axis, flips."""
    return Geometry(
        angle=_uniform(gen, -cfg.rotate, cfg.rotate),
        shear=_uniform(gen, -cfg.shear, cfg.shear),
        shift=(_uniform(gen, -max_shift, max_shift), _uniform(gen, -max_shift, max_shift)),
        flip_h=cfg.flip and _chance(gen),
        flip_v=cfg.flip and _chance(gen),
    )


def sampling_grid(
    center: tuple[float, float], geom: Geometry, zoom: float, out_size: int, stride: int, in_hw: tuple[int, int]
) -> Tensor:
    """``grid_sample`` grid ``[1, n, n, 2]`` (``n = out_size // stride``) of the output pixel centres.

    The forward map is ``y = Flip(zoom · R · Sh · (x − center) + shift)`` in pixel units, ``y`` relative to the
    centre of the ``out_size`` crop; the grid holds ``x`` for every output pixel, normalised for
    ``align_corners=False``.
    """
    n = out_size // stride
    ticks = (torch.arange(n, dtype=torch.float64) + 0.5) * stride - out_size / 2
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    if geom.flip_h:
        xx = -xx
    if geom.flip_v:
        yy = -yy
    px = (xx - geom.shift[0]) / zoom
    py = (yy - geom.shift[1]) / zoom
    a, s = math.radians(geom.angle), math.tan(math.radians(geom.shear))
    cos, sin = math.cos(a), math.sin(a)
    rx, ry = cos * px + sin * py, -sin * px + cos * py  # R⁻¹
    ix, iy = rx - s * ry, ry  # Sh⁻¹ with Sh = [[1, s], [0, 1]]
    h, w = in_hw
    gx = 2 * (ix + center[0]) / w - 1
    gy = 2 * (iy + center[1]) / h - 1
    return torch.stack([gx, gy], dim=-1).unsqueeze(0).float()


def _prefilter(
    image: Tensor, center: tuple[float, float], zoom: float, reach: float
) -> tuple[Tensor, tuple[float, float]]:
    """Antialiased downscale by ``zoom`` of the window of radius ``reach`` around ``center`` (for zoom < 1)."""
    _, h, w = image.shape
    x0, x1 = max(0, int(center[0] - reach)), min(w, math.ceil(center[0] + reach))
    y0, y1 = max(0, int(center[1] - reach)), min(h, math.ceil(center[1] + reach))
    window = image[:, y0:y1, x0:x1]
    size = (max(1, round((y1 - y0) * zoom)), max(1, round((x1 - x0) * zoom)))
    small = F.interpolate(window.unsqueeze(0), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    sy, sx = size[0] / (y1 - y0), size[1] / (x1 - x0)
    return small, ((center[0] - x0) * sx, (center[1] - y0) * sy)


def warp_image(
    image: Tensor, center: tuple[float, float], geom: Geometry, zoom: float, out_size: int, parity: bool = False
) -> Tensor:
    """Warp a float image ``[C, H, W]`` to ``[C, out_size, out_size]`` (bilinear, antialiased when zooming out)."""
    if not parity and zoom < 1:
        spread = 1 + abs(math.tan(math.radians(geom.shear)))
        reach = out_size * math.sqrt(2) / 2 * spread + max(map(abs, geom.shift))
        image, center = _prefilter(image, center, zoom, reach / zoom + 2)
        zoom = 1.0
    grid = sampling_grid(center, geom, zoom, out_size, 1, (image.shape[1], image.shape[2]))
    mode, pad = ("nearest", "zeros") if parity else ("bilinear", "reflection")
    return F.grid_sample(image.unsqueeze(0), grid, mode=mode, padding_mode=pad, align_corners=False)[0]


def warp_ids(
    ids: Tensor, center: tuple[float, float], geom: Geometry, out_size: int, stride: int, parity: bool = False
) -> Tensor:
    """Warp an id map ``[H, W]`` (nearest) to ``[out_size/stride]²``; outside pixels get −1 (0 with ``parity``)."""
    grid = sampling_grid(center, geom, 1.0, out_size, stride, (ids.shape[0], ids.shape[1]))
    shifted = (ids.double() + (0 if parity else 1)).unsqueeze(0).unsqueeze(0)
    out = F.grid_sample(shifted, grid.double(), mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
    return out.round().long() - (0 if parity else 1)


def _median_blur(img: Tensor, k: int) -> Tensor:
    pad = k // 2
    padded = F.pad(img.unsqueeze(0), (pad, pad, pad, pad), mode="reflect")[0]
    patches = padded.unfold(1, k, 1).unfold(2, k, 1)  # [C, H, W, k, k]
    return patches.reshape(*patches.shape[:3], -1).median(dim=-1).values


@dataclass
class Photometric:
    """One draw of the colour/noise augmentation, applied alike to every scale of a view."""

    op: str = "none"  # "gauss", "median" or "noise"
    kernel: tuple[int, int] = (1, 1)
    noise_std: float = 0.0
    noise_per_channel: bool = False
    order: tuple[int, ...] = (0, 1, 2, 3)
    hue: float = 0.0
    saturation: float = 1.0
    brightness: float = 0.0
    contrast: float = 1.0


def sample_photometric(cfg: ViewConfig, gen: torch.Generator) -> Photometric:
    """Draw the spec's photometric augmentation (§2.3)."""
    ks = cfg.blur_kernels

    def pick() -> int:
        return ks[int(torch.randint(len(ks), (), generator=gen))]

    op = ("gauss", "median", "noise")[int(torch.randint(3, (), generator=gen))]
    kernel = (pick(), pick()) if op == "gauss" else (pick(),) * 2
    return Photometric(
        op=op,
        kernel=kernel,
        noise_std=_uniform(gen, 0.0, cfg.noise_std * 255),
        noise_per_channel=_chance(gen),
        order=tuple(int(i) for i in torch.randperm(4, generator=gen)),
        hue=_uniform(gen, -cfg.hue, cfg.hue) / 180.0,
        saturation=1.0 + _uniform(gen, -cfg.saturation, cfg.saturation),
        brightness=_uniform(gen, -cfg.brightness, cfg.brightness),
        contrast=_uniform(gen, *cfg.contrast),
    )


def apply_photometric(img: Tensor, p: Photometric, gen: torch.Generator, parity: bool = False) -> Tensor:
    """Apply ``p`` to a float RGB image ``[3, H, W]`` in 0..255; returns 0..255."""
    from torchvision.transforms.v2 import functional as TF

    if p.op == "gauss" and max(p.kernel) > 1:
        img = TF.gaussian_blur(img, kernel_size=[p.kernel[0], p.kernel[1]])
    elif p.op == "median" and p.kernel[0] > 1:
        img = _median_blur(img, p.kernel[0])
    elif p.op == "noise" and p.noise_std > 0:
        shape = img.shape if p.noise_per_channel else (1, *img.shape[1:])
        img = img + torch.randn(shape, generator=gen) * p.noise_std
    img = img.clamp(0, 255)
    for step in p.order:
        if step == 0 and p.hue:
            img = TF.adjust_hue(img / 255.0, p.hue) * 255.0
        elif step == 1:
            img = TF.adjust_saturation(img / 255.0, p.saturation) * 255.0
        elif step == 2:
            img = img + p.brightness
        elif step == 3 and not parity:  # the original's contrast op returned its input unchanged
            mean = img.mean(dim=(1, 2), keepdim=True)
            img = (img - mean) * p.contrast + mean
        img = img.clamp(0, 255)
    return img


def normalize(img: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """img/255 then per-channel mean/std (the spec's H&E statistics in the URL configs, §2.4)."""
    m = torch.tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=img.dtype).view(-1, 1, 1)
    return (img / 255.0 - m) / s


def sample_center(hw: tuple[int, int], patch_size: int, gen: torch.Generator) -> tuple[float, float]:
    """Centre ``(x, y)`` of a random ``patch_size`` window inside the image (the image centre if it is smaller)."""
    out = []
    for side in (hw[1], hw[0]):
        half = patch_size / 2
        out.append(side / 2 if side <= patch_size else _uniform(gen, half, side - half))
    return out[0], out[1]


def make_view(
    image: Tensor,
    ids: Tensor | None,
    center: tuple[float, float],
    cfg: ViewConfig,
    gen: torch.Generator,
    scales: list[float],
    max_shift: float,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[Tensor, Tensor | None]:
    """One view: the same geometry and colour draw for every scale; ids warped with the first scale (native).

    Args:
        image: Float RGB ``[3, H, W]`` in 0..255.
        ids: Superpixel ids ``[H, W]`` or ``None``.
        center: Patch centre ``(x, y)``, shared by both views.
        cfg: View settings.
        gen: Random generator.
        scales: Zoom factors; ``ids`` are warped at ``scales[0]`` (which must be 1 when ``ids`` are given).
        max_shift: Translation range in output pixels.
        crop_size: Side of the view.
        mean: Normalisation mean (0-1 scale).
        std: Normalisation std.

    Returns:
        Normalised images ``[S, 3, crop, crop]`` and ids ``[crop/stride]²`` (or ``None``).
    """
    if crop_size % cfg.dense_stride:
        raise ValueError(f"crop_size {crop_size} is not divisible by dense_stride {cfg.dense_stride}")
    geom = sample_geometry(cfg, gen, max_shift)
    photo = sample_photometric(cfg, gen)
    crops = []
    for zoom in scales:
        warped = warp_image(image, center, geom, zoom, crop_size, cfg.parity)
        crops.append(normalize(apply_photometric(warped, photo, gen, cfg.parity), mean, std))
    out_ids = None
    if ids is not None:
        if scales[0] != 1.0:
            raise ValueError("superpixel ids are warped at scales[0], which must be 1.0")
        out_ids = warp_ids(ids, center, geom, crop_size, cfg.dense_stride, cfg.parity)
    return torch.stack(crops), out_ids
