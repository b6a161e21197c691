"""The CLI framework: flags from typed configs, dotted overrides, one-line errors with exit code 2."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pathseg.cli.command import Command, parse_command
from pathseg.cli.main import all_commands, main
from pathseg.errors import DataError


@dataclass
class Opt:
    lr: float = 0.1
    epochs: int = 2


@dataclass
class ToyConfig:
    """A toy command for testing."""

    inputs: list[Path] = field(default_factory=list, metadata={"positional": True})
    out: Path = Path("out")
    label_fraction: float = 1.0
    seeds: list[int] = field(default_factory=lambda: [0])
    freeze_encoder: bool = False
    optim: Opt = field(default_factory=Opt)


TOY = Command(name="toy", config="test_cli:ToyConfig", run="test_cli:run_toy", help="toy")


def run_toy(cfg: ToyConfig) -> int:
    if not cfg.inputs:
        raise DataError("no inputs given", cfg.out)
    return 0


def test_flags_positionals_and_overrides() -> None:
    cfg, show = parse_command(
        TOY,
        ["a.png", "b.png", "--label-fraction", "0.25", "--seeds", "0,1,2", "--freeze-encoder", "optim.lr=0.5"],
        prog="pathseg toy",
    )
    assert not show
    assert cfg.inputs == [Path("a.png"), Path("b.png")]
    assert cfg.label_fraction == 0.25
    assert cfg.seeds == [0, 1, 2]
    assert cfg.freeze_encoder is True
    assert cfg.optim.lr == 0.5 and cfg.optim.epochs == 2


def test_yaml_then_flags_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "toy.yaml"
    f.write_text("label_fraction: 0.5\noptim:\n  epochs: 9\n  lr: 0.3\n")
    cfg, _ = parse_command(TOY, ["x", "--config", str(f), "--label-fraction", "0.1", "optim.lr=1e-3"], prog="t")
    assert cfg.label_fraction == 0.1
    assert cfg.optim.epochs == 9
    assert cfg.optim.lr == pytest.approx(1e-3)


def test_every_command_has_help_and_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = all_commands()
    for cmd in commands:
        with pytest.raises(SystemExit) as exc:
            main([*cmd.name.split(), "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "usage:" in out
        assert cmd.example, f"command '{cmd.name}' has no example"
        assert "example:" in out


def test_top_level_help_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'frobnicate'")
    assert len(err.strip().splitlines()) == 1


def test_missing_positional_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "convert", "glas"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pathseg data convert: ") and "required" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_override_key_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--out", "x", "no_such_key_xyz=1", "--print-config"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown key 'no_such_key_xyz'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_yaml_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("a: [1, 2\n")
    code = main(["synth", "--config", str(bad), "--print-config"])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.yaml: YAML syntax error" in err and len(err.strip().splitlines()) == 1
