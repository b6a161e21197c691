"""The fast pre-training check ``validate_for_training`` (same words as ``data check``, cached) and the warnings of
``data check`` for classes without pixels and entirely ignored splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathseg.cli.main import main
from pathseg.data import validate as validate_mod
from pathseg.data.check import check_dataset, validate_for_training
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.data.split import write_id_list
from pathseg.errors import DataError


def make_set(root: Path, masks: dict[str, np.ndarray], split: str = "train",
             classes: tuple[str, ...] = ("background", "gland")) -> Path:
    write_dataset_info(root, DatasetInfo(name="t", task="segmentation",
                                         classes=[ClassInfo(n, i) for i, n in enumerate(classes)]))
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for sid, m in masks.items():
        Image.fromarray(np.full((*m.shape, 3), 120, np.uint8)).save(root / split / "images" / f"{sid}.png")
        Image.fromarray(m).save(root / split / "masks" / f"{sid}.png")
    return root


def _half(h: int = 16, w: int = 20) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, w // 2:] = 1
    return m


def test_bad_mask_value_same_message_as_data_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _half()
    bad[3, 4] = 7
    root = make_set(tmp_path / "d", {"a": _half(), "b": bad})
    with pytest.raises(DataError) as exc:
        validate_for_training(root, ["train"])
    report = check_dataset(root)
    assert [(p.path, p.message) for p in report.problems] == [(exc.value.path, exc.value.message)]
    assert exc.value.message == "mask values [7] are neither class indices [0, 1] nor ignore_index 255"
    assert exc.value.path == str(root / "train" / "masks" / "b.png")
    # the model's class count is what matters: 8 classes accept the value 7
    assert validate_for_training(root, ["train"], num_classes=8) == []


def test_size_mismatch_truncated_image_missing_mask_empty_split(tmp_path: Path) -> None:
    root = make_set(tmp_path / "d", {"a": _half(), "b": _half()})
    Image.fromarray(_half(16, 21)).save(root / "train" / "masks" / "b.png")
    with pytest.raises(DataError, match=r"mask size 21x16 differs from image size 20x16") as exc:
        validate_for_training(root, ["train"])
    assert exc.value.path and exc.value.path.endswith("b.png")
    root2 = make_set(tmp_path / "e", {"a": _half()})
    png = root2 / "train" / "images" / "a.png"
    png.write_bytes(png.read_bytes()[:-30])
    with pytest.raises(DataError, match="cannot decode image") as exc:
        validate_for_training(root2, ["train"])
    assert exc.value.path == str(png)
    root3 = make_set(tmp_path / "f", {"a": _half()})
    (root3 / "train" / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match=r"image has no mask \(expected masks/a.png\)"):
        validate_for_training(root3, ["train"])
    (root3 / "test" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="split 'test' has no images"):
        validate_for_training(root3, ["test"])
    with pytest.raises(DataError, match="split 'val' not found"):
        validate_for_training(root3, ["val"])


def test_id_list_checks_only_its_ids(tmp_path: Path) -> None:
    bad = _half()
    bad[0, 0] = 9
    root = make_set(tmp_path / "d", {"a": _half(), "b": bad})
    write_id_list(root / "splits" / "only_a.txt", ["a"], "train")
    assert validate_for_training(root, ["only_a", ""]) == []
    with pytest.raises(DataError, match="mask values"):
        validate_for_training(root, ["only_a", "train"])


def test_second_run_reads_no_mask_and_a_changed_file_is_rechecked(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_set(tmp_path / "d", {f"s{i}": _half() for i in range(5)})
    calls: list[str] = []
    real = validate_mod._mask_result
    monkeypatch.setattr(validate_mod, "_mask_result", lambda p: calls.append(p.name) or real(p))
    validate_for_training(root, ["train"])
    assert len(calls) == 5
    cache = json.loads((root / validate_mod.CACHE_NAME).read_text())
    assert len(cache["files"]) == 10  # 5 images + 5 masks
    calls.clear()
    validate_for_training(root, ["train"])
    assert calls == []
    bad = _half()
    bad[1, 1] = 200
    mask = root / "train" / "masks" / "s3.png"
    Image.fromarray(bad).save(mask)
    st = mask.stat()
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"mask values \[200\]"):
        validate_for_training(root, ["train"])
    assert calls == ["s3.png"]


def test_read_only_data_set_still_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_set(tmp_path / "d", {"a": _half()})

    def refuse(path: object, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("pathseg.io.atomic_write_text", refuse)
    assert validate_for_training(root, ["train"]) == []
    assert not (root / validate_mod.CACHE_NAME).exists()


def test_zero_255_masks_warn_in_check_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = np.zeros((16, 20), np.uint8)
    m[:, 8:] = 255  # gland drawn as 255 = ignore_index
    root = make_set(tmp_path / "d", {"a": m})
    assert main(["data", "check", str(root), "--no-progress"]) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1
    assert "split 'train': class 'gland' has no labelled pixel (60.0% of the pixels are ignore_index 255)" in err
    assert "--mapping 0:background,255:gland" in warnings[0]
    got = validate_for_training(root, ["train"])
    assert len(got) == 1 and got[0] in warnings[0]
    root2 = make_set(tmp_path / "e", {"a": np.full((16, 20), 255, np.uint8)})
    assert validate_for_training(root2, ["train"])[0].startswith("split 'train': every mask pixel is ignore_index")
    assert validate_for_training(make_set(tmp_path / "f", {"a": _half()}), ["train"]) == []
