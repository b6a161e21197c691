"""Tests of validation splits and label-fraction subsets (id lists)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.data.split import read_id_list, resolve_ids, split_ids, subset_ids
from pathseg.errors import ConfigError


def make_cls(root: Path, per_class: dict[str, int]) -> Path:
    """A classification set with ``per_class`` tiny images per class in ``train``."""
    names = sorted(per_class)
    write_dataset_info(root, DatasetInfo(name="c", task="classification",
                                         classes=[ClassInfo(n, i) for i, n in enumerate(names)]))
    (root / "train" / "images").mkdir(parents=True)
    rows = ["id,label"]
    for name in names:
        for i in range(per_class[name]):
            Image.new("RGB", (4, 4)).save(root / "train" / "images" / f"{name}{i:03d}.png")
            rows.append(f"{name}{i:03d},{name}")
    (root / "train" / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_subsets_are_nested_and_deterministic(tmp_path: Path, seed: int) -> None:
    root = make_cls(tmp_path / "ds", {"a": 30, "b": 50, "c": 20})
    previous: set[str] = set()
    for fraction in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
        ids = subset_ids(root, "train", fraction, seed)
        assert len(ids) == max(1, round(fraction * 100))
        assert previous <= set(ids)
        assert ids == subset_ids(root, "train", fraction, seed)
        previous = set(ids)
    assert subset_ids(root, "train", 0.1, 0) != subset_ids(root, "train", 0.1, 1)


def test_subsets_are_stratified(tmp_path: Path) -> None:
    root = make_cls(tmp_path / "ds", {"a": 60, "b": 30, "c": 10})
    ids = subset_ids(root, "train", 0.5, 3)
    counts = {k: sum(1 for i in ids if i.startswith(k)) for k in "abc"}
    assert counts == {"a": 30, "b": 15, "c": 5}


def test_fraction_out_of_range(tmp_path: Path) -> None:
    root = make_cls(tmp_path / "ds", {"a": 3})
    with pytest.raises(ConfigError):
        subset_ids(root, "train", 0.0, 0)
    with pytest.raises(ConfigError):
        subset_ids(root, "train", 1.5, 0)


def test_split_command_writes_id_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_cls(tmp_path / "ds", {"a": 40, "b": 60})
    assert main(["data", "split", str(root), "--val", "0.2", "--seed", "0", "--from", "train"]) == 0
    train, val = read_id_list(root / "splits" / "train_seed0.txt"), read_id_list(root / "splits" / "val_seed0.txt")
    assert len(train) == 80 and len(val) == 20 and not set(train) & set(val)
    assert sum(1 for i in val if i.startswith("a")) == 8
    assert (train, val) == split_ids(root, "train", 0.2, 0)
    assert sorted(p.name for p in (root / "train" / "images").iterdir()) == sorted(f"{i}.png" for i in train + val)
    # an id list resolves to its folder and can be subset further
    folder, ids = resolve_ids(root, "train_seed0")
    assert folder == "train" and ids == train
    sub = subset_ids(root, "train_seed0", 0.25, 0)
    assert len(sub) == 20 and set(sub) <= set(train)
    # small subsets of the whole split avoid the validation ids (they are the end of the same order)
    assert not set(subset_ids(root, "train", 0.1, 0)) & set(val)


def test_subset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_cls(tmp_path / "ds", {"a": 10, "b": 10})
    assert main(["data", "subset", str(root), "--fraction", "0.25", "--seed", "2"]) == 0
    path = root / "splits" / "train_frac0.25_seed2.txt"
    assert read_id_list(path) == subset_ids(root, "train", 0.25, 2)
    assert path.read_text().startswith("# split: train\n")
    assert "5 of 20 ids" in capsys.readouterr().out


def test_unknown_split_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_cls(tmp_path / "ds", {"a": 3})
    assert main(["data", "subset", str(root), "--split", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "split 'nope' not found" in err


def test_read_id_list_rejects_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# split: train\na\n\nb\n")
    assert read_id_list(path) == ["a", "b"]
    path.write_text("a\na\n")
    with pytest.raises(Exception, match="listed twice"):
        read_id_list(path)
