"""write_pyramidal_tiff: pyramids that OpenSlide and tiffslide both open with the right levels and µm/px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathseg.slides.write import pyramid_shapes, write_pyramidal_tiff


def _image(h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), 236, np.uint8)
    img[100:400, 150:700] = (170, 70, 150)
    img[500:800, 900:1100] = (120, 40, 110)
    return img


def test_pyramid_shapes_halve_until_below_min_size() -> None:
    assert pyramid_shapes(1500, 2100, 512) == [(1500, 2100), (750, 1050), (375, 525), (188, 263)]
    assert pyramid_shapes(300, 200, 512) == [(300, 200)]
    assert pyramid_shapes(512, 10, 512) == [(512, 10), (256, 5)]


def test_openslide_and_tiffslide_agree_on_levels_mpp_and_pixels(tmp_path: Path) -> None:
    import openslide
    import tiffslide

    img = _image(1000, 1300)
    path = tmp_path / "s.tiff"
    write_pyramidal_tiff(path, img, mpp=0.25, tile_size=256)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"
    expected_dims = ((1300, 1000), (650, 500), (325, 250))
    with openslide.OpenSlide(path) as osl:
        assert osl.level_dimensions == expected_dims
        assert float(osl.properties["openslide.mpp-x"]) == pytest.approx(0.25, rel=1e-6)
        assert float(osl.properties["openslide.mpp-y"]) == pytest.approx(0.25, rel=1e-6)
        a0 = np.asarray(osl.read_region((0, 0), 0, (1300, 1000)))
        a1 = np.asarray(osl.read_region((0, 0), 1, (650, 500)))
    ts = tiffslide.TiffSlide(path)
    assert ts.level_dimensions == expected_dims
    assert float(ts.properties["tiffslide.mpp-x"]) == pytest.approx(0.25, rel=1e-6)
    b0 = np.asarray(ts.read_region((0, 0), 0, (1300, 1000)))
    b1 = np.asarray(ts.read_region((0, 0), 1, (650, 500)))
    ts.close()
    assert (a0[..., 3] == 255).all()
    np.testing.assert_array_equal(a0[..., :3], b0[..., :3])
    np.testing.assert_array_equal(a1[..., :3], b1[..., :3])
    # JPEG is lossy: flat regions are near-exact, edges within chroma-subsampling error
    err = np.abs(a0[..., :3].astype(int) - img)
    assert np.median(err) <= 2 and err.mean() < 3


def test_label_pyramid_is_lossless(tmp_path: Path) -> None:
    import tifffile
    import tiffslide

    lab = np.zeros((700, 900), np.uint8)
    lab[100:300, 200:600] = 3
    lab[400:650, 50:120] = 7
    path = tmp_path / "labels.tiff"
    write_pyramidal_tiff(path, lab, mpp=1.0, compression="deflate")
    np.testing.assert_array_equal(tifffile.imread(path), lab)
    ts = tiffslide.TiffSlide(path)
    assert ts.level_count == 2
    lvl1 = np.asarray(ts.read_region((0, 0), 1, ts.level_dimensions[1], as_array=True))
    ts.close()
    assert set(np.unique(lvl1)) <= {0, 3, 7}
    np.testing.assert_array_equal(lvl1.reshape(lvl1.shape[0], lvl1.shape[1], -1)[..., 0], lab[::2, ::2])


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_pyramidal_tiff(tmp_path / "a.tiff", np.zeros((10, 10, 3), np.float32), mpp=0.5)
    with pytest.raises(ValueError, match="mpp"):
        write_pyramidal_tiff(tmp_path / "a.tiff", np.zeros((10, 10, 3), np.uint8), mpp=0)
    with pytest.raises(ValueError, match="JPEG"):
        write_pyramidal_tiff(tmp_path / "a.tiff", np.zeros((10, 10), np.uint8), mpp=0.5, compression="jpeg")
    assert not list(tmp_path.iterdir())
