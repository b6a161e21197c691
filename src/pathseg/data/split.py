"""Validation splits and label-fraction subsets as id lists, without copying images.

An id list is a text file with one sample id per line; ``#`` lines are comments. The first comment line
``# split: <folder>`` names the split folder that holds the images, so a list can be resolved on its own::

    DIR/splits/train_seed0.txt          # pathseg data split DIR --val 0.1 --seed 0   (the rest of train)
    DIR/splits/val_seed0.txt            #   ... the held-out validation ids
    DIR/splits/train_frac0.1_seed0.txt  # pathseg data subset DIR --fraction 0.1 --seed 0

How tasks consume them: :func:`subset_ids` (``--label-fraction``) returns the labelled ids of a split;
:func:`resolve_ids` turns a split name *or* an id-list name into ``(folder, ids)``; :func:`read_id_list` reads
any list file. Everything is deterministic for a seed, and subsets are nested: for the same seed, the 10% list is
contained in the 25% list (both are prefixes of one seeded, label-stratified order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pathseg.data.layout import labels_path, list_ids, read_labels_csv
from pathseg.errors import ConfigError, DataError
from pathseg.io import atomic_write_text

SPLITS_DIR = "splits"


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Read an id list: one id per line, blank lines and ``#`` comments skipped.

    Raises:
        DataError: The file is missing or repeats an id.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("id list not found", p)
    ids: list[str] = []
    seen: set[str] = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item in seen:
            raise DataError(f"id '{item}' is listed twice", p)
        seen.add(item)
        ids.append(item)
    return ids


def _list_folder(path: Path) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# split:"):
            return line.partition(":")[2].strip() or None
    return None


def write_id_list(path: str | os.PathLike[str], ids: list[str], split: str, comment: str = "") -> None:
    """Write an id list atomically, recording the split folder its ids live in."""
    head = [f"# split: {split}"] + ([f"# {comment}"] if comment else [])
    atomic_write_text(path, "\n".join([*head, *ids]) + "\n")


def resolve_ids(root: str | os.PathLike[str], name: str) -> tuple[str, list[str]]:
    """Resolve a split folder name or an id-list name (``DIR/splits/<name>.txt``) to ``(folder, ids)``.

    A split folder wins over an id list of the same name. Ids of a list are checked against the folder.

    Raises:
        DataError: Neither exists, or the list names ids absent from its folder.
    """
    root = Path(root)
    if (root / name / "images").is_dir():
        return name, list_ids(root, name)
    listed = root / SPLITS_DIR / f"{name}.txt"
    if not listed.is_file():
        list_ids(root, name)  # raises the standard "split not found" error
    folder = _list_folder(listed)
    if folder is None:
        raise DataError("id list lacks its '# split: <folder>' header line", listed)
    ids = read_id_list(listed)
    present = set(list_ids(root, folder))
    missing = [i for i in ids if i not in present]
    if missing:
        raise DataError(f"{len(missing)} ids are not in split '{folder}' (e.g. '{missing[0]}')", listed)
    return folder, ids


def _strata(root: Path, folder: str, ids: list[str]) -> list[str]:
    """A stratum per id from ``labels.csv`` (all label columns joined), or one stratum without labels."""
    path = labels_path(root, folder)
    if not path.is_file():
        return [""] * len(ids)
    header, rows = read_labels_csv(path)
    return ["|".join(rows.get(i, {}).get(h, "") for h in header[1:]) for i in ids]


def seeded_order(root: str | os.PathLike[str], split: str, seed: int) -> tuple[str, list[str]]:
    """All ids of a split in a seeded, label-stratified order; prefixes of it are the subsets.

    Each stratum (same labels) is shuffled; its i-th item gets the key ``(i + u) / n`` with a random offset
    ``u``, so every prefix of the merged order holds about the same fraction of each stratum.

    Returns:
        The split folder and the ordered ids.
    """
    folder, ids = resolve_ids(root, split)
    ids = sorted(ids)
    strata = _strata(Path(root), folder, ids)
    rng = np.random.default_rng(seed)
    keyed: list[tuple[float, str]] = []
    for stratum in sorted(set(strata)):
        members = [i for i, s in zip(ids, strata) if s == stratum]
        perm = rng.permutation(len(members))
        offset = float(rng.random())
        keyed += [((rank + offset) / len(members), members[j]) for rank, j in enumerate(perm)]
    keyed.sort()
    return folder, [i for _, i in keyed]


def _count(n: int, fraction: float) -> int:
    return min(n, max(1, round(fraction * n))) if n else 0


def subset_ids(root: str | Path, split: str, fraction: float, seed: int) -> list[str]:
    """The labelled ids of a split for a label fraction (sorted); nested across fractions for one seed.

    Args:
        root: The data set directory.
        split: A split folder (``train``) or an id list in ``DIR/splits`` (``train_seed0``).
        fraction: In ``(0, 1]``; at least one id is kept.
        seed: The seed of the order.

    Raises:
        ConfigError: ``fraction`` is outside ``(0, 1]``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
    _, order = seeded_order(root, split, seed)
    return sorted(order[: _count(len(order), fraction)])


