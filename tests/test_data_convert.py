"""Tests of ``pathseg data convert`` on tiny fake releases (official and re-packed layouts) and on real data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.check import check_dataset
from pathseg.data.convert import CONVERTERS
from pathseg.data.convert.bcss import code_lut
from pathseg.data.convert.wsss import parse_patch_label
from pathseg.data.layout import read_dataset_info, read_labels_csv
from pathseg.io import read_mask

RNG = np.random.default_rng(0)


def rgb(h: int = 24, w: int = 32) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8))


def convert(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["data", "convert", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def two_glands() -> np.ndarray:
    """Two touching glands: one connected component, two instances."""
    ann = np.zeros((24, 32), np.uint8)
    ann[4:12, 4:16], ann[4:12, 16:28] = 1, 2
    return ann


def test_registry_names() -> None:
    assert CONVERTERS.names() == ["bcss", "bcss-wsss", "crag", "glas", "kather2016", "luad-histoseg", "monuseg",
                                  "nct-crc-he"]


def test_glas_official_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rel = tmp_path / "src" / "Warwick QU Dataset (Released 2016_07_08)"
    rel.mkdir(parents=True)
    for name in ("train_1", "train_2", "testA_1", "testB_1"):
        rgb().save(rel / f"{name}.bmp")
        Image.fromarray(two_glands()).save(rel / f"{name}_anno.bmp")
    (rel / "Grade.csv").write_text("name,patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)\n"
                                   "train_1,1, malignant, poorly\ntrain_2,2, benign, healthy\n"
                                   "testA_1,3, benign, healthy\ntestB_1,4, malignant, x\n")
    out = tmp_path / "out"
    code, _, err = convert(capsys, "glas", str(tmp_path / "src"), "--out", str(out))
    assert code == 0, err
    assert "glas train: 2 images, the official release has 85" in err
    inst = tifffile.imread(out / "train" / "instances" / "train_1.tif")
    assert inst.max() == 2 and (inst == 1).sum() == 96  # instance-labelled annotation kept apart
    assert set(np.unique(read_mask(out / "train" / "masks" / "train_1.png")).tolist()) == {0, 1}
    _, rows = read_labels_csv(out / "train" / "labels.csv")
    assert rows == {"train_1": {"grade": "malignant"}, "train_2": {"grade": "benign"}}
    assert sorted(p.name for p in out.iterdir()) == ["dataset.yaml", "testA", "testB", "train"]
    assert check_dataset(out).ok


def test_glas_repacked_binary_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "glas"
    for split in ("train", "testA"):
        (src / split / "images").mkdir(parents=True)
        (src / split / "masks").mkdir(parents=True)
        rgb().save(src / split / "images" / f"{split}_1.png")
        Image.fromarray((two_glands() > 0).astype(np.uint8) * 255).save(src / split / "masks" / f"{split}_1.png")
    out = tmp_path / "out"
    code, _, err = convert(capsys, "glas", str(src), "--out", str(out))
    assert code == 0, err
    assert tifffile.imread(out / "train" / "instances" / "train_1.tif").max() == 1  # connected components
    assert "no grade.csv" in err
    assert not (out / "train" / "labels.csv").exists()
    assert read_dataset_info(out).task == "instance"


def test_convert_failure_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "glas"
    (src / "train" / "images").mkdir(parents=True)
    (src / "train" / "masks").mkdir(parents=True)
    for i in range(3):
        rgb().save(src / "train" / "images" / f"t{i}.png")
        Image.fromarray(two_glands()).save(src / "train" / "masks" / f"t{i}.png")
    bad = src / "train" / "images" / "t2.png"
    bad.write_bytes(bad.read_bytes()[:300])
    out = tmp_path / "out"
    code, _, err = convert(capsys, "glas", str(src), "--out", str(out))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "t2.png" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glas"]  # no out/, no staging leftovers


def test_convert_size_mismatch_and_missing_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "glas"
    (src / "train" / "images").mkdir(parents=True)
    (src / "train" / "masks").mkdir(parents=True)
    rgb().save(src / "train" / "images" / "a.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(src / "train" / "masks" / "a.png")
    code, _, err = convert(capsys, "glas", str(src), "--out", str(tmp_path / "o1"))
    assert code == 2 and "masks/a.png" in err and "differs from image size" in err
    rgb().save(src / "train" / "images" / "b.png")
    (src / "train" / "masks" / "a.png").unlink()
    code, _, err = convert(capsys, "glas", str(src), "--out", str(tmp_path / "o2"))
    assert code == 2 and "images/a.png" in err and "no mask" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_existing_output_and_unknown_converter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    code, _, err = convert(capsys, "glas", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2 and "exists already" in err
    code, _, err = convert(capsys, "glass", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2 and "did you mean 'glas'" in err


APERIO = """<Annotations MicronsPerPixel="0.2527"><Annotation Id="1"><Regions>
<Region Id="1"><Vertices><Vertex X="2" Y="2"/><Vertex X="10" Y="2"/><Vertex X="10" Y="8"/>
<Vertex X="2" Y="8"/></Vertices></Region>
<Region Id="2"><Vertices><Vertex X="15.5" Y="10"/><Vertex X="25" Y="10"/><Vertex X="20" Y="20"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


