"""Core helpers: atomic writes, staging directories, checked image reading, run directories, registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pathseg import __version__
from pathseg.errors import ConfigError, DataError, PathsegError
from pathseg.io import atomic_path, read_mask, read_rgb, staging_dir, write_png
from pathseg.registry import Registry
from pathseg.runs import RunDir


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_have_normal_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with staging_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_staging_dir_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError), staging_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with staging_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"
    with pytest.raises(PathsegError, match="exists already"), staging_dir(out):
        pass


def test_read_rgb_truncated_png_names_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good)
    assert read_rgb(good).shape == (32, 32, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match=r"bad\.png: cannot decode image"):
        read_rgb(bad)


def test_palette_png_keeps_indices(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    write_png(tmp_path / "m.png", labels, palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    assert Image.open(tmp_path / "m.png").mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)
    write_png(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="single-channel"):
        read_mask(tmp_path / "rgb.png")


@dataclass
class _Cfg:
    lr: float = 0.1


def test_run_dir_records_provenance(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run", _Cfg(lr=0.5), seed=7, command=["pathseg", "x"])
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["pathseg_version"] == __version__
    assert info["seed"] == 7 and info["status"] == "running" and info["command"] == ["pathseg", "x"]
    assert "git_commit" in info and info["start_time"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"lr": 0.5}
    run.finish({"miou": 0.5})
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["end_time"] and info["metrics"] == {"miou": 0.5}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"miou": 0.5}


def test_registry_nearest_name() -> None:
    reg: Registry[int] = Registry("backbone")
    reg.add("resnet18", 1)
    reg.add("resnet50", 2)
    assert reg.get("resnet50") == 2 and "resnet18" in reg and reg.names() == ["resnet18", "resnet50"]
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet17' \(did you mean 'resnet18'\?\)"):
        reg.get("resnet17")
    with pytest.raises(ValueError, match="registered already"):
        reg.add("resnet18", 3)
