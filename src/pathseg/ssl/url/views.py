"""Paired views of an image and its superpixel id map (spec §1.2, §1.4, §2.3, §2.4): the per-view reference.

One geometric transform (rotation, shear, translation, flips, zoom, then the central crop) is composed into a
single inverse map and sampled once: bilinear for the image, nearest for the ids, so an id names the same
superpixel in every view. Pixels from outside the image get id −1 (ignored by the losses). Colour, blur and
noise touch the image only. The random draws come from the ``torch.Generator`` of the sample (seeded per sample
from the worker's RNG, never with a constant: the original's fixed imgaug seeds repeated the same stream); the
noise of a view comes from a generator seeded with the view's own ``noise_seed`` on the device that renders it.

These functions render one view of one sample; :mod:`pathseg.ssl.url.canvas` cuts the canvas they read and
:mod:`pathseg.ssl.url.batched` renders a whole batch on the training device with the same arithmetic (the tests
compare the two). Zooming out is antialiased by downscaling the whole canvas first and sampling it with the exact
residual scale.

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
from pathseg.ssl.url.median import median_blur


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
    center: tuple[float, float],
    geom: Geometry,
    zoom: float,
    out_size: int,
    stride: int,
    in_hw: tuple[int, int],
    prescale: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """``grid_sample`` grid ``[1, n, n, 2]`` (``n = out_size // stride``) of the output pixel centres.

    The forward map is ``y = Flip(zoom · R · Sh · (x − center) + shift)`` in pixel units, ``y`` relative to the
    centre of the ``out_size`` crop; the grid holds ``x`` for every output pixel, normalised for
    ``align_corners=False``. ``prescale`` ``(sx, sy)``: the image was resized by these factors (``in_hw`` is its
    new size; ``center`` is in the original pixels).
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
    gx = 2 * (ix + center[0]) * prescale[0] / w - 1
    gy = 2 * (iy + center[1]) * prescale[1] / h - 1
    return torch.stack([gx, gy], dim=-1).unsqueeze(0).float()


def prefilter(image: Tensor, zoom: float) -> tuple[Tensor, tuple[float, float]]:
    """Antialiased bilinear downscale of ``[..., C, H, W]`` by ``zoom`` (< 1); returns it and the exact factors."""
    h, w = image.shape[-2:]
    size = (max(1, round(h * zoom)), max(1, round(w * zoom)))
    flat = image.reshape(-1, *image.shape[-3:])
    small = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
    return small.reshape(*image.shape[:-2], *size), (size[1] / w, size[0] / h)


def warp_image(
    image: Tensor, center: tuple[float, float], geom: Geometry, zoom: float, out_size: int, parity: bool = False
) -> Tensor:
    """Warp a float image ``[C, H, W]`` to ``[C, out_size, out_size]`` (bilinear, antialiased when zooming out).

    Zooming out first downscales the whole image (give it the canvas of :mod:`pathseg.ssl.url.canvas`, not a
    whole slide region), then samples it with the residual map.
    """
    pre = (1.0, 1.0)
    if not parity and zoom < 1:
        image, pre = prefilter(image, zoom)
    grid = sampling_grid(center, geom, zoom, out_size, 1, (image.shape[1], image.shape[2]), pre)
    mode, pad = ("nearest", "zeros") if parity else ("bilinear", "reflection")
    return F.grid_sample(image.unsqueeze(0), grid, mode=mode, padding_mode=pad, align_corners=False)[0]


def warp_ids(
    ids: Tensor, center: tuple[float, float], geom: Geometry, out_size: int, stride: int, parity: bool = False
) -> Tensor:
    """Warp an id map ``[H, W]`` (nearest) to ``[out_size/stride]²``; outside pixels get −1 (0 with ``parity``).

    The ids travel as float32 (exact below 2²⁴ superpixels per canvas).
    """
    grid = sampling_grid(center, geom, 1.0, out_size, stride, (ids.shape[0], ids.shape[1]))
    shifted = (ids.float() + (0 if parity else 1)).unsqueeze(0).unsqueeze(0)
    out = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
    return out.round().long() - (0 if parity else 1)


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


def view_noise(p: Photometric, seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """The noise of one view, ``[S, 3 or 1, H, W]`` for ``shape = (S, 3, H, W)``, from a generator seeded ``seed``
    on ``device`` (zeros unless the view's op is ``noise``)."""
    n_ch = shape[1] if p.noise_per_channel else 1
    size = (shape[0], n_ch, *shape[2:])
    if p.op != "noise" or p.noise_std <= 0:
        return torch.zeros(size, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(size, generator=gen, device=device) * p.noise_std


def apply_photometric(img: Tensor, p: Photometric, noise: Tensor | None = None, parity: bool = False) -> Tensor:
    """Apply ``p`` to float RGB images ``[..., 3, H, W]`` in 0..255 (``noise`` added for op ``noise``)."""
    from torchvision.transforms.v2 import functional as TF

    if p.op == "gauss" and max(p.kernel) > 1:
        img = TF.gaussian_blur(img, kernel_size=[p.kernel[0], p.kernel[1]])
    elif p.op == "median" and p.kernel[0] > 1:
        img = median_blur(img, p.kernel[0])
    elif p.op == "noise" and p.noise_std > 0 and noise is not None:
        img = img + noise
    img = img.clamp(0, 255)
    for step in p.order:
        if step == 0 and p.hue:
            img = TF.adjust_hue(img / 255.0, p.hue) * 255.0
        elif step == 1:
            img = TF.adjust_saturation(img / 255.0, p.saturation) * 255.0
        elif step == 2:
            img = img + p.brightness
        elif step == 3 and not parity:  # the original's contrast op returned its input unchanged
            mean = img.mean(dim=(-2, -1), keepdim=True)
            img = (img - mean) * p.contrast + mean
        img = img.clamp(0, 255)
    return img


def normalize(img: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """img/255 then per-channel mean/std (the spec's H&E statistics in the URL configs, §2.4)."""
    m = torch.tensor(mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    return (img / 255.0 - m) / s


def sample_center(hw: tuple[int, int], patch_size: int, gen: torch.Generator) -> tuple[float, float]:
    """Centre ``(x, y)`` of a random ``patch_size`` window inside the image (the image centre if it is smaller)."""
    out = []
    for side in (hw[1], hw[0]):
        half = patch_size / 2
        out.append(side / 2 if side <= patch_size else _uniform(gen, half, side - half))
    return out[0], out[1]
