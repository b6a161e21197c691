"""URL's views rendered for a whole batch in the training step, on the training device.

The data workers return raw samples (:mod:`pathseg.ssl.url.canvas`: canvas, centre and random parameters); here
one ``grid_sample`` per zoom warps both views of every image (bilinear for the image, after an antialiased
downscale of the canvases when zooming out; nearest for the ids), then :mod:`pathseg.ssl.url.batched_color`
applies each view's blur, noise and colour steps. The arithmetic is that of the per-view reference
(:func:`pathseg.ssl.url.canvas.render_item`), so the views are the same for the same draw; the random parameters
were drawn in the workers from each sample's seed, so a resumed run renders exactly the views of an uninterrupted
one, whatever the device or batch split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.ssl.url.batched_color import photometric_batch
from pathseg.ssl.url.canvas import assemble
from pathseg.ssl.url.config import Stage
from pathseg.ssl.url.views import prefilter


def batch_grid(center: Tensor, geom: Tensor, zoom: float, out_size: int, stride: int, in_hw: tuple[int, int],
               prescale: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Grids ``[B, V, n, n, 2]`` of :func:`pathseg.ssl.url.views.sampling_grid` for ``center`` ``[B, 2]`` and
    ``geom`` ``[B, V, 6]`` (angle, shear, shift x, shift y, flip h, flip v), computed in float64.

    The map is affine in the output pixel ``(x, y)``: each view's 2 × 3 matrix is built first and applied to
    the output pixel centres in one product.
    """
    n = out_size // stride
    dev = geom.device
    ticks = (torch.arange(n, dtype=torch.float64, device=dev) + 0.5) * stride - out_size / 2
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    pixels = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1)  # [n, n, 3]
    g = geom.double()
    fx, fy = 1 - 2 * (g[..., 4] > 0.5).double(), 1 - 2 * (g[..., 5] > 0.5).double()
    a, s = torch.deg2rad(g[..., 0]), torch.tan(torch.deg2rad(g[..., 1]))
    cos, sin = torch.cos(a), torch.sin(a)
    # p = (F·y − shift) / zoom; r = R⁻¹ p; i = Sh⁻¹ r; grid = 2 · (i + center) · prescale / size − 1
    r = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # [B, V, 2, 2]
    shear_inv = torch.stack([torch.stack([torch.ones_like(s), -s], -1),
                             torch.stack([torch.zeros_like(s), torch.ones_like(s)], -1)], -2)
    lin = shear_inv @ r / zoom  # acts on (F·y − shift)
    lin_y = lin * torch.stack([fx, fy], -1).unsqueeze(-2)  # columns scaled by the flips
    offset = -(lin @ g[..., 2:4].unsqueeze(-1)).squeeze(-1) + center.double().unsqueeze(1)  # [B, V, 2]
    norm = torch.tensor([2 * prescale[0] / in_hw[1], 2 * prescale[1] / in_hw[0]], dtype=torch.float64, device=dev)
    theta = torch.cat([lin_y, offset.unsqueeze(-1)], -1) * norm.view(2, 1)  # [B, V, 2, 3]
    grid = torch.einsum("ijk,bvck->bvijc", pixels, theta) - 1
    return grid.float()


def _sample(src: Tensor, grid: Tensor, mode: str, padding: str) -> Tensor:
    """Sample ``src`` ``[B, C, H, W]`` at ``grid`` ``[B, V, n, n, 2]`` → ``[B, V, C, n, n]`` (one call for all V)."""
    b, v, n = grid.shape[:3]
    out = F.grid_sample(src, grid.reshape(b, v * n, n, 2), mode=mode, padding_mode=padding, align_corners=False)
    return out.view(b, -1, v, n, n).transpose(1, 2)


def warp_images(canvas: Tensor, center: Tensor, geom: Tensor, scales: Sequence[float], out_size: int,
                parity: bool = False) -> Tensor:
    """Warp float canvases ``[B, 3, W, W]`` to ``[B, V, S, 3, out, out]`` (every view at every zoom)."""
    mode, pad = ("nearest", "zeros") if parity else ("bilinear", "reflection")
    crops = []
    for zoom in scales:
        src, pre = canvas, (1.0, 1.0)
        if not parity and zoom < 1:
            src, pre = prefilter(canvas, zoom)
        grid = batch_grid(center, geom, zoom, out_size, 1, (src.shape[-2], src.shape[-1]), pre)
        crops.append(_sample(src, grid, mode, pad))
    return torch.stack(crops, dim=2)


def warp_id_maps(ids: Tensor, center: Tensor, geom: Tensor, out_size: int, stride: int, parity: bool = False
                 ) -> Tensor:
    """Warp id canvases ``[B, Wi, Wi]`` (nearest, native zoom) to ``[B, V, out/stride, out/stride]`` (long);
    outside pixels −1 (0 with ``parity``)."""
    offset = 0 if parity else 1
    src = (ids.float() + offset).unsqueeze(1)
    grid = batch_grid(center, geom, 1.0, out_size, stride, (ids.shape[-2], ids.shape[-1]))
    return _sample(src, grid, "nearest", "zeros")[:, :, 0].round().long() - offset


class BatchedViews(nn.Module):
    """Renders a collated batch of raw URL samples into the objective's inputs (no parameters).

    Args:
        stage: ``"1"``, ``"2"`` or ``"joint"``.
        scales: Zoom factors, native first (stage 2 renders the native one only).
        crop_size: Side of the views.
        dense_stride: Downsampling of the id maps.
        mean: Normalisation mean (0-1 scale).
        std: Normalisation std.
        parity: The original's resampling, padding and contrast quirks.
    """

    def __init__(self, stage: Stage, scales: Sequence[float], crop_size: int, dense_stride: int,
                 mean: Sequence[float], std: Sequence[float], parity: bool = False) -> None:
        super().__init__()
        self.stage = stage
        self.scales = [1.0] if stage == "2" else [float(s) for s in scales]
        self.crop_size, self.dense_stride, self.parity = crop_size, dense_stride, parity
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``scales1/2`` ``[B, S, 3, c, c]`` and/or ``image1/2`` ``[B, 3, c, c]``, ``sp1/2`` ``[B, d, d]``.

        Rendered in float32 without gradient, also inside a mixed-precision step (autocast is switched off here).
        """
        device_type = batch["canvas"].device.type
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
            canvas = batch["canvas"].float()
            b = canvas.shape[0]
            crops = warp_images(canvas, batch["center"], batch["geom"], self.scales, self.crop_size, self.parity)
            views = crops.flatten(0, 1)  # [B·V, S, 3, c, c], view-major within an image
            views = photometric_batch(views, batch["photo"].flatten(0, 1), batch["order"].flatten(0, 1),
                                      batch["noise_seed"].flatten(), self.parity)
            m = torch.tensor(self.mean, device=views.device, dtype=views.dtype).view(-1, 1, 1)
            s = torch.tensor(self.std, device=views.device, dtype=views.dtype).view(-1, 1, 1)
            views = ((views / 255.0 - m) / s).view(b, 2, *views.shape[1:])
            ids = None
            if self.stage != "1":
                ids = warp_id_maps(batch["canvas_ids"], batch["ids_center"], batch["geom"], self.crop_size,
                                   self.dense_stride, self.parity)
        return assemble(self.stage, views, ids, 1)
