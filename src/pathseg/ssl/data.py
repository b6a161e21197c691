"""Data for pretraining: image sources, per-sample seeding, and a sampler that resumes mid-epoch exactly.

Every sample is drawn with ``torch`` seeded from ``(run seed, epoch, position in the epoch)``, whatever the worker,
and the sampler can start an epoch at any position, so a run resumed from a mid-epoch checkpoint sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pathseg.errors import DataError


class TileImages:
    """Adapter of :class:`pathseg.data.tiles.TileDataset` (tile index CSV) to the engine: image + grid position.

    Items are ``transform(image)`` plus ``slide_id``, ``row``, ``col`` (for methods that use the tile grid).
    """

    def __init__(self, index: str | os.PathLike[str], transform: Callable[[np.ndarray], Any] | None = None) -> None:
        from pathseg.data.tiles import TileDataset

        self.tiles = TileDataset(index, transform=None)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tiles)

    def read(self, i: int) -> np.ndarray:
        """The pixels of tile ``i``."""
        return self.tiles.read(i)

    def __getitem__(self, i: int) -> Any:
        image = self.read(i)
        out: dict[str, Any] = dict(self.transform(image)) if self.transform is not None else {"image": image}
        rec = self.tiles.records[i]
        out.update(row=rec.row, col=rec.col)
        return out


def image_source(
    data: str | os.PathLike[str], splits: tuple[str, ...], transform: Callable[[np.ndarray], Any] | None,
    region_size: int = 0,
) -> Any:
    """The default pretraining dataset: a canonical data set directory or a tile index (``.csv``)."""
    p = Path(data)
    if p.suffix.lower() == ".csv" or (p.is_dir() and (p / "tiles.csv").is_file() and not (p / "dataset.yaml").exists()):
        return TileImages(p, transform)
    if not p.exists():
        raise DataError("pretraining data not found (give a data set directory or a tiles.csv)", p)
    from pathseg.data.unlabeled import UnlabeledImages

    return UnlabeledImages(p, splits, transform, crop_size=region_size)


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is produced with torch's RNG seeded by ``seed``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class ResumableSampler(Sampler[tuple[int, int]]):
    """Seeded shuffling, sharded over ranks, able to start an epoch at a given batch.

    Yields ``(dataset index, sample seed)``; the order of epoch ``e`` is a permutation seeded by ``(seed, e)``,
    padded to a multiple of ``world_size * batch_size`` (drop-last style: the remainder is dropped), and rank ``r``
    takes every ``world_size``-th batch slot.

    Args:
        length: Dataset size.
        batch_size: Per-rank batch size.
        seed: Run seed.
        rank: This process's global rank.
        world_size: Number of processes.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        self.global_batch = batch_size * world_size
        if length < self.global_batch:
            raise DataError(f"only {length} images for a global batch of {self.global_batch}")
        self.batches = length // self.global_batch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (Lightning calls this); a pending start position applies to its own epoch only."""
        if epoch != self.epoch:
            self.start_batch = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches * self.batch_size  # the full epoch, also when resuming inside it

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=g)[: self.batches * self.global_batch].tolist()
        start, self.start_batch = self.start_batch, 0
        for b in range(start, self.batches):
            base = b * self.global_batch + self.rank * self.batch_size
            for j in range(base, base + self.batch_size):
                yield order[j], (self.seed * 1_000_003 + self.epoch) * 10_000_019 + j


class ResumableLoader(DataLoader):
    """A DataLoader whose position (epoch, batches consumed) is saved in and restored from Lightning checkpoints.

    ``consumed`` is set by :class:`pathseg.ssl.module.SSLModule` after every training batch.
    """

    sampler: ResumableSampler

    def __init__(self, dataset: Any, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(SeededDataset(dataset), batch_size=sampler.batch_size, sampler=sampler, drop_last=True,
                         **kwargs)
        self.consumed = 0

    def state_dict(self) -> dict[str, int]:
        """Position for Lightning's checkpoint."""
        return {"epoch": self.sampler.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the position: the next iteration starts at the first batch not yet consumed."""
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if consumed >= self.sampler.batches:  # saved after the epoch's last batch: the next epoch starts afresh
            epoch, consumed = epoch + 1, 0
        self.sampler.epoch = epoch
        self.sampler.start_batch = consumed
        self.consumed = consumed
