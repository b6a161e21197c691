"""Whole-slide inference outputs: pyramidal TIFF in OpenSlide/tiffslide, QuPath GeoJSON, areas, detections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from inference_helpers import tiny_model, write_slide
from pathseg.inference.config import PredictConfig
from pathseg.inference.run import predict_slides

BLOBS = [(420, 500, 300), (900, 1300, 260)]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("inf")
    write_slide(d / "s.tiff", 1200, 1700, BLOBS, mpp=0.5)
    cfg = PredictConfig(slides=[str(d / "s.tiff")], model="-", out=str(d / "out"), workers=0, simplify=0.5,
                        objects="components", cell=400)  # 4-5 cells per band: components cross cell edges
    (res,) = predict_slides(cfg, model=tiny_model(d))
    assert res.status == "done", res.message
    return d, res


def test_tiff_opens_in_openslide_and_tiffslide(result: tuple[Path, object]) -> None:
    import openslide
    import tiffslide

    _, res = result
    path = res.outputs["classes"]  # type: ignore[attr-defined]
    levels = [(1700, 1200), (850, 600), (425, 300)]
    full = tifffile.imread(path, key=0)
    with openslide.OpenSlide(path) as osl:
        assert list(osl.level_dimensions) == levels
        assert float(osl.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-6)
        region = np.asarray(osl.read_region((800, 400), 0, (64, 48)))[..., 0]
        assert (region == full[400:448, 800:864]).all()
        lvl1 = np.asarray(osl.read_region((0, 0), 1, (850, 600)))[..., 0]
        assert (lvl1 == full[0::2, 0::2]).all()  # nearest-neighbour level, labels unchanged
    with tiffslide.TiffSlide(path) as ts:
        assert [tuple(d) for d in ts.level_dimensions] == levels
        assert float(ts.properties["tiffslide.mpp-x"]) == pytest.approx(0.5, rel=1e-6)
        assert ts.level_downsamples[2] == pytest.approx(4.0)


def _rasterise(features: list[dict], name: str, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre (level 0, QuPath frame: pixel (i, j) covers [j, j+1) x [i, i+1)) lies inside a class's
    polygons (scanline fill of each ring; holes removed)."""
    from skimage.draw import polygon

    out = np.zeros(shape, bool)
    for f in features:
        if f["properties"]["classification"]["name"] != name:
            continue
        polys = [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else \
            f["geometry"]["coordinates"]
        for rings in polys:
            inside = np.zeros(shape, bool)
            for k, ring in enumerate(rings):
                xy = np.asarray(ring) - 0.5
                rr, cc = polygon(xy[:, 1], xy[:, 0], shape)
                inside[rr, cc] = k == 0
            out |= inside
    return out


def test_geojson_rasterised_matches_class_map(result: tuple[Path, object]) -> None:
    _, res = result
    doc = json.loads(Path(res.outputs["annotations"]).read_text())  # type: ignore[attr-defined]
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    assert {f["geometry"]["type"] for f in feats} <= {"Polygon", "MultiPolygon"}  # no stray GeometryCollections
    props = feats[0]["properties"]
    assert props["objectType"] == "annotation"
    assert set(props["classification"]) == {"name", "color"} and len(props["classification"]["color"]) == 3
    classes = tifffile.imread(res.outputs["classes"], key=0)  # type: ignore[attr-defined]
    assert any(len(f["geometry"]["coordinates"]) > 1 for f in feats if f["geometry"]["type"] == "Polygon")  # holes
    for c, name in [(1, "gland"), (2, "nucleus")]:
        truth = classes == c
        assert truth.sum() > 5000
        drawn = _rasterise(feats, name, classes.shape)
        iou = (drawn & truth).sum() / (drawn | truth).sum()
        assert iou > 0.98, (name, iou)
    assert not any(f["properties"]["classification"]["name"] == "background" for f in feats)


def test_detections_one_per_component(result: tuple[Path, object]) -> None:
    from scipy import ndimage as ndi

    _, res = result
    doc = json.loads(Path(res.outputs["objects"]).read_text())  # type: ignore[attr-defined]
    classes = tifffile.imread(res.outputs["classes"], key=0)  # type: ignore[attr-defined]
    for c, name in [(1, "gland"), (2, "nucleus")]:
        n = ndi.label(classes == c)[1]
        dets = [f for f in doc["features"] if f["properties"]["classification"]["name"] == name]
        assert len(dets) == n
        assert all(f["properties"]["objectType"] == "detection" and 0.3 < f["properties"]["score"] <= 1.0
                   for f in dets)


def test_area_table_counts_class_pixels_inside_tissue(result: tuple[Path, object]) -> None:
    from pathseg.slides.reader import open_slide
    from pathseg.slides.tissue import TissueParams, detect_tissue

    d, res = result
    classes = tifffile.imread(res.outputs["classes"], key=0)  # type: ignore[attr-defined]
    with open_slide(d / "s.tiff") as s:
        mask = detect_tissue(s.overview(16.0), TissueParams(mpp=8.0))  # 8 µm/px mask = 16 px of 0.5 µm
    tissue = np.zeros(classes.shape, bool)
    for i in range(classes.shape[0]):  # explicit nearest-neighbour sampling at pixel centres
        tissue[i] = mask[min(int((i + 0.5) / 16), mask.shape[0] - 1)][
            np.minimum(((np.arange(classes.shape[1]) + 0.5) / 16).astype(int), mask.shape[1] - 1)]
    table = json.loads(Path(res.outputs["areas_json"]).read_text())  # type: ignore[attr-defined]
    assert table["tissue_area_um2"] == pytest.approx(tissue.sum() * 0.25)
    for row in table["classes"]:
        px = int((classes[tissue] == row["class_index"]).sum())
        assert row["pixels"] == px and row["area_um2"] == pytest.approx(px * 0.25)
        assert row["fraction_of_tissue"] == pytest.approx(px / tissue.sum(), abs=1e-6)
    csv_lines = Path(res.outputs["areas_csv"]).read_text().splitlines()  # type: ignore[attr-defined]
    assert csv_lines[0] == "class_index,class,pixels,area_um2,fraction_of_tissue" and len(csv_lines) == 4
    overlay = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(res.outputs["overlay"]))  # type: ignore
    assert overlay.shape[1] == 1024 and overlay.std() > 5
