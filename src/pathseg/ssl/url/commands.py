"""``pathseg url superpixels``: precompute the superpixel cache of a data set (light module: no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathseg.ssl.url.config import SuperpixelConfig


@dataclass
class SuperpixelsConfig:
    """Compute every missing superpixel map of a data set once (they are cached beside the images).

    Args:
        root: Data set directory in the canonical layout.
        splits: Splits to process (default: all).
        superpixels: Superpixel settings (set with ``superpixels.region_size=24`` etc.).
        progress: Show a progress bar.
    """

    root: str = field(metadata={"positional": True, "help": "data set directory"})
    splits: list[str] = field(default_factory=list, metadata={"help": "splits to process (default: all)"})
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig)
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def superpixels_command(cfg: SuperpixelsConfig) -> int:
    """Compute the missing maps; print one line per split."""
    from pathseg.data.layout import list_ids, list_splits, read_dataset_info
    from pathseg.ssl.url.superpixels import cache_folder, ensure_superpixels

    read_dataset_info(cfg.root)
    cfg.superpixels.validate()
    for split in cfg.splits or list_splits(cfg.root):
        ids = list_ids(cfg.root, split)
        made = ensure_superpixels(cfg.root, split, ids, cfg.superpixels, cfg.progress)
        where = cache_folder(cfg.root, split, cfg.superpixels)
        print(f"{split}: {len(ids)} images, {made} maps computed, {len(ids) - made} cached ({where})")
    return 0
