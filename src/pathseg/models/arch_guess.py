"""Guess which architecture a state dict belongs to, for error messages about weights that do not fit.

ResNets are told apart by their block counts per stage (``layer<k>.<i>.``) and block type (bottleneck blocks have
``conv3``), following He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Table 1: resnet18
[2, 2, 2, 2], resnet34 [3, 4, 6, 3] (basic blocks), resnet50 [3, 4, 6, 3], resnet101 [3, 4, 23, 3], resnet152
[3, 8, 36, 3] (bottleneck blocks). ViTs (Dosovitskiy et al., ICLR 2021) by their width (``cls_token``), depth
(``blocks.<i>.``) and patch size (``patch_embed.proj.weight``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

RESNETS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}
VIT_WIDTHS = {192: "tiny", 384: "small", 768: "base", 1024: "large", 1280: "huge"}
_LAYER = re.compile(r"(?:^|\.)layer([1-4])\.(\d+)\.")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(value, "shape", ()))


def _resnet(keys: list[str]) -> str | None:
    blocks: dict[int, set[int]] = {}
    for key in keys:
        match = _LAYER.search(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if sorted(blocks) != [1, 2, 3, 4]:
        return None
    counts = tuple(max(blocks[k]) + 1 for k in (1, 2, 3, 4))
    bottleneck = any(re.search(r"layer\d\.\d+\.conv3\.", k) for k in keys)
    name = RESNETS.get((counts, bottleneck))
    kind = "bottleneck" if bottleneck else "basic"
    return name or f"a ResNet with {kind} blocks {list(counts)}"


def _vit(state: Mapping[str, Any]) -> str | None:
    cls = next((v for k, v in state.items() if k.endswith("cls_token")), None)
    depth = {int(m.group(1)) for k in state if (m := _BLOCK.search(k))}
    if cls is None or not depth:
        return None
    width = _shape(cls)[-1]
    proj = next((v for k, v in state.items() if k.endswith("patch_embed.proj.weight")), None)
    patch = _shape(proj)[-1] if proj is not None else 16
    size = VIT_WIDTHS.get(width)
    if size is None:
        return f"a ViT of width {width}, depth {max(depth) + 1}"
    return f"vit_{size}_patch{patch}_224 (width {width}, depth {max(depth) + 1})"


def guess_architecture(state: Mapping[str, Any]) -> str:
    """A short description of the architecture of ``state`` (e.g. ``"resnet50"``), or ``"unknown"``."""
    keys = list(state)
    return _resnet(keys) or _vit(state) or "unknown"
