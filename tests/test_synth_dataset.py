"""`pathseg synth`: canonical layout per kind, labels consistent with masks, byte-identical reruns, errors."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pathseg.cli.main import main
from pathseg.data.layout import image_path, instance_path, list_ids, list_splits, mask_path, read_dataset_info
from pathseg.io import read_mask, read_rgb
from pathseg.synth.classes import BACKGROUND, TISSUE_CLASSES
from pathseg.synth.config import SynthConfig
from pathseg.synth.dataset import sample_for


def _synth(out: Path, kind: str, n: int = 6, size: int = 64, *extra: str) -> int:
    return main(["synth", "--kind", kind, "--out", str(out), "--n", str(n), "--size", str(size), "--seed", "1",
                 *extra])


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", ["segmentation", "instance", "patch_labels", "classification", "unlabeled"])
def test_kind_writes_valid_canonical_layout(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / kind
    assert _synth(out, kind) == 0
    assert "ok: wrote" in capsys.readouterr().out
    info = read_dataset_info(out)
    assert info.task == kind and info.mpp == 0.5
    splits = list_splits(out)
    assert splits == (["train"] if kind == "unlabeled" else ["test", "train", "val"])
    assert sum(len(list_ids(out, s)) for s in splits) == 6
    try:
        from pathseg.data.check import check_dataset
    except ImportError:
        check_dataset = None  # type: ignore[assignment]
    if check_dataset is not None:
        report = check_dataset(out)
        assert report.ok, [str(p) for p in report.problems]
    split = splits[-1] if kind != "unlabeled" else "train"
    sid = list_ids(out, split)[0]
    assert read_rgb(image_path(out, split, sid)).shape == (64, 64, 3)
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 1 and len(meta["tissue_classes"]) == len(TISSUE_CLASSES)


def test_patch_labels_follow_mask_coverage(tmp_path: Path) -> None:
    out = tmp_path / "pl"
    assert _synth(out, "patch_labels", 8, 64, "--splits", "train:1") == 0
    rows = list(csv.DictReader((out / "train" / "labels.csv").open()))
    assert [c for c in rows[0] if c != "id"] == [c.name for c in TISSUE_CLASSES if c.index != BACKGROUND]
    assert read_dataset_info(out).exclude_index == BACKGROUND
    for row in rows:
        mask = read_mask(mask_path(out, "train", row["id"]))
        for c in TISSUE_CLASSES[1:]:
            share = float((mask == c.index).mean())
            assert row[c.name] == ("1" if share >= 0.02 else "0")


def test_classification_label_is_dominant_class(tmp_path: Path) -> None:
    out = tmp_path / "cls"
    assert _synth(out, "classification", 10, 64, "--splits", "train:1") == 0
    rows = list(csv.DictReader((out / "train" / "labels.csv").open()))
    names = [c.name for c in TISSUE_CLASSES]
    assert len({r["label"] for r in rows}) >= 4  # balanced over the classes
    for r in rows:
        i = int(r["id"].split("_")[1])
        s = sample_for(SynthConfig(out=out, kind="classification", n=10, size=64, seed=1), i)
        frac = np.bincount(s.mask.ravel(), minlength=5) / s.mask.size
        assert r["label"] == names[int(np.argmax(frac))] and frac.max() > 0.4


def test_instance_files_consistent(tmp_path: Path) -> None:
    out = tmp_path / "inst"
    assert _synth(out, "instance", 4, 96, "--splits", "train:1") == 0
    assert [c.name for c in read_dataset_info(out).classes] == ["background", "nucleus"]
    meta = json.loads((out / "synth.json").read_text())
    for sid in list_ids(out, "train"):
        inst = read_mask(instance_path(out, "train", sid))
        mask = read_mask(mask_path(out, "train", sid))
        assert np.array_equal(mask == 1, inst > 0)
        table = json.loads((out / "train" / "instance_classes" / f"{sid}.json").read_text())
        ids = sorted(int(k) for k in table)
        assert ids == sorted(set(np.unique(inst).tolist()) - {0})
        assert set(table.values()) == {1}
        assert sorted(int(k) for k in meta["nucleus_tissue_class"][sid]) == ids


def test_same_seed_same_bytes_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert _synth(a, "segmentation") == 0 and _synth(b, "segmentation") == 0
    assert _digest(a) == _digest(b)
    assert _synth(a, "segmentation") == 2  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err
    assert main(["synth", "--out", str(a), "--n", "4", "--size", "64", "--seed", "2", "--overwrite"]) == 0
    assert _digest(a) != _digest(b)


def test_bad_arguments_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--out", str(tmp_path / "x"), "--n", "0"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--splits", "train:x"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--kind", "segmentaton"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error:") for line in err)
    assert not (tmp_path / "x").exists()
