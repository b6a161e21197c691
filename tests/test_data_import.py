"""``pathseg data import``: folder pairs (index, grey-value and colour masks) and GeoJSON polygons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.geojson import rasterise, read_shapes
from pathseg.data.layout import read_dataset_info
from pathseg.io import read_mask

RNG = np.random.default_rng(0)


def _rgb(h: int = 20, w: int = 24) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _pair(root: Path, masks: dict[str, np.ndarray], suffix: str = ".png") -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, mask in masks.items():
        _rgb(*mask.shape[:2]).save(root / "images" / f"{name}{suffix}")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["data", "import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_binary_255_masks_with_mapping_then_second_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = np.zeros((20, 24), np.uint8)
    m[2:10, 3:9] = 255
    _pair(tmp_path / "src", {"a": m, "b": 255 - m})
    out = tmp_path / "ds"
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(out), "--mapping", "0:background,255:gland")
    assert code == 0, err
    info = read_dataset_info(out)
    assert info.class_names == ["background", "gland"] and info.task == "segmentation"
    got = read_mask(out / "train" / "masks" / "a.png")
    assert got.dtype == np.uint8 and int(got.sum()) == 8 * 6 and got[2, 3] == 1 and got[0, 0] == 0
    assert int(read_mask(out / "train" / "masks" / "b.png").sum()) == 20 * 24 - 48
    # a second split reuses the classes; the same split again is refused without --overwrite
    _pair(tmp_path / "src2", {"c": m})
    code, _, err = _run(capsys, str(tmp_path / "src2"), "--out", str(out), "--split", "test",
                        "--mapping", "0:background,255:gland")
    assert code == 0, err
    assert int(read_mask(out / "test" / "masks" / "c.png").sum()) == 48
    code, _, err = _run(capsys, str(tmp_path / "src2"), "--out", str(out), "--split", "test",
                        "--mapping", "0:background,255:gland")
    assert code == 2 and "split 'test' exists already" in err
    assert main(["data", "check", str(out), "--no-progress"]) == 0
    assert not list(out.glob(".import-*"))


def test_unmapped_value_is_refused_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = np.zeros((20, 24), np.uint8)
    m[0, 0] = 7
    _pair(tmp_path / "src", {"a": np.zeros((20, 24), np.uint8), "z": m})
    out = tmp_path / "ds"
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(out), "--mapping", "0:background,255:gland")
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'src' / 'masks' / 'z.png'}: mask values ['7'] are not "
                                        "in --mapping (0, 255)"]
    assert not out.exists() and not list(tmp_path.glob(".ds*"))


def test_colour_masks_and_ignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[:, 12:] = (255, 0, 0)
    rgb[:5, :5] = (128, 128, 128)
    _pair(tmp_path / "src", {"a": rgb})
    out = tmp_path / "ds"
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(out),
                        "--mapping", "#000000:stroma,255/0/0:tumour,#808080:ignore")
    assert code == 0, err
    got = read_mask(out / "train" / "masks" / "a.png")
    expected = np.zeros((20, 24), np.uint8)
    expected[:, 12:] = 1
    expected[:5, :5] = 255
    assert np.array_equal(got, expected)
    assert read_dataset_info(out).class_names == ["stroma", "tumour"]


def test_binary_without_mapping_and_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = np.zeros((20, 24), np.uint8)
    m[5:, :] = 255
    _pair(tmp_path / "src", {"a": m}, suffix=".jpg")
    code, stdout, err = _run(capsys, str(tmp_path / "src"), "--out", str(tmp_path / "ds"))
    assert code == 0, err
    assert "0:background, 1:foreground" in stdout
    assert int(read_mask(tmp_path / "ds" / "train" / "masks" / "a.png").sum()) == 15 * 24
    Image.fromarray(np.zeros((10, 24), np.uint8)).save(tmp_path / "src" / "masks" / "a.png")
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(tmp_path / "ds2"))
    assert code == 2 and "mask size 24x10 differs from image size 24x20" in err


FEATURES = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[2, 2], [12, 2], [12, 10], [2, 10], [2, 2]], [[5, 5], [8, 5], [8, 8], [5, 8], [5, 5]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon",
                                         "coordinates": [[[[14, 0], [20, 0], [20, 4], [14, 4], [14, 0]]]]},
         "properties": {"classification": {"name": "Stroma"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}},
    ],
}


def _expected_geojson(fill: int) -> np.ndarray:
    """PIL fills polygon outlines inclusively: the box x 2..12, y 2..10 minus the hole x 5..8, y 5..8 redrawn 0.
    Classes sorted after background: Stroma 1, Tumor 2."""
    exp = np.full((16, 24), fill, np.uint8)
    exp[2:11, 2:13] = 2
    exp[5:9, 5:9] = fill
    exp[0:5, 14:21] = 1
    return exp


def test_geojson_rasterisation_matches_hand_drawn_mask(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(FEATURES))
    shapes, skipped = read_shapes(path)
    assert [s.name for s in shapes] == ["Tumor", "Stroma"] and skipped == 1
    got = rasterise(shapes, (16, 24), {"background": 0, "Stroma": 1, "Tumor": 2}, 0)
    assert np.array_equal(got, _expected_geojson(0))


def test_geojson_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    _rgb(16, 24).save(tmp_path / "img" / "slide 1.tif")
    (tmp_path / "ann" / "slide 1.tif.geojson").write_text(json.dumps(FEATURES))  # QuPath names it after the image
    out = tmp_path / "ds"
    code, _, err = _run(capsys, str(tmp_path / "img"), "--geojson", str(tmp_path / "ann"), "--out", str(out),
                        "--unannotated", "ignore")
    assert code == 0, err
    info = read_dataset_info(out)
    assert info.class_names == ["Stroma", "Tumor"]  # no background class when unannotated pixels are ignored
    exp = _expected_geojson(255)
    exp[exp == 1], exp[exp == 2] = 0, 1
    assert np.array_equal(read_mask(out / "train" / "masks" / "slide_1.png"), exp)
    (tmp_path / "ann" / "slide 1.tif.geojson").write_text("{not json")
    code, _, err = _run(capsys, str(tmp_path / "img"), "--geojson", str(tmp_path / "ann"), "--out", str(tmp_path / "x"))
    assert code == 2 and "slide 1.tif.geojson: cannot read GeoJSON" in err and not (tmp_path / "x").exists()


def test_bad_mapping_and_missing_mask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pair(tmp_path / "src", {"a": np.zeros((20, 24), np.uint8)})
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(tmp_path / "ds"), "--mapping", "0-background")
    assert code == 2 and "must look like VALUE:CLASS" in err
    _rgb().save(tmp_path / "src" / "images" / "lonely.png")
    code, _, err = _run(capsys, str(tmp_path / "src"), "--out", str(tmp_path / "ds"))
    assert code == 2 and "lonely.png: image has no mask" in err