def test_monuseg_official_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = tmp_path / "src" / "MoNuSeg 2018 Training Data"
    (train / "Tissue Images").mkdir(parents=True)
    (train / "Annotations").mkdir()
    tifffile.imwrite(train / "Tissue Images" / "TCGA-1.tif", np.asarray(rgb()))
    (train / "Annotations" / "TCGA-1.xml").write_text(APERIO)
    test = tmp_path / "src" / "MoNuSegTestData"
    test.mkdir()
    tifffile.imwrite(test / "TCGA-2.tif", np.asarray(rgb()))
    (test / "TCGA-2.xml").write_text(APERIO)
    out = tmp_path / "out"
    code, stdout, err = convert(capsys, "monuseg", str(tmp_path / "src"), "--out", str(out))
    assert code == 0, err
    inst = tifffile.imread(out / "train" / "instances" / "TCGA-1.tif")
    assert inst.max() == 2
    assert (inst == 1).sum() == 9 * 7  # rows 2..8 x cols 2..10 inclusive
    assert np.array_equal(read_mask(out / "train" / "masks" / "TCGA-1.png"), (inst > 0).astype(np.uint8))
    assert (out / "test" / "instances" / "TCGA-2.tif").is_file()
    assert "nuclei per image: mean 2.0" in stdout and "TCGA-1: 2" in stdout
    assert "monuseg train: 1 images, the official release has 30" in err


def test_monuseg_repacked_mask_without_xml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "monuseg" / "train"
    for d in ("images", "masks", "annotations"):
        (src / d).mkdir(parents=True)
    for name in ("a", "b"):
        rgb().save(src / "images" / f"{name}.png")
        m = np.zeros((24, 32), np.uint8)
        m[1:5, 1:5] = 1
        Image.fromarray(m).save(src / "masks" / f"{name}.png")
    (src / "annotations" / "b.xml").write_text(APERIO)
    out = tmp_path / "out"
    code, stdout, err = convert(capsys, "monuseg", str(tmp_path / "monuseg"), "--out", str(out))
    assert code == 0, err
    assert read_mask(out / "train" / "masks" / "a.png").sum() == 16
    assert not (out / "train" / "instances" / "a.tif").exists()
    assert tifffile.imread(out / "train" / "instances" / "b.tif").max() == 2
    assert "2 images with semantic masks, 1 with instance maps from XML" in stdout


