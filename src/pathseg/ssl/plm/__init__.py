"""PLM (Zhang, Kapse et al., IPMI 2023): dense contrastive pretraining with precise location matching.

Public functions (imported on first use, so that importing this package stays light):

- :func:`grid_boxes` — each output cell's box in source-image fractions, ``[B, G·G, 4]``;
- :func:`overlap_fractions` — exact pairwise cell overlaps ``(pq, pk)``, each ``[B, N, N]``;
- :class:`DenseMatchingLoss` — the overlap-weighted dense InfoNCE term.

The method itself is registered as ``plm`` by ``pathseg.ssl.plm.register`` (see docs/methods/plm.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathseg.ssl.plm.geometry import grid_boxes, overlap_fractions
    from pathseg.ssl.plm.loss import DenseMatchingLoss

__all__ = ["DenseMatchingLoss", "grid_boxes", "overlap_fractions"]

_WHERE = {"grid_boxes": "geometry", "overlap_fractions": "geometry", "DenseMatchingLoss": "loss"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"pathseg.ssl.plm.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'pathseg.ssl.plm' has no attribute {name!r}")
