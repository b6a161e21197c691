"""Tests of ``pathseg data check``: statistics of a valid set and every required bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.check import check_dataset
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info


def make_seg(root: Path, splits: dict[str, int], size: tuple[int, int] = (32, 48), seed: int = 0) -> Path:
    """A tiny canonical segmentation set: left third class 0, middle class 1, right class 2."""
    rng = np.random.default_rng(seed)
    write_dataset_info(root, DatasetInfo(name="toy", task="segmentation", classes=[
        ClassInfo("background", 0), ClassInfo("a", 1, (255, 0, 0)), ClassInfo("b", 2, (0, 255, 0))]))
    h, w = size
    for split, n in splits.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            img.save(root / split / "images" / f"{split}_{i}.png")
            mask = np.zeros((h, w), np.uint8)
            mask[:, w // 3: 2 * w // 3] = 1
            mask[:, 2 * w // 3:] = 2
            Image.fromarray(mask).save(root / split / "masks" / f"{split}_{i}.png")
    return root


def run_check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["data", "check", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str, name: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert name in errors[0], errors[0]


def test_valid_set_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 3, "test": 2})
    report = check_dataset(root)
    assert report.ok, report.problems
    assert report.splits["train"].images == 3 and report.splits["train"].masks == 3
    fractions = report.splits["train"].class_fractions()
    assert fractions["background"] == pytest.approx(1 / 3) and fractions["b"] == pytest.approx(1 / 3)
    code, out, _ = run_check(root, capsys)
    assert code == 0
    assert "train: 3 images, 3 masks" in out and "test: 2 images" in out
    assert "background 0.333" in out


def test_truncated_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    bad = root / "train" / "images" / "train_1.png"
    bad.write_bytes(bad.read_bytes()[:200])
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "train_1.png")
    assert "decode" in err


def test_mask_value_outside_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    mask = np.zeros((32, 48), np.uint8)
    mask[0, 0] = 7
    Image.fromarray(mask).save(root / "train" / "masks" / "train_0.png")
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "masks/train_0.png")
    assert "[7]" in err


def test_ignore_index_is_allowed(tmp_path: Path) -> None:
    root = make_seg(tmp_path / "ds", {"train": 1})
    mask = np.full((32, 48), 255, np.uint8)
    mask[:, :10] = 1
    Image.fromarray(mask).save(root / "train" / "masks" / "train_0.png")
    report = check_dataset(root)
    assert report.ok
    assert report.splits["train"].class_fractions()["a"] == 1.0


def test_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    Image.fromarray(np.zeros((30, 48), np.uint8)).save(root / "train" / "masks" / "train_1.png")
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "masks/train_1.png")
    assert "differs from image size" in err


def test_empty_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    (root / "val" / "images").mkdir(parents=True)
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "val/images")
    assert "no images" in err


def test_missing_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    (root / "train" / "masks" / "train_1.png").unlink()
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "images/train_1.png")
    assert "no mask" in err


def test_all_problems_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 3})
    (root / "train" / "masks" / "train_0.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "train" / "masks" / "train_1.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "train" / "masks" / "orphan.png")
    Image.new("RGB", (48, 32)).save(root / "train" / "images" / "train_2.jpg")
    report = check_dataset(root)
    messages = " | ".join(str(p) for p in report.problems)
    assert len(report.problems) == 4, messages
    for text in ("train_0.png: image has no mask", "train_1.png: mask size", "orphan.png: mask has no image",
                 "several suffixes"):
        assert text in messages
    code, _, err = run_check(root, capsys)
    assert code == 2 and "4 problems" in err and err.count("problem:") == 4


def test_instances_and_labels(tmp_path: Path) -> None:
    root = make_seg(tmp_path / "ds", {"train": 2})
    (root / "train" / "instances").mkdir()
    inst = np.zeros((32, 48), np.uint16)
    inst[2:6, 2:6], inst[10:20, 10:20] = 1, 2
    tifffile.imwrite(root / "train" / "instances" / "train_0.tif", inst)
    tifffile.imwrite(root / "train" / "instances" / "train_1.tif", np.zeros((32, 40), np.uint16))
    tifffile.imwrite(root / "train" / "instances" / "ghost.tif", inst)
    (root / "train" / "labels.csv").write_text("id,grade\ntrain_0,benign\ntrain_1,\nnope,malignant\n")
    report = check_dataset(root)
    text = " | ".join(str(p) for p in report.problems)
    assert "train_1.tif: instance map size" in text
    assert "ghost.tif: instance map has no image" in text
    assert "empty value" in text and "id 'nope' has no image" in text
    assert report.splits["train"].instances == [2]


def test_classification_labels(tmp_path: Path) -> None:
    root = tmp_path / "cls"
    write_dataset_info(root, DatasetInfo(name="c", task="classification",
                                         classes=[ClassInfo("x", 0), ClassInfo("y", 1)]))
    (root / "train" / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(root / "train" / "images" / f"t{i}.png")
    (root / "train" / "labels.csv").write_text("id,label\nt0,x\nt1,1\n")
    report = check_dataset(root)
    assert [p.message for p in report.problems] == ["image 't2' has no row"]
    assert report.splits["train"].label_counts == {"label": {"x": 1, "y": 1}}
    (root / "train" / "labels.csv").write_text("id,label\nt0,x\nt1,y\nt2,z\n")
    assert "label 'z' is not a class" in check_dataset(root).problems[0].message


def test_bad_dataset_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_seg(tmp_path / "ds", {"train": 1})
    (root / "dataset.yaml").write_text("name: toy\ntask: segmentation\nclases: []\n")
    code, _, err = run_check(root, capsys)
    assert code == 2
    assert_one_error(err, "dataset.yaml")
    assert "clases" in err
