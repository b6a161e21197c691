"""Tests of ``pathseg data patchify``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.check import check_dataset
from pathseg.data.layout import ClassInfo, DatasetInfo, read_dataset_info, write_dataset_info
from pathseg.data.patchify import patch_labels, patch_starts


def make_set(root: Path) -> Path:
    """One 64x96 image per split; mask: class 1 in x<32, class 2 in x>=32 rows>=60, 255 in the last 4 rows."""
    write_dataset_info(root, DatasetInfo(name="toy", task="segmentation", classes=[
        ClassInfo("background", 0), ClassInfo("a", 1), ClassInfo("b", 2)]))
    mask = np.zeros((64, 96), np.uint8)
    mask[:, :32] = 1
    mask[60:, 32:] = 2
    mask[:, 64:] = 255
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        Image.new("RGB", (96, 64), (200, 100, 150)).save(root / split / "images" / "im.png")
        Image.fromarray(mask).save(root / split / "masks" / "im.png")
    return root


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def test_patch_starts_cover_the_image() -> None:
    assert patch_starts(100, 32, 32) == [0, 32, 64, 68]
    assert patch_starts(64, 32, 16) == [0, 16, 32]
    assert patch_starts(10, 32, 32) == []


def test_patch_labels_follow_the_fraction() -> None:
    m = np.zeros((10, 10), np.uint8)
    m[0, :6] = 1  # 6 of 100 labelled pixels
    assert patch_labels(m, [0, 1, 2], 255, 0.05) == [1, 1, 0]
    assert patch_labels(m, [0, 1, 2], 255, 0.07) == [1, 0, 0]
    m[1:, :] = 255  # now 6 of 10 labelled
    assert patch_labels(m, [0, 1, 2], 255, 0.5) == [0, 1, 0]
    assert patch_labels(np.full((4, 4), 255, np.uint8), [0, 1], 255, 0.1) is None


def test_patchify_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_set(tmp_path / "seg")
    out = tmp_path / "patches"
    assert main(["data", "patchify", str(root), "--size", "32", "--min-fraction", "0.05", "--out", str(out)]) == 0
    info = read_dataset_info(out)
    assert info.task == "patch_labels" and info.class_names == ["background", "a", "b"]
    rows = read_rows(out / "train" / "labels.csv")
    # x=64 patches are fully ignored and dropped; 2 rows x 2 columns remain
    assert sorted(rows) == ["im_y0_x0", "im_y0_x32", "im_y32_x0", "im_y32_x32"]
    assert (rows["im_y0_x0"]["background"], rows["im_y0_x0"]["a"], rows["im_y0_x0"]["b"]) == ("0", "1", "0")
    assert (rows["im_y32_x32"]["background"], rows["im_y32_x32"]["b"]) == ("1", "1")  # 4 of 32 rows: 12.5%
    assert rows["im_y0_x32"]["b"] == "0"
    assert not (out / "train" / "masks").exists()
    assert len(list((out / "test" / "masks").iterdir())) == 4
    assert check_dataset(out).ok


def test_patchify_min_fraction_and_splits(tmp_path: Path) -> None:
    root = make_set(tmp_path / "seg")
    out = tmp_path / "p"
    assert main(["data", "patchify", str(root), "--size", "32", "--min-fraction", "0.2", "--out", str(out),
                 "--splits", "train"]) == 0
    assert read_rows(out / "train" / "labels.csv")["im_y32_x32"]["b"] == "0"
    assert not (out / "test").exists()


def test_patchify_keep_train_masks(tmp_path: Path) -> None:
    root = make_set(tmp_path / "seg")
    out = tmp_path / "p"
    assert main(["data", "patchify", str(root), "--size", "32", "--out", str(out), "--keep-train-masks"]) == 0
    masks = sorted(p.stem for p in (out / "train" / "masks").iterdir())
    assert masks == sorted(read_rows(out / "train" / "labels.csv"))
    assert check_dataset(out).ok


def test_patchify_bad_input_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_set(tmp_path / "seg")
    bad = root / "test" / "images" / "im.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "p"
    assert main(["data", "patchify", str(root), "--size", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "im.png" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".p")]
