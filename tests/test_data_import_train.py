"""Bring your own data: ``data import`` of PNG + 0/255 masks or a GeoJSON export, then ``finetune`` and ``evaluate``
work on it with no manual editing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathseg.cli.main import main
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
FAST = ["--crop-size", "64", "--val-split", "", "trainer.max_steps=2", "trainer.val_every_steps=2",
        "trainer.batch_size=2", "trainer.num_workers=0", "trainer.accelerator=cpu", "trainer.progress_bar=false",
        "inference.num_examples=1"]


def _images(root: Path, n: int, with_masks: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    masks = []
    for i in range(n):
        m = np.zeros((64, 64), np.uint8)
        m[8 + 4 * i:40, 10:44] = 255
        img = np.where(m[..., None] > 0, [120, 40, 140], [230, 200, 220]) + rng.normal(0, 8, (64, 64, 3))
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / f"im{i}.png")
        if with_masks:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(m).save(root / "masks" / f"im{i}.png")
        masks.append(m)
    return masks


def _train_and_evaluate(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str) -> None:
    out = tmp_path / "run"
    code = main(["finetune", "--data", str(data), "--out", str(out), "--train-split", split, "--test-split", split,
                 *FAST])
    assert code == 0, capsys.readouterr().err
    first = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", split, "--device", "cpu"]) == 0
    again = json.loads(next(out.glob(f"eval_*_{split}.json")).read_text())
    assert again["miou"] == pytest.approx(first["miou"]) and first["class_names"] == ["background", "gland"]


def test_png_with_255_masks_import_finetune_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "src", 3, with_masks=True)
    data = tmp_path / "ds"
    assert main(["data", "import", str(tmp_path / "src"), "--out", str(data),
                 "--mapping", "0:background,255:gland"]) == 0, capsys.readouterr().err
    _train_and_evaluate(data, tmp_path, capsys, "train")


def test_geojson_import_finetune_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "img", 3, with_masks=False)
    (tmp_path / "ann").mkdir()
    for i in range(3):
        square = [[10, 8 + 4 * i], [44, 8 + 4 * i], [44, 40], [10, 40], [10, 8 + 4 * i]]
        feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
                   "properties": {"objectType": "annotation", "classification": {"name": "gland"}}}
        (tmp_path / "ann" / f"im{i}.png.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                                         "features": [feature]}))
    data = tmp_path / "ds"
    assert main(["data", "import", str(tmp_path / "img"), "--geojson", str(tmp_path / "ann"),
                 "--out", str(data)]) == 0, capsys.readouterr().err
    _train_and_evaluate(data, tmp_path, capsys, "train")
