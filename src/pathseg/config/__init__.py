"""Typed configuration: dataclasses loaded from YAML with dotted command-line overrides."""

from pathseg.config.core import (
    config_to_dict,
    config_to_yaml,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
)

__all__ = [
    "config_to_dict",
    "config_to_yaml",
    "from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
