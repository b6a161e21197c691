"""Small value checks shared by the configs' ``validate()`` methods and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from pathseg.errors import ConfigError

#: Seeds must fit numpy's and torch's generators (non-negative, below 2**32).
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> None:
    """Refuse a seed numpy/torch cannot take (negative or >= 2**32).

    Raises:
        ConfigError: One line naming the option and the value.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"--{name.replace('_', '-')}: a seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--{name.replace('_', '-')}: a seed must be in [0, {MAX_SEED}], got {seed}")


def check_seeds(seeds: Sequence[int], name: str = "seeds") -> None:
    """Refuse an empty seed list, a repeated seed (``0,0`` would run the same thing twice) or an invalid seed.

    Raises:
        ConfigError: One line naming the option and the offending value.
    """
    if not seeds:
        raise ConfigError(f"--{name}: give at least one seed (e.g. --{name} 0,1,2)")
    for seed in seeds:
        check_seed(seed, name)
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ConfigError(f"--{name}: seed {repeated[0]} is repeated in {','.join(map(str, seeds))} "
                          "(each seed is one independent run)")