def test_kather_and_nct(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rel = tmp_path / "k" / "Kather_texture_2016_image_tiles_5000"
    for folder in ("01_TUMOR", "02_STROMA"):
        (rel / folder).mkdir(parents=True)
        for i in range(2):
            tifffile.imwrite(rel / folder / f"{i}{folder}_CRC.tif_Row_1_Col_{i}.tif", np.asarray(rgb(15, 15)))
    code, _, err = convert(capsys, "kather2016", str(tmp_path / "k"), "--out", str(tmp_path / "ko"))
    assert code == 0, err
    header, rows = read_labels_csv(tmp_path / "ko" / "train" / "labels.csv")
    assert header == ["id", "label"] and sorted(r["label"] for r in rows.values()) == ["stroma"] * 2 + ["tumor"] * 2
    assert "001_TUMOR_CRC_tif_Row_1_Col_0" in rows
    assert "625 per class" in err
    nct = tmp_path / "n"
    for folder, cls in (("NCT-CRC-HE-100K", "ADI"), ("CRC-VAL-HE-7K", "TUM")):
        (nct / folder / cls).mkdir(parents=True)
        tifffile.imwrite(nct / folder / cls / f"{cls}-X.tif", np.asarray(rgb(8, 8)))
    code, _, err = convert(capsys, "nct-crc-he", str(nct), "--out", str(tmp_path / "no"))
    assert code == 0, err
    assert read_labels_csv(tmp_path / "no" / "test" / "labels.csv")[1] == {"TUM-X": {"label": "TUM"}}
    assert len(read_dataset_info(tmp_path / "no").classes) == 9


def test_parse_patch_label() -> None:
    assert parse_patch_label("1031280-2300-27920-[1 0 0 1]") == ("1031280-2300-27920", [1, 0, 0, 1])
    assert parse_patch_label("TCGA-A1_MPP-0.2500+0[1101]") == ("TCGA-A1_MPP-0.2500+0", [1, 1, 0, 1])
    assert parse_patch_label("no-label") is None


@pytest.mark.parametrize("name,fname", [("luad-histoseg", "a-[1 0 0 1].png"), ("bcss-wsss", "x+0[1001].png")])
def test_wsss_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fname: str) -> None:
    src = tmp_path / "src"
    (src / "training").mkdir(parents=True)
    rgb(16, 16).save(src / "training" / fname)
    for split in ("val", "test"):
        (src / split / "img").mkdir(parents=True)
        (src / split / "mask").mkdir(parents=True)
        rgb(16, 16).save(src / split / "img" / "v.png")
        m = np.full((16, 16), 4, np.uint8)
        m[:4] = 1
        p = Image.fromarray(m, mode="L").convert("P")
        p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 153, 0, 255, 255, 255, 255] + [0] * 753)
        p.save(src / split / "mask" / "v.png")
    out = tmp_path / "out"
    code, _, err = convert(capsys, name, str(src), "--out", str(out))
    assert code == 0, err
    header, rows = read_labels_csv(out / "train" / "labels.csv")
    assert len(header) == 5 and "background" not in header
    assert next(iter(rows.values())) == dict(zip(header[1:], ["1", "0", "0", "1"]))
    assert read_labels_csv(out / "val" / "labels.csv")[1]["v"] == dict(zip(header[1:], ["0", "1", "0", "0"]))
    assert set(np.unique(read_mask(out / "test" / "masks" / "v.png")).tolist()) == {1, 4}
    assert read_dataset_info(out).exclude_index == 4
    assert "the official release has" in err


def test_bcss_groupings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lut, names = code_lut("5class")
    assert names == ["tumor", "stroma", "inflammatory", "necrosis", "other"]
    assert [int(lut[c]) for c in (0, 1, 2, 3, 4, 7, 9, 10, 19, 20, 21)] == [255, 0, 1, 2, 3, 255, 4, 2, 0, 0, 4]
    lut22, names22 = code_lut("none")
    assert len(names22) == 21 and int(lut22[0]) == 255 and int(lut22[21]) == 20 and names22[0] == "tumor"
    src = tmp_path / "BCSS"
    (src / "rgbs_colorNormalized").mkdir(parents=True)
    (src / "masks").mkdir()
    rgb(8, 8).save(src / "rgbs_colorNormalized" / "TCGA-A.png")
    codes = np.array([[0, 1, 2, 3, 4, 10, 19, 21]] * 8, np.uint8)
    Image.fromarray(codes).save(src / "masks" / "TCGA-A.png")
    code, _, err = convert(capsys, "bcss", str(src), "--out", str(tmp_path / "o"), "--grouping", "5class")
    assert code == 0, err
    assert read_mask(tmp_path / "o" / "train" / "masks" / "TCGA-A.png")[0].tolist() == [255, 0, 1, 2, 3, 2, 0, 4]


