"""The per-stage URL objective (spec §1.7): model + batch → losses.

- stage ``1``: ``L_img`` on the S scales of both views;
- stage ``2``: ``L_dense = (1/B) Σ_b [L_sp(1→2) + L_sp(2→1) + L_px(1) + L_px(2)]`` (all weights 1, summed);
- ``joint``: ``L_img + L_dense``, the dense part on scale 0 (native) of each view.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from pathseg.ssl.url.config import Stage
from pathseg.ssl.url.losses import ImageLevelLoss, PixelLoss, SuperpixelLoss
from pathseg.ssl.url.model import URLNet


class URLObjective(nn.Module):
    """Losses of one URL stage.

    Args:
        stage: ``"1"``, ``"2"`` or ``"joint"``.
        temperature: τ of all three tasks (0.3).
        pixel_negatives: ``"prototype"`` (spec) or ``"pixel"`` for the pixel-level task.
        superpixel_negatives: ``"both_views"`` (spec) or ``"other_view"`` for the superpixel-level task.
        weights: Weights of the image-, superpixel- and pixel-level terms (1, 1, 1 in the spec).
    """

    def __init__(
        self,
        stage: Stage,
        temperature: float = 0.3,
        pixel_negatives: Literal["prototype", "pixel"] = "prototype",
        superpixel_negatives: Literal["both_views", "other_view"] = "both_views",
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.stage = stage
        self.image_loss = ImageLevelLoss(temperature)
        self.superpixel_loss = SuperpixelLoss(temperature, negatives=superpixel_negatives)
        self.pixel_loss = PixelLoss(temperature, negatives=pixel_negatives)
        self.weights = weights

    def _dense_terms(self, f: Tensor, sp1: Tensor, sp2: Tensor) -> dict[str, Tensor]:
        f1, f2 = f.chunk(2)
        return {
            "loss_sp": self.superpixel_loss(f1, f2, sp1, sp2),
            "loss_px": self.pixel_loss(f1, sp1) + self.pixel_loss(f2, sp2),
        }

    def forward(self, model: URLNet, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return ``loss`` (the total to minimise) and its terms ``loss_img``, ``loss_sp``, ``loss_px``."""
        terms: dict[str, Tensor] = {}
        if self.stage == "2":
            x = torch.cat([batch["image1"], batch["image2"]])
            terms.update(self._dense_terms(model.embed_dense(x), batch["sp1"], batch["sp2"]))
        else:
            s1, s2 = batch["scales1"], batch["scales2"]  # [B, S, 3, c, c]
            b, s = s1.shape[:2]
            x = torch.cat([s1, s2]).flatten(0, 1)  # [2·B·S, 3, c, c]: view, image, scale
            feats = model.features(x)
            z = model.global_from(feats).view(2, b, s, -1)
            terms["loss_img"] = self.image_loss(z[0], z[1])
            if self.stage == "joint":
                native = torch.arange(2 * b, device=x.device) * s  # scale 0 of every image of both views
                dense = model.dense_from([f[native] for f in feats])
                terms.update(self._dense_terms(dense, batch["sp1"], batch["sp2"]))
        w_img, w_sp, w_px = self.weights
        scale = {"loss_img": w_img, "loss_sp": w_sp, "loss_px": w_px}
        terms["loss"] = sum((scale[k] * v for k, v in terms.items()), torch.zeros((), device=x.device))
        return terms
