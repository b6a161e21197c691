"""Proposal-free instance models on an smp decoder: dense outputs, then a marker-controlled watershed.

* ``hover`` (nuclei): 2 foreground logits + horizontal/vertical maps (Graham et al., HoVer-Net, MedIA 2019).
  Loss = cross-entropy + soft Dice on the foreground, MSE on the maps + MSGE (mean squared error of their
  x/y gradients inside nuclei), each weighted 1 as in HoVer-Net.
* ``contour`` (glands): 3 logits background/interior/contour (Chen et al., DCAN, CVPR 2016, with one softmax head
  instead of two sigmoid branches). Loss = cross-entropy (contour class weighted ``contour_weight``).

The network is any module mapping ``[N, 3, H, W]`` to ``[N, C, H, W]`` with an ``encoder`` attribute (the smp model
of :func:`pathseg.models.create_segmentation_model`, whose timm trunk loads exported encoders by name). Inputs are
padded (reflect) to a multiple of ``pad_multiple`` and the outputs cropped back, so whole images of any size work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathseg.tasks.instance.postprocess import contour_watershed, hover_watershed
from pathseg.tasks.instance.types import InstancePrediction

Mode = Literal["hover", "contour"]
CHANNELS = {"hover": 4, "contour": 3}


def _gradients(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference x gradient of channel 0 and y gradient of channel 1 of ``[N, 2, H, W]``."""
    h, v = maps[:, 0:1], maps[:, 1:2]
    gx = F.pad(h[..., :, 2:] - h[..., :, :-2], (1, 1, 0, 0)) / 2
    gy = F.pad(v[..., 2:, :] - v[..., :-2, :], (0, 0, 1, 1)) / 2
    return gx, gy


class ProposalFreeModel(nn.Module):
    """Dense instance model (see the module docstring).

    Args:
        net: Dense network with ``CHANNELS[mode]`` outputs and an ``encoder`` attribute.
        mode: ``hover`` or ``contour``.
        postprocess: Keyword arguments of :func:`hover_watershed` / :func:`contour_watershed` (their defaults
            otherwise).
        contour_weight: ``contour``: cross-entropy weight of the contour class.
        pad_multiple: Inputs are padded to a multiple of this (smp encoders: 32).
    """

    def __init__(
        self, net: nn.Module, mode: Mode, postprocess: Mapping[str, float | int] | None = None,
        contour_weight: float = 1.0, pad_multiple: int = 32,
    ) -> None:
        super().__init__()
        if mode not in CHANNELS:
            raise ValueError(f"unknown mode '{mode}' (hover or contour)")
        self.net = net
        self.mode = mode
        self.postprocess = dict(postprocess or {})
        self.contour_weight = contour_weight
        self.pad_multiple = pad_multiple

    @property
    def encoder(self) -> nn.Module:
        """The network's encoder (for freezing and its own learning rate)."""
        return self.net.encoder  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[N, C, H, W]`` for any ``H, W``."""
        h, w = x.shape[-2:]
        ph, pw = -h % self.pad_multiple, -w % self.pad_multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return self.net(x)[..., :h, :w]  # type: ignore[no-any-return]

    def losses(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Named training losses of a batch (their sum is optimised)."""
        out = self(images)
        if self.mode == "contour":
            classes = torch.stack([t["classes"] for t in targets]).to(images.device)
            weight = torch.tensor([1.0, 1.0, self.contour_weight], device=images.device, dtype=out.dtype)
            return {"loss_ce": F.cross_entropy(out, classes, weight=weight)}
        fg = torch.stack([t["foreground"] for t in targets]).to(images.device)
        hv = torch.stack([t["hv"] for t in targets]).to(images.device)
        logits, maps = out[:, :2], out[:, 2:]
        prob = logits.softmax(1)[:, 1]
        inter = (prob * fg).sum()
        dice = 1 - (2 * inter + 1) / (prob.sum() + fg.sum() + 1)
        (pgx, pgy), (tgx, tgy) = _gradients(maps), _gradients(hv)
        inside = fg[:, None].to(maps.dtype)
        msge = (((pgx - tgx) ** 2 + (pgy - tgy) ** 2) * inside).sum() / inside.sum().clamp_min(1)
        return {"loss_ce": F.cross_entropy(logits, fg), "loss_dice": dice, "loss_mse": F.mse_loss(maps, hv),
                "loss_msge": msge}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[InstancePrediction]:
        """Instance maps of a batch through the watershed post-processing."""
        out = self(images).float().cpu()
        preds = []
        for o in out:
            if self.mode == "hover":
                inst = hover_watershed(o[:2].softmax(0)[1].numpy(), o[2:].numpy(), **self.postprocess)  # type: ignore[arg-type]
            else:
                inst = contour_watershed(o.softmax(0).numpy(), **self.postprocess)  # type: ignore[arg-type]
            preds.append(InstancePrediction(instances=np.asarray(inst, np.int32)))
        return preds


def build_proposal_free(
    mode: Mode, encoder: str, encoder_weights: str | os.PathLike[str] | None = None, decoder: str = "unet",
    postprocess: Mapping[str, float | int] | None = None, contour_weight: float = 1.0,
) -> ProposalFreeModel:
    """A :class:`ProposalFreeModel` on ``pathseg.models.create_segmentation_model(decoder, encoder, C)``.

    Raises:
        ConfigError: Unknown decoder or encoder.
        PathsegError: The encoder weights file cannot be read or matches no key.
    """
    from pathseg.models import create_segmentation_model

    net = create_segmentation_model(decoder, encoder, CHANNELS[mode], encoder_weights=encoder_weights)  # type: ignore[arg-type]
    return ProposalFreeModel(net, mode, postprocess=postprocess, contour_weight=contour_weight)
