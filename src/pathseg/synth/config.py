"""Config of ``pathseg synth`` (kept light: no numpy/torch import, so ``pathseg --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pathseg.errors import ConfigError

Kind = Literal["segmentation", "instance", "patch_labels", "classification", "unlabeled", "slide", "nuclei-masks"]
KINDS: tuple[str, ...] = ("segmentation", "instance", "patch_labels", "classification", "unlabeled", "slide",
                          "nuclei-masks")
DEFAULT_SPLITS = ["train:0.7", "val:0.15", "test:0.15"]


@dataclass
class SynthConfig:
    """Generate synthetic H&E-like images (or whole slides) with known ground truth in the canonical layout."""

    out: Path = field(metadata={"help": "output directory"})
    kind: Kind = field(default="segmentation", metadata={"help": "what ground truth to write"})
    n: int = field(default=100, metadata={"help": "number of images (slides for --kind slide)"})
    size: int | None = field(
        default=None, metadata={"help": "image side in pixels (default 256; slide width, default 2048)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed (same seed -> identical files)"})
    mpp: float = field(default=0.5, metadata={"help": "micrometres per pixel"})
    splits: list[str] = field(
        default_factory=list,
        metadata={"help": "split:fraction list (default train:0.7,val:0.15,test:0.15; unlabeled: train:1)"},
    )
    min_coverage: float = field(
        default=0.02, metadata={"help": "patch_labels: a class is present when it covers at least this share"}
    )
    mask_downsample: int = field(default=4, metadata={"help": "slide: downsample of the label mask PNG"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    layout: Literal["structured", "random"] = field(
        default="structured", metadata={"help": "nuclei-masks: crypt-like (structured) or uniform (random) layout"})
    render: Literal["multichannel", "2channel", "grey", "binary"] = field(
        default="multichannel", metadata={"help": "nuclei-masks: rendering of the mask image"})
    grid: int = field(default=4, metadata={"help": "nuclei-masks: tiles per canvas side (canvas = grid * size)"})

    def validate(self) -> None:
        """Check counts, sizes and split fractions."""
        if self.n < 1:
            raise ConfigError(f"'n' must be at least 1, got {self.n}")
        if self.size is not None and not (16 <= self.size <= 65536):
            raise ConfigError(f"'size' must be between 16 and 65536, got {self.size}")
        if self.kind == "slide" and self.size is not None and self.size < 256:
            raise ConfigError(f"'size' of a slide must be at least 256, got {self.size}")
        if not self.mpp > 0:
            raise ConfigError(f"'mpp' must be positive, got {self.mpp}")
        if not 0 <= self.min_coverage < 1:
            raise ConfigError(f"'min_coverage' must be in [0, 1), got {self.min_coverage}")
        if self.grid < 1:
            raise ConfigError(f"'grid' must be at least 1, got {self.grid}")
        if self.mask_downsample < 1:
            raise ConfigError(f"'mask_downsample' must be at least 1, got {self.mask_downsample}")
        parse_splits(self.splits or DEFAULT_SPLITS)

    @property
    def image_size(self) -> int:
        """The image side (or slide width) after defaults."""
        if self.size is not None:
            return self.size
        return 2048 if self.kind == "slide" else 256


def parse_splits(items: list[str]) -> list[tuple[str, float]]:
    """Parse ``["train:0.7", "val:0.3"]`` into names and fractions (normalised to sum 1).

    Raises:
        ConfigError: A malformed item, a repeated name or fractions that do not sum to a positive number.
    """
    out: list[tuple[str, float]] = []
    for item in items:
        name, sep, frac = item.partition(":")
        try:
            value = float(frac) if sep else float("nan")
        except ValueError:
            value = float("nan")
        if not name.strip() or not value >= 0 or "/" in name:
            raise ConfigError(f"split '{item}' must look like name:fraction (e.g. train:0.7)")
        if any(n == name for n, _ in out):
            raise ConfigError(f"split '{name}' is given twice")
        out.append((name.strip(), value))
    total = sum(v for _, v in out)
    if total <= 0:
        raise ConfigError(f"split fractions must sum to a positive number, got {items}")
    return [(n, v / total) for n, v in out]


def split_counts(n: int, splits: list[tuple[str, float]]) -> list[tuple[str, int]]:
    """Number of images per split: rounded shares that sum to ``n``; a split with a share gets >= 1 if possible."""
    counts = [int(n * f) for _, f in splits]
    rema = sorted(range(len(splits)), key=lambda i: -(n * splits[i][1] - counts[i]))
    for i in rema[: n - sum(counts)]:
        counts[i] += 1
    for i, (_, f) in enumerate(splits):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return [(name, c) for (name, _), c in zip(splits, counts) if c > 0]
