"""The classification gate at stage-2 inference (spec §3.5).

The stage-1 classifier gives class probabilities ``y = σ(z)``; the gate keeps class c when ``y_c > threshold``
(0.1).

* ``parity`` (the original): ``s'_c = s_c · g_c`` then argmax. A gated class gets logit 0, which **wins** when
  every kept logit is negative.
* ``fixed``: gated classes get −∞, so they can never win; when a sample gates every class, it is not gated.
"""

from __future__ import annotations

import torch


def gate_predictions(
    logits: torch.Tensor, probs: torch.Tensor, threshold: float = 0.1, mode: str = "fixed"
) -> torch.Tensor:
    """Gated argmax.

    Args:
        logits: Segmentation logits ``[N, C, H, W]``.
        probs: Stage-1 class probabilities ``[N, C]``.
        threshold: A class is kept when its probability is strictly above this.
        mode: ``fixed`` or ``parity``.

    Returns:
        Predicted class indices ``[N, H, W]`` (int64).
    """
    keep = probs > threshold
    if mode == "parity":
        return (logits * keep[:, :, None, None].to(logits.dtype)).argmax(dim=1)
    if mode != "fixed":
        raise ValueError(f"unknown gate mode {mode!r}")
    keep = keep | ~keep.any(dim=1, keepdim=True)
    masked = logits.masked_fill(~keep[:, :, None, None], float("-inf"))
    return masked.argmax(dim=1)
