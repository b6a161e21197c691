"""Whole-slide inference: the stitched map equals evaluate's sliding window; tissue-only runs; resampled grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from inference_helpers import tiny_model, write_slide
from pathseg.data.datasets import normalise
from pathseg.inference.blend import CellBlender
from pathseg.inference.config import PredictConfig
from pathseg.inference.run import predict_slides
from pathseg.slides.reader import open_slide
from pathseg.tasks.sliding import blend_weights, sliding_window_predict

BLOBS = [(200, 260, 190), (420, 520, 150)]


def _reference(path: Path, model, level: int = 0) -> np.ndarray:
    """``evaluate``'s sliding-window probabilities ``[K, H, W]`` of the whole slide (level ``level``)."""
    with open_slide(path) as s:
        w, h = s.level_dimensions[level]
        img = s.read_region(level, 0, 0, w, h)
    x = normalise(img, model.spec.mean, model.spec.std)
    probs = sliding_window_predict(model.module, x, window=model.spec.window, overlap=model.spec.overlap,
                                   num_classes=3, batch_size=4, blend="gaussian")
    return probs[0].numpy()


def _margin(p: np.ndarray) -> np.ndarray:
    s = np.sort(p, axis=0)
    return s[-1] - s[-2]


def test_stitched_map_equals_sliding_window_predict(tmp_path: Path) -> None:
    slide = tmp_path / "s.tiff"
    write_slide(slide, 600, 700, BLOBS)
    model = tiny_model(tmp_path)
    cfg = PredictConfig(slides=[str(slide)], model="-", out=str(tmp_path / "out"), min_tissue=-1, batch=5,
                        workers=0, probabilities=True, cell=256)  # 3 cells per band
    (res,) = predict_slides(cfg, model=model)
    assert res.status == "done", res.message
    ref = _reference(slide, model)
    classes = tifffile.imread(res.outputs["classes"], key=0)
    assert classes.shape == (600, 700)
    want = ref.argmax(0)
    sure = _margin(ref) > 1e-4
    assert (classes[sure] == want[sure]).all()
    assert len(np.unique(want)) == 3  # the test means something: every class appears
    for c, name in enumerate(["background", "gland", "nucleus"]):
        got = tifffile.imread(res.outputs[f"probs_{name}"], key=0).astype(np.int32)
        assert np.abs(got - np.rint(ref[c] * 255)).max() <= 1


def test_tissue_only_windows_and_background_elsewhere(tmp_path: Path) -> None:
    slide = tmp_path / "s.tiff"
    write_slide(slide, 900, 1100, [(250, 300, 160)])
    model = tiny_model(tmp_path)
    cfg = PredictConfig(slides=[str(slide)], model="-", out=str(tmp_path / "out"), workers=0)
    (res,) = predict_slides(cfg, model=model)
    n_windows = int(res.message.split()[0])
    assert 0 < n_windows < 10 * 12  # fewer than the full 10 x 12 grid
    classes = tifffile.imread(res.outputs["classes"], key=0)
    assert (classes[600:, 700:] == 0).all()  # no window there
    ref = _reference(slide, model).argmax(0)
    inner = np.s_[150:350, 200:400]  # well inside the tissue: every window covering it ran
    assert (classes[inner] == ref[inner]).mean() > 0.999


def _tissue_at_pixels(slide: Path, shape: tuple[int, int]) -> np.ndarray:
    """The 8 µm/px tissue mask (16 px of 0.5 µm) sampled at the centre of every level-0 pixel."""
    from pathseg.slides.tissue import TissueParams, detect_tissue

    with open_slide(slide) as s:
        mask = detect_tissue(s.overview(16.0), TissueParams(mpp=8.0))
    rows = np.minimum(((np.arange(shape[0]) + 0.5) / 16).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) / 16).astype(int), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def test_pixels_outside_tissue_are_background_unless_kept(tmp_path: Path) -> None:
    slide = tmp_path / "s.tiff"
    write_slide(slide, 900, 1100, [(250, 300, 160)])
    model = tiny_model(tmp_path)
    maps = {}
    for mode in ("background", "keep"):
        cfg = PredictConfig(slides=[str(slide)], model="-", out=str(tmp_path / mode), workers=0,
                            outside_tissue=mode)  # type: ignore[arg-type]
        (res,) = predict_slides(cfg, model=model)
        maps[mode] = tifffile.imread(res.outputs["classes"], key=0)
    tissue = _tissue_at_pixels(slide, maps["keep"].shape)
    assert (maps["keep"][~tissue] > 0).sum() > 1000  # the model does label glass inside the tissue windows
    assert (maps["background"][~tissue] == 0).all()
    assert np.array_equal(maps["background"][tissue], maps["keep"][tissue])