def test_bcss_resampled_to_half_resolution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2x2 blocks of one colour and one code: halving gives exactly one pixel per block, in both files
    src = tmp_path / "BCSS"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    small_rgb = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    small_codes = RNG.integers(0, 22, (5, 7), dtype=np.uint8)
    Image.fromarray(np.kron(small_rgb, np.ones((2, 2, 1), np.uint8))).save(src / "images" / "r.png")
    Image.fromarray(np.kron(small_codes, np.ones((2, 2), np.uint8))).save(src / "masks" / "r.png")
    code, _, err = convert(capsys, "bcss", str(src), "--out", str(tmp_path / "o"), "--mpp", "0.5")
    assert code == 0, err
    image = np.asarray(Image.open(tmp_path / "o" / "train" / "images" / "r.png").convert("RGB"))
    assert image.shape == (5, 7, 3) and np.abs(image.astype(int) - small_rgb).max() <= 1
    lut, _ = code_lut("none")
    assert np.array_equal(read_mask(tmp_path / "o" / "train" / "masks" / "r.png"), lut[small_codes])
    assert read_dataset_info(tmp_path / "o").mpp == 0.5
    code, _, err = convert(capsys, "glas", str(src), "--out", str(tmp_path / "g"), "--mpp", "0.5")
    assert code == 2 and "bcss converter only" in err


def test_crag_official(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folder in ("train", "valid"):
        d = tmp_path / "CRAG" / folder
        (d / "Images").mkdir(parents=True)
        (d / "Annotation").mkdir()
        rgb().save(d / "Images" / f"{folder}_1.png")
        Image.fromarray(two_glands().astype(np.uint16)).save(d / "Annotation" / f"{folder}_1.png")
    code, _, err = convert(capsys, "crag", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert tifffile.imread(tmp_path / "o" / "test" / "instances" / "valid_1.tif").max() == 2
    assert "crag train: 1 images, the official release has 173" in err


def count(path: Path) -> int:
    return len(list(path.iterdir())) if path.is_dir() else 0


def test_real_glas(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "glas"
    code, stdout, err = convert(capsys, "glas", str(shared_data / "glas"), "--out", str(out))
    assert code == 0, err  # the conversion ran check_dataset on its output; its report is in stdout
    for split, n in (("train", 85), ("testA", 60)):
        assert count(out / split / "images") == count(out / split / "masks") == n
        assert count(out / split / "instances") == n
        with (out / split / "labels.csv").open() as fh:
            grades = [r["grade"] for r in csv.DictReader(fh)]
        assert len(grades) == n and set(grades) == {"benign", "malignant"}
    assert "testB: 0 images, the official release has 20" in err
    assert "train: 85 images, 85 masks, 85 instance maps" in stdout
    assert "label grade: benign 37, malignant 48" in stdout


def test_real_monuseg(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "monuseg"
    code, stdout, err = convert(capsys, "monuseg", str(shared_data / "monuseg"), "--out", str(out))
    assert code == 0, err
    assert count(out / "train" / "images") == count(out / "train" / "masks") == 30
    assert count(out / "train" / "instances") == 13
    assert "30 images with semantic masks, 13 with instance maps from XML" in stdout
    assert "train: 30 images, 30 masks, 13 instance maps" in stdout  # from the check run by the conversion
    assert "nuclei per image: mean 380.7, min 294, max 472, total 4949" in stdout


def test_real_kather(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kather"
    code, _, err = convert(capsys, "kather2016", str(shared_data / "kather"), "--out", str(out))
    assert code == 0, err
    _, rows = read_labels_csv(out / "train" / "labels.csv")
    assert len(rows) == 24 and sorted({r["label"] for r in rows.values()}) == sorted(
        ["tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty"])
    assert "625 per class" in err


def test_grouping_only_for_bcss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = convert(capsys, "glas", str(tmp_path), "--out", str(tmp_path / "o"), "--grouping", "5class")
    assert code == 2 and "bcss converter only" in err
