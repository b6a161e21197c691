"""SGCL: spatial guided contrastive learning on whole-slide tiles (Lin et al., Medical Image Analysis 2023).

See ``docs/methods/sgcl.md``. The public functions are imported lazily so that importing the package (and its
config) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "spatial_neighbors": "pathseg.ssl.sgcl.spatial",
    "SpatialGrid": "pathseg.ssl.sgcl.spatial",
    "semantic_positives": "pathseg.ssl.sgcl.semantic",
    "kmeans": "pathseg.ssl.sgcl.semantic",
    "beta_rank_pdf": "pathseg.ssl.sgcl.negatives",
    "sample_ranks": "pathseg.ssl.sgcl.negatives",
    "mine_negatives": "pathseg.ssl.sgcl.negatives",
    "merged_positive_loss": "pathseg.ssl.sgcl.losses",
    "instance_nce": "pathseg.ssl.sgcl.losses",
    "rampup_weight": "pathseg.ssl.sgcl.losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pathseg.ssl.sgcl' has no attribute {name!r}")
