"""Typed configuration: dataclasses loaded from YAML with dotted command-line overrides."""

from pathseg.config.checks import check_seed, check_seeds
from pathseg.config.core import (
    config_to_dict,
    config_to_yaml,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
)

__all__ = [
    "check_seed",
    "check_seeds",
    "config_to_dict",
    "config_to_yaml",
    "from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
