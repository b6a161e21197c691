"""Grad-CAM at several depths from one forward pass (spec §2).

For a layer ``L`` with activations ``A^L`` (``[K, h, w]``) and the **pre-sigmoid logit** ``z_c`` of class c:

* ``α_k = mean_p ∂z_c / ∂A^L_k(p)``;
* ``G^L_c = Σ_k α_k A^L_k`` with **no ReLU** (negative values survive, as in the original);
* resized bilinearly (``align_corners=False``, equal to the original's ``cv2.resize``) to the image size.

Every class is computed, present or not. Unlike the original (a new Grad-CAM object and 12 forward+backward
passes per image), all layers come from one forward pass and one backward pass per class, batched over
images (valid because the model is in eval mode, so the samples do not interact).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F


class CamModel(Protocol):
    """What Grad-CAM needs: logits and the named feature maps from one forward pass."""

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(logits [N, C], {layer: [N, K, h, w]})``."""
        ...


def grad_cams(
    model: CamModel,
    x: torch.Tensor,
    layers: Sequence[str],
    out_size: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Grad-CAMs of every class at every layer.

    Args:
        model: A model in eval mode providing ``features_and_logits``.
        x: Images ``[N, 3, H, W]``.
        layers: Names of the feature maps to explain.
        out_size: ``(H, W)`` to resize to (default: the input size).

    Returns:
        ``{layer: [N, C, H, W]}`` float tensors (detached), raw Grad-CAM values without ReLU.
    """
    size = tuple(x.shape[-2:]) if out_size is None else out_size
    with torch.enable_grad():
        logits, maps = model.features_and_logits(x)
        missing = [name for name in layers if name not in maps]
        if missing:
            raise KeyError(f"model has no feature map {missing}; has {sorted(maps)}")
        acts = [maps[name] for name in layers]
        per_layer: list[list[torch.Tensor]] = [[] for _ in layers]
        num_classes = logits.shape[1]
        for c in range(num_classes):
            grads = torch.autograd.grad(logits[:, c].sum(), acts, retain_graph=c < num_classes - 1)
            for i, (act, grad) in enumerate(zip(acts, grads)):
                alpha = grad.mean(dim=(2, 3))
                per_layer[i].append(torch.einsum("nk,nkhw->nhw", alpha, act).detach())
    out = {}
    for name, cams in zip(layers, per_layer):
        stacked = torch.stack(cams, dim=1)
        out[name] = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False)
    return out
