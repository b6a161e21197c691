"""URL superpixels: backends, cache (computed once, atomic, keyed by parameters), CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pathseg.cli.main import main
from pathseg.errors import ConfigError
from pathseg.io import read_mask
from pathseg.ssl.url import superpixels as sp_mod
from pathseg.ssl.url.config import SuperpixelConfig
from pathseg.ssl.url.superpixels import (
    cache_path,
    compute_superpixels,
    ensure_superpixels,
    grid_superpixels,
    load_superpixels,
    params_hash,
)
from ssl_helpers import make_unlabeled


def test_grid_mode_matches_the_spec() -> None:
    ids = grid_superpixels(768, 768, 32)
    assert ids.max() == 575 and ids[0, 0] == 0 and ids[0, 32] == 1 and ids[32, 0] == 24 and ids[767, 767] == 575
    ragged = grid_superpixels(50, 70, 32)
    assert ragged.max() == 5 and ragged[49, 69] == 5 and ragged[0, 69] == 2  # 3 columns, 2 rows


def test_slic_region_size_sets_the_count() -> None:
    rng = np.random.default_rng(0)
    rgb = (rng.uniform(0, 255, (8, 8, 3)).repeat(16, 0).repeat(16, 1)).astype(np.uint8)  # 128² of 16² blocks
    small = compute_superpixels(rgb, SuperpixelConfig(region_size=16))
    large = compute_superpixels(rgb, SuperpixelConfig(region_size=32))
    assert small.dtype == np.int32 and small.min() == 0
    assert np.array_equal(np.unique(small), np.arange(small.max() + 1))  # contiguous ids
    assert 30 <= small.max() + 1 <= 100 and large.max() < small.max()


def test_opencv_backend_error_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ConfigError, match="opencv-contrib"):
        compute_superpixels(np.zeros((32, 32, 3), np.uint8), SuperpixelConfig(backend="opencv_slico"))


def test_hash_depends_on_parameters_only() -> None:
    a = SuperpixelConfig()
    assert params_hash(a) == params_hash(SuperpixelConfig(cache_dir="/elsewhere"))
    assert params_hash(a) != params_hash(SuperpixelConfig(region_size=24))


def test_cache_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_unlabeled(tmp_path / "data", n=3, size=64)
    cfg = SuperpixelConfig(region_size=12)
    assert ensure_superpixels(root, "train", ["train_000", "train_001", "train_002"], cfg, progress=False) == 3
    path = cache_path(root, "train", "train_001", cfg)
    assert path.parent == root / "train" / "superpixels" and path.suffix == ".png"
    assert (path.parent / f"params_{params_hash(cfg)}.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    stored = read_mask(path)
    assert stored.dtype == np.uint16 and stored.shape == (64, 64)

    calls = []
    monkeypatch.setattr(sp_mod, "compute_superpixels", lambda *a: calls.append(1))
    assert ensure_superpixels(root, "train", ["train_000", "train_001", "train_002"], cfg, progress=False) == 0
    assert np.array_equal(load_superpixels(root, "train", "train_001", cfg), stored)
    assert not calls


def test_cache_dir_option(tmp_path: Path) -> None:
    root = make_unlabeled(tmp_path / "data", n=1, size=48)
    cfg = SuperpixelConfig(region_size=12, cache_dir=str(tmp_path / "cache"))
    ensure_superpixels(root, "train", ["train_000"], cfg, progress=False)
    assert cache_path(root, "train", "train_000", cfg).parent == tmp_path / "cache" / "train"
    assert not (root / "train" / "superpixels").exists()


def test_cli_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_unlabeled(tmp_path / "data", n=2, size=48)
    assert main(["url", "superpixels", str(root), "superpixels.region_size=12", "--no-progress"]) in (0, None)
    assert "2 maps computed" in capsys.readouterr().out
    assert main(["url", "superpixels", str(root), "superpixels.region_size=12", "--no-progress"]) in (0, None)
    assert "0 maps computed, 2 cached" in capsys.readouterr().out
