"""Lists of methods are derived from the registry: help, docs and shipped configs cannot go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathseg.cli.main import main
from pathseg.config import load_config
from pathseg.ssl.api import load_methods
from pathseg.ssl.config import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
METHODS = load_methods().names()


def test_help_lists_every_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):  # argparse's --help exits
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    for name in METHODS:
        assert f"  {name}  " in text or f"  {name} " in text, name


@pytest.mark.parametrize("name", METHODS)
def test_every_method_is_documented_and_has_configs(name: str) -> None:
    table = (ROOT / "docs" / "pretraining.md").read_text()
    assert f"| `{name}` |" in table, f"{name} missing from the method table of docs/pretraining.md"
    configs = sorted((ROOT / "configs" / "pretrain").glob(f"{name}*.yaml"))
    assert configs, f"no configs/pretrain/{name}*.yaml"
    for path in configs:
        cfg = load_config(PretrainConfig, path, values={"data": "d", "out": "o"})
        assert cfg.method == name or path.stem.startswith(cfg.method), path
