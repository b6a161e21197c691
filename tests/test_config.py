"""Typed configs: YAML loading, dotted overrides, strict keys, type errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pathseg.config import config_to_dict, load_config, parse_overrides
from pathseg.errors import ConfigError


@dataclass
class Trainer:
    max_epochs: int = 10
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"
    lr: float = 0.1


@dataclass
class Cfg:
    data: Path = Path("x")
    seeds: list[int] = field(default_factory=lambda: [0])
    freeze: bool = False
    mpp: float | None = None
    trainer: Trainer = field(default_factory=Trainer)


def test_defaults_file_overrides_precedence(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  max_epochs: 3\n  lr: 0.5\nseeds: [1, 2]\n")
    cfg = load_config(Cfg, f, overrides=["trainer.max_epochs=7", "freeze=true"], values={"mpp": "0.5"})
    assert cfg.trainer.max_epochs == 7
    assert cfg.trainer.lr == 0.5
    assert cfg.seeds == [1, 2]
    assert cfg.freeze is True
    assert cfg.mpp == 0.5
    assert isinstance(cfg.data, Path)
    assert config_to_dict(cfg)["trainer"] == {"max_epochs": 7, "precision": "32", "lr": 0.5}


def test_unknown_key_names_nearest() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.max_epoch'.*mean 'trainer.max_epochs'"):
        load_config(Cfg, overrides=["trainer.max_epoch=5"])


def test_unknown_key_in_file_names_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("seed: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'seed'.*did you mean 'seeds'"):
        load_config(Cfg, f)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("trainer:\n  max_epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: YAML syntax error at line \d+"):
        load_config(Cfg, f)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "expected an integer"),
        ("trainer.precision=8", "is not one of"),
        ("freeze=maybe", "expected true or false"),
        ("seeds=3", "expected a list"),
        ("novalue", "must look like key=value"),
    ],
)
def test_type_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, overrides=[override])


def test_parse_overrides_nested_and_yaml_values() -> None:
    assert parse_overrides(["a.b=1", "a.c=[1,2]", "d=x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
