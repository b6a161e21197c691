"""URL: global-to-local contrastive pretraining for tissue segmentation (image-, superpixel- and pixel-level tasks).

See ``docs/methods/url.md``. Heavy submodules (torch) are imported lazily, so importing the config stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ImageLevelLoss": "pathseg.ssl.url.losses",
    "SuperpixelLoss": "pathseg.ssl.url.losses",
    "PixelLoss": "pathseg.ssl.url.losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pathseg.ssl.url' has no attribute {name!r}")
