"""Slide reader: backends, µm/px resolution order, region reads at a target µm/px, errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathseg.errors import DataError, PathsegError
from pathseg.slides import open_slide, write_pyramidal_tiff
from pathseg.slides.mpp import lookup_mpp_csv, read_mpp_csv

REAL = ["cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs"]


def _gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w)) + 64], -1).astype(np.uint8)


def test_pyramid_mpp_from_tiff_tags_and_levels(tmp_path: Path) -> None:
    path = tmp_path / "g.tiff"
    write_pyramidal_tiff(path, _gradient(1200, 1600), mpp=0.25)
    for backend in ("auto", "openslide", "tiffslide"):
        with open_slide(path, backend) as s:  # type: ignore[arg-type]
            assert s.mpp == pytest.approx(0.25)
            assert s.mpp_source == "tiff resolution tags"
            assert s.level_count == 3 and s.dimensions == (1600, 1200)
            assert s.level_mpp(1) == pytest.approx(0.5)
            assert s.backend == ("openslide" if backend == "auto" else backend)


def test_read_region_mpp_matches_downsampled_reference(tmp_path: Path) -> None:
    img = _gradient(1200, 1600)
    path = tmp_path / "g.tiff"
    write_pyramidal_tiff(path, img, mpp=0.25, quality=95)
    with open_slide(path) as s:
        native = s.read_region_mpp(400, 300, 128, 0.25)  # level 0, no resampling
        np.testing.assert_allclose(native.astype(float), img[300:428, 400:528], atol=8)
        assert s.best_level(2.0) == 1 and s.best_level(3.0) == 1 and s.best_level(1.9) == 0
        half = s.read_region_mpp(400, 300, 100, 0.5)  # level 1 exactly
        ref = img[300:500, 400:600].reshape(100, 2, 100, 2, 3).mean(axis=(1, 3))
        assert np.abs(half - ref).mean() < 3
        odd = s.read_region_mpp(400, 300, (90, 60), 0.75)  # level 1 resampled by 1.5
        ref = np.asarray(Image.fromarray(img[300:480, 400:670]).resize((90, 60), Image.Resampling.BOX))
        assert odd.shape == (60, 90, 3) and np.abs(odd.astype(float) - ref).mean() < 3


def test_out_of_bounds_is_padded_with_white(tmp_path: Path) -> None:
    path = tmp_path / "g.tiff"
    write_pyramidal_tiff(path, np.zeros((600, 600, 3), np.uint8), mpp=0.5)
    with open_slide(path, "tiffslide") as s:
        r = s.read_region(0, 550, -20, 100, 100)
    assert (r[:20] == 255).all() and (r[:, 50:] == 255).all() and (r[30:, :40] < 10).all()


def test_plain_images_are_one_level_slides(tmp_path: Path) -> None:
    img = _gradient(300, 400)
    png = tmp_path / "a.png"
    Image.fromarray(img).save(png)
    with open_slide(png) as s:
        assert s.backend == "image" and s.level_count == 1 and s.mpp is None and s.mpp_source == "none"
        with pytest.raises(PathsegError, match=r"a\.png.*--slide-mpp"):
            s.read_region_mpp(0, 0, 10, 0.5)
    with open_slide(png, mpp=0.5, mpp_source="user (--slide-mpp)") as s:
        assert s.mpp == 0.5 and s.mpp_source == "user (--slide-mpp)"
        np.testing.assert_array_equal(s.read_region_mpp(10, 20, 30, 0.5), img[20:50, 10:40])
    tif = tmp_path / "b.tif"
    tifffile.imwrite(tif, img, resolution=(1e4 / 0.8, 1e4 / 0.8), resolutionunit="CENTIMETER")
    with open_slide(tif, mpp=0.3) as s:
        assert s.backend == "image" and s.mpp == pytest.approx(0.8) and s.mpp_source == "tiff resolution tags"
    dpi72 = tmp_path / "c.tif"
    tifffile.imwrite(dpi72, img, resolution=(72, 72), resolutionunit="INCH")
    with open_slide(dpi72) as s:
        assert s.mpp is None  # 352.8 µm/px is an editor default, not a scan resolution: never used


def test_corrupt_and_non_slide_files_raise_data_error_naming_them(tmp_path: Path) -> None:
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    with pytest.raises(DataError, match=r"notes\.svs"):
        open_slide(text)
    good = tmp_path / "g.tiff"
    write_pyramidal_tiff(good, _gradient(600, 800), mpp=0.5)
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"broken\.tiff"), open_slide(broken) as s:
        s.read_region(0, 0, 0, 800, 600)
    with pytest.raises(DataError, match=r"missing\.svs"):
        open_slide(tmp_path / "missing.svs")


def test_mpp_csv(tmp_path: Path) -> None:
    csv = tmp_path / "mpp.csv"
    csv.write_text("slide,mpp\na.svs,0.25\nb,0.5\n")
    table = read_mpp_csv(csv)
    assert lookup_mpp_csv(table, "/x/a.svs") == 0.25 and lookup_mpp_csv(table, "/y/b.ndpi") == 0.5
    assert lookup_mpp_csv(table, "c.svs") is None
    csv.write_text("slide,mpp\na.svs,abc\n")
    with pytest.raises(DataError, match="line 2"):
        read_mpp_csv(csv)


@pytest.mark.parametrize("name", REAL)
def test_openslide_and_tiffslide_give_identical_pixels(shared_data: Path, name: str) -> None:
    path = shared_data / "slides" / name
    a, b = open_slide(path, "openslide"), open_slide(path, "tiffslide")
    w, h = a.dimensions
    assert a.level_dimensions == b.level_dimensions
    for x, y, rw, rh in [(0, 0, 700, 500), (1001, 777, 300, 257), (-40, -10, 128, 128), (w - 100, h - 60, 256, 256)]:
        np.testing.assert_array_equal(a.read_region(0, x, y, rw, rh), b.read_region(0, x, y, rw, rh))
    for level in range(1, a.level_count):  # whole coarser levels (level-aligned reads)
        lw, lh = a.level_dimensions[level]
        np.testing.assert_array_equal(a.read_region(level, 0, 0, lw, lh), b.read_region(level, 0, 0, lw, lh))
    np.testing.assert_array_equal(a.thumbnail(300), b.thumbnail(300))
    a.close()
    b.close()


def test_real_slide_mpp(shared_data: Path) -> None:
    with open_slide(shared_data / "slides" / "cmu-1-small-region.svs", mpp=0.3) as s:
        assert s.mpp == pytest.approx(0.499) and s.mpp_source == "metadata (openslide.mpp-x)"
        assert s.vendor == "aperio" and s.objective_power == 20
    with open_slide(shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs") as s:
        assert s.mpp is None and s.mpp_source == "none"


def test_slides_info_cli(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pathseg.cli.main import main

    assert main(["slides", "info", str(shared_data / "slides" / "cmu-1-small-region.svs")]) == 0
    out = capsys.readouterr().out
    assert "0.499 µm/px" in out and "metadata (openslide.mpp-x)" in out and "aperio" in out and "20x" in out
    assert main(["slides", "info", str(shared_data / "slides" / REAL[1]), "--mpp", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "0.25 µm/px" in out and "user (--slide-mpp)" in out and "level 1: 2221 x 1783 px" in out
