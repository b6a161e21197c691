"""`pathseg synth --kind slide`: pyramidal TIFF readable by OpenSlide and tiffslide, mpp, label mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pathseg.cli.main import main
from pathseg.synth.classes import BACKGROUND

MPP = 0.25


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("slides") / "s"
    code = main(["synth", "--kind", "slide", "--out", str(out), "--n", "1", "--size", "1280", "--seed", "3",
                 "--mpp", str(MPP), "--mask-downsample", "8"])
    assert code == 0
    return out


def test_sidecar_and_mask(slide_dir: Path) -> None:
    meta = json.loads((slide_dir / "slides.json").read_text())
    assert meta["mpp"] == MPP and meta["mask_downsample"] == 8
    rec = meta["slides"][0]
    assert (rec["width"], rec["height"]) == (1280, 960)
    assert 0.15 < rec["tissue_fraction"] < 0.6  # large background areas and tissue
    from pathseg.io import read_mask

    mask = read_mask(slide_dir / rec["mask"])
    assert mask.shape == (120, 160)
    assert BACKGROUND in mask and len(np.unique(mask)) >= 3  # glass plus at least two tissue classes
    assert abs(float((mask != BACKGROUND).mean()) - rec["tissue_fraction"]) < 0.05


def test_openslide_and_tiffslide_agree(slide_dir: Path) -> None:
    openslide = pytest.importorskip("openslide")
    tiffslide = pytest.importorskip("tiffslide")
    path = str(slide_dir / "slides" / "slide_000.tiff")
    a, b = openslide.OpenSlide(path), tiffslide.TiffSlide(path)
    try:
        assert a.dimensions == b.dimensions == (1280, 960)
        assert a.level_count == b.level_count >= 3
        assert a.level_dimensions[-1][0] < 1024
        for lvl in range(1, a.level_count):
            assert a.level_downsamples[lvl] == pytest.approx(2**lvl, rel=0.01)
        assert float(a.properties["openslide.mpp-x"]) == pytest.approx(MPP, rel=1e-3)
        assert float(b.properties["tiffslide.mpp-x"]) == pytest.approx(MPP, rel=1e-3)
        ra = np.asarray(a.read_region((300, 200), 0, (256, 256)).convert("RGB"))
        rb = np.asarray(b.read_region((300, 200), 0, (256, 256)).convert("RGB"))
        assert np.abs(ra.astype(int) - rb.astype(int)).max() <= 2
    finally:
        a.close()
        b.close()


def test_pixels_match_generator_and_mask(slide_dir: Path) -> None:
    tiffslide = pytest.importorskip("tiffslide")
    from pathseg.synth.slide import generate_slide

    rgb, mask = generate_slide(3, 0, 1280, MPP)
    with tiffslide.TiffSlide(str(slide_dir / "slides" / "slide_000.tiff")) as s:
        level0 = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB")).astype(float)
    assert np.abs(level0 - rgb).mean() < 4  # JPEG quality 90
    assert level0[mask == BACKGROUND].mean() > 220  # glass is bright
    assert level0[mask != BACKGROUND].mean() < level0[mask == BACKGROUND].mean() - 30