def split_ids(root: str | Path, split: str, val: float, seed: int) -> tuple[list[str], list[str]]:
    """Split a split's ids into ``(train, val)`` (both sorted), stratified by labels when there are any."""
    if not 0.0 < val < 1.0:
        raise ConfigError(f"--val must be in (0, 1), got {val}")
    _, order = seeded_order(root, split, seed)
    if len(order) < 2:
        raise DataError(f"split '{split}' has {len(order)} images; cannot hold out a validation set", root)
    k = min(len(order) - 1, _count(len(order), val))
    # Validation ids are the *end* of the seeded order, so small label-fraction subsets of the whole split
    # (its prefixes) do not overlap them.
    return sorted(order[: len(order) - k]), sorted(order[len(order) - k:])


@dataclass
class SplitConfig:
    """Hold out a validation set from a split as id lists (DIR/splits/train_seed<S>.txt, val_seed<S>.txt)."""

    root: Path = field(metadata={"positional": True, "help": "data set directory"})
    val: float = field(default=0.1, metadata={"help": "fraction held out for validation"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    from_split: str = field(default="train", metadata={"help": "split to divide", "aliases": ["--from"]})


@dataclass
class SubsetConfig:
    """Write a label-fraction subset of a split as an id list (DIR/splits/<split>_frac<F>_seed<S>.txt)."""

    root: Path = field(metadata={"positional": True, "help": "data set directory"})
    fraction: float = field(default=0.1, metadata={"help": "fraction of labelled images kept, in (0, 1]"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    split: str = field(default="train", metadata={"help": "split folder or id-list name"})


def split_command(cfg: SplitConfig) -> int:
    """CLI: write ``train_seed<S>.txt`` and ``val_seed<S>.txt`` under ``DIR/splits``."""
    folder, _ = resolve_ids(cfg.root, cfg.from_split)
    train, val = split_ids(cfg.root, cfg.from_split, cfg.val, cfg.seed)
    note = f"from {cfg.from_split} with --val {cfg.val} --seed {cfg.seed}"
    out = Path(cfg.root) / SPLITS_DIR
    write_id_list(out / f"train_seed{cfg.seed}.txt", train, folder, note)
    write_id_list(out / f"val_seed{cfg.seed}.txt", val, folder, note)
    print(f"{out / f'train_seed{cfg.seed}.txt'}: {len(train)} ids")
    print(f"{out / f'val_seed{cfg.seed}.txt'}: {len(val)} ids")
    return 0


def subset_command(cfg: SubsetConfig) -> int:
    """CLI: write ``<split>_frac<F>_seed<S>.txt`` under ``DIR/splits``."""
    folder, everything = resolve_ids(cfg.root, cfg.split)
    ids = subset_ids(cfg.root, cfg.split, cfg.fraction, cfg.seed)
    path = Path(cfg.root) / SPLITS_DIR / f"{cfg.split}_frac{cfg.fraction:g}_seed{cfg.seed}.txt"
    write_id_list(path, ids, folder, f"subset of {cfg.split}: --fraction {cfg.fraction} --seed {cfg.seed}")
    print(f"{path}: {len(ids)} of {len(everything)} ids")
    return 0