def test_model_resolution_differs_from_slide(tmp_path: Path) -> None:
    """Slide at 0.25 µm/px, model at 0.5: windows come from level 1 and the map is upsampled onto level 0."""
    slide = tmp_path / "s.tiff"
    write_slide(slide, 1024, 1280, [(500, 600, 420)], mpp=0.25)
    model = tiny_model(tmp_path, mpp=0.5)
    cfg = PredictConfig(slides=[str(slide)], model="-", out=str(tmp_path / "out"), min_tissue=-1, workers=1)
    (res,) = predict_slides(cfg, model=model)
    assert res.status == "done", res.message
    classes = tifffile.imread(res.outputs["classes"], key=0)
    assert classes.shape == (1024, 1280)
    ref = _reference(slide, model, level=1)
    want = np.repeat(np.repeat(ref.argmax(0), 2, axis=0), 2, axis=1)
    sure = np.repeat(np.repeat(_margin(ref) > 1e-4, 2, axis=0), 2, axis=1)
    assert (classes[sure] == want[sure]).all()


@pytest.mark.parametrize("spill", [False, True])
def test_cell_blender_matches_explicit_sums(tmp_path: Path, spill: bool) -> None:
    """Cells against a hand-written whole-array accumulation, with windows skipped, rows left empty and windows
    crossing cell edges; pending rows in memory or spilled to files."""
    rng = np.random.default_rng(0)
    window, height, width = 8, 40, 21
    weight = blend_weights(window).numpy()
    ys = [0, 6, 12, 18, 24, 30, 32]
    edges = [0, 6, 12, 21]
    wins = [(0, 0, 0), (0, 0, 5), (0, 0, 13), (1, 6, 2), (1, 6, 10), (4, 24, 5), (6, 32, 0), (6, 32, 13)]
    probs = [rng.random((2, window, window)).astype(np.float32) for _ in wins]  # rows 14..23 get nothing
    acc = np.zeros((2, height, width + window))
    norm = np.zeros((height, width + window))
    for (_, y, x), p in zip(wins, probs):
        for i in range(window):
            for j in range(window):
                if y + i < height:
                    acc[:, y + i, x + j] += p[:, i, j] * weight[i, j]
                    norm[y + i, x + j] += weight[i, j]
    cells: list = []
    blender = CellBlender(width, height, 2, weight, ys, edges, cells.append, spill=tmp_path if spill else None)
    for (r, y, x), p in zip(wins, probs):
        blender.add(r, y, x, p * weight)
    blender.finish()
    assert [(c[0], c[1], c[2]) for c in cells] == [(r, j, edges[j]) for r in range(len(ys)) for j in range(3)]
    classes = np.zeros((height, width), np.uint8)
    quant = np.zeros((2, height, width), np.uint8)
    for r, _, x0, cls, q in cells:
        y0 = ys[r]
        classes[y0 : y0 + cls.shape[0], x0 : x0 + cls.shape[1]] = cls
        quant[:, y0 : y0 + cls.shape[0], x0 : x0 + cls.shape[1]] = q
    ratio = np.divide(acc, norm, out=np.zeros_like(acc), where=norm > 0)[:, :, :width]
    assert np.abs(quant.astype(int) - np.rint(ratio * 255)).max() <= 1
    want = np.where(norm[:, :width] > 0, ratio.argmax(0), 0)
    assert (classes == want).all()
    assert (classes[14:24] == 0).all() and (quant[:, 14:24] == 0).all()
    assert not list(tmp_path.glob("pending_*"))  # every pending part was used
    with pytest.raises(ValueError, match="out of order"):
        blender.add(0, 0, 0, probs[0] * weight)


def test_batches_and_workers_do_not_change_the_result(tmp_path: Path) -> None:
    slide = tmp_path / "s.tiff"
    write_slide(slide, 520, 610, BLOBS)
    model = tiny_model(tmp_path)
    outs = []
    for i, (batch, workers) in enumerate([(3, 0), (7, 2)]):
        cfg = PredictConfig(slides=[str(slide)], model="-", out=str(tmp_path / f"o{i}"), batch=batch,
                            workers=workers, min_tissue=-1)
        (res,) = predict_slides(cfg, model=model)
        outs.append(tifffile.imread(res.outputs["classes"], key=0))
    assert (outs[0] == outs[1]).mean() > 0.9999
    torch.set_num_threads(torch.get_num_threads())
