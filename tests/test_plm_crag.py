"""The CRAG converter (PLM's second transfer set) on a tiny synthetic copy of the release's layout.

Release layout (Graham et al. 2019, MILD-Net; ``CRAG_v2``): ``CRAG/{train,valid}/Images/*.png`` (RGB),
``.../Annotation/*.png`` (one integer label per gland, 0 background) and ``.../Overlay/*.png`` (ignored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.layout import list_ids, read_dataset_info
from pathseg.io import read_mask


def glands(h: int, w: int, labels: list[int]) -> np.ndarray:
    """Side-by-side touching rectangles, one label each (uint16 like the release's larger label counts)."""
    ann = np.zeros((h, w), np.uint16)
    step = w // (len(labels) + 1)
    for i, lab in enumerate(labels):
        ann[4:h - 4, 2 + i * step:2 + (i + 1) * step] = lab
    return ann


def fake_crag(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    anns = {}
    for folder, stems, labels in (("train", ["train_1", "train_2"], [1, 2, 3]), ("valid", ["test_1"], [7, 300])):
        d = root / "CRAG_v2" / "CRAG" / folder
        for sub in ("Images", "Annotation", "Overlay"):
            (d / sub).mkdir(parents=True)
        for stem in stems:
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(d / "Images" / f"{stem}.png")
            ann = glands(30, 40, labels)
            Image.fromarray(ann).save(d / "Annotation" / f"{stem}.png")
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(d / "Overlay" / f"{stem}.png")
            anns[stem] = ann
    return anns


def test_crag_release_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anns = fake_crag(tmp_path / "src")
    out = tmp_path / "crag"
    code = main(["data", "convert", "crag", str(tmp_path / "src"), "--out", str(out), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    info = read_dataset_info(out)
    assert info.task == "instance" and [c.name for c in info.classes] == ["background", "gland"]
    assert list_ids(out, "train") == ["train_1", "train_2"] and list_ids(out, "test") == ["test_1"]
    for split, stem in (("train", "train_2"), ("test", "test_1")):
        mask = read_mask(out / split / "masks" / f"{stem}.png")
        assert np.array_equal(mask, (anns[stem] > 0).astype(mask.dtype))
        inst = tifffile.imread(out / split / "instances" / f"{stem}.tif")
        # touching glands stay separate: same partition as the release's labels (ids may be renumbered)
        pairs = {(int(a), int(b)) for a, b in zip(anns[stem].ravel(), inst.ravel())}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(np.unique(anns[stem]))
    assert "crag train: 2 images, the official release has 173" in err


def test_crag_size_mismatch_is_a_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_crag(tmp_path / "src")
    bad = tmp_path / "src" / "CRAG_v2" / "CRAG" / "train" / "Annotation" / "train_1.png"
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(bad)
    code = main(["data", "convert", "crag", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "differs from image size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
