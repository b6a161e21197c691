"""UNIT pseudo nucleus masks: §1.3 statistics, render modes, the on-disk contract and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from pathseg.synth.nuclei_masks import MaskParams, generate_masks, inner_contour, render, renumber
from pathseg.synth.nuclei_masks_io import read_mask_tile, scale_tag


@pytest.fixture(scope="module")
def canvases() -> dict[str, list]:
    return {lay: [generate_masks((768, 768), MaskParams(layout=lay), np.random.default_rng(s)) for s in (0, 1, 2)]
            for lay in ("random", "structured")}


def _touching_ids(inst: np.ndarray) -> set[int]:
    found: set[int] = set()
    for a, b in ((inst[:, :-1], inst[:, 1:]), (inst[:-1], inst[1:])):  # right and lower neighbours
        pair = (a > 0) & (b > 0) & (a != b)
        found |= set(a[pair].tolist()) | set(b[pair].tolist())
    return found


def _clark_evans(points: np.ndarray, area: float) -> float:
    d, _ = cKDTree(points).query(points, k=2)
    return float(d[:, 1].mean() / (0.5 / np.sqrt(len(points) / area)))


def test_instances_are_connected_and_typed(canvases: dict[str, list]) -> None:
    for masks in canvases.values():
        for m in masks:
            ids = np.unique(m.instances)[1:]
            assert list(ids) == list(range(1, len(m.types)))  # every placed nucleus kept its pixels
            _, n_parts = zip(*(ndimage.label(m.instances == i) for i in ids[:60]))
            assert set(n_parts) == {1}  # 4-connected, no overlap by construction of a label map
            assert set(m.types[1:].tolist()) <= {1, 2} and m.types[0] == 0


def test_counts_and_areas_per_tile(canvases: dict[str, list]) -> None:
    for lay, masks in canvases.items():
        counts = [len(np.unique(m.instances[y:y + 256, x:x + 256])) - 1 for m in masks for y in (0, 256, 512)
                  for x in (0, 256, 512)]
        assert 10 <= np.mean(counts) <= 40, (lay, counts)
        areas = np.concatenate([np.bincount(m.instances.ravel())[1:] for m in masks]) * 0.25**2  # µm²
        assert areas.min() >= MaskParams().min_area_um2
        # semi-axes 1.4-5 µm: pi*a*b between ~3 and ~60 µm², median in between
        assert 8 <= np.median(areas) <= 30 and np.percentile(areas, 99) < 80


def test_structured_is_clustered_and_touching(canvases: dict[str, list]) -> None:
    stats = {}
    for lay, masks in canvases.items():
        ce, touch = [], []
        for m in masks:
            epi = [i for i in range(1, len(m.types)) if m.types[i] == 1]
            cen = np.array(ndimage.center_of_mass(np.ones_like(m.instances), m.instances, epi))
            ce.append(_clark_evans(cen, m.instances.size))
            touching = _touching_ids(m.instances)
            touch.append(np.mean([i in touching for i in epi]))
        stats[lay] = (np.mean(ce), np.mean(touch))
    assert stats["random"][0] > 0.95  # hard-core Poisson: about 1
    assert stats["structured"][0] < 0.8 * stats["random"][0]  # crypt nuclei line up: clustered
    assert stats["structured"][1] > stats["random"][1] + 0.15  # crypt nuclei touch their neighbours


def test_sizes_follow_mpp() -> None:
    med = {}
    for mpp, side in ((0.25, 768), (0.5, 384)):  # the same 192 µm square
        params = MaskParams(mpp=mpp, layout="random")
        ms = [generate_masks((side, side), params, np.random.default_rng(s)) for s in (0, 1)]
        med[mpp] = np.median(np.concatenate([np.bincount(m.instances.ravel())[1:] * mpp**2 for m in ms]))
    assert abs(med[0.25] - med[0.5]) / med[0.25] < 0.2


def test_render_modes_hand_case() -> None:
    inst = np.zeros((5, 7), np.int32)
    inst[1:4, 1:4] = 1
    inst[1:4, 4:6] = 2
    types = np.array([0, 1, 2], np.int8)
    tex = np.full(inst.shape, 0.5, np.float32)
    multi = render(inst, types, tex, "multichannel")
    contour = np.zeros_like(inst, bool)
    for y in range(5):
        for x in range(7):
            if inst[y, x]:
                nb = [inst[yy, xx] if 0 <= yy < 5 and 0 <= xx < 7 else inst[y, x]
                      for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))]
                contour[y, x] = any(v != inst[y, x] for v in nb)
    assert (inner_contour(inst) == contour).all() and not contour[2, 2] and contour[2, 3] and contour[2, 4]
    assert (multi[..., 0] == contour * 255).all()
    assert (multi[..., 1] == (inst == 1) * 128).all() and (multi[..., 2] == (inst == 2) * 128).all()
    two = render(inst, types, tex, "2channel")
    assert (two[..., 0] == 0).all() and (two[..., 1:] == multi[..., 1:]).all()
    grey = render(inst, types, tex, "grey")
    assert (grey[..., 0] == (inst > 0) * 128).all() and (grey[..., 0] == grey[..., 2]).all()
    assert (render(inst, types, None, "binary") == ((inst > 0) * 255)[..., None]).all()


def test_renumber() -> None:
    a = np.array([[0, 7, 7], [3, 0, 9]])
    assert renumber(a).tolist() == [[0, 1, 1], [2, 0, 3]]
    assert renumber(np.array([[5, 2]])).tolist() == [[1, 2]]


def test_cli_writes_the_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pathseg.cli.main import main

    out = tmp_path / "masks"
    rc = main(["synth", "--kind", "nuclei-masks", "--out", str(out), "--n", "2", "--size", "64", "--grid", "3",
               "--mpp", "0.25", "--layout", "random", "--seed", "3"])
    assert rc in (0, None)
    assert scale_tag(0.25, 64) == "40x_64"
    tiles = sorted((out / "40x_64").glob("*.png"))
    assert len(tiles) == 18
    canvas = np.load(out / "cell_mask" / "mask00001.npy")
    types = np.load(out / "cell_type" / "mask00001.npy")
    image, inst = read_mask_tile(out / "40x_64" / "mask00001_2_1.png")
    crop = canvas[64:128, 128:192]
    assert (inst > 0).sum() == (crop > 0).sum() and inst.max() == len(np.unique(crop)) - 1
    fg = crop > 0
    assert ((image[..., 1] > 0) | (image[..., 2] > 0))[fg].all() and not image[~fg].any()
    assert ((image[..., 1] > 0) == (types[crop] == 1)).all()
