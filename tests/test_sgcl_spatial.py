"""SGCL spatial positives: neighbour counts on synthetic grids, grid lookup == distance version."""

from __future__ import annotations

import math

import pytest
import torch

from pathseg.ssl.sgcl import SpatialGrid, spatial_neighbors
from pathseg.ssl.sgcl.spatial import dense_neighbors


def _grid(rows: int, cols: int, slide: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rr, cc = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    xy = torch.stack([rr.reshape(-1), cc.reshape(-1)], 1).float()
    return torch.full((rows * cols,), slide), xy


def _loop_count(q: tuple[int, int], slide: int, bank_slide: list[int], bank_xy: list[tuple[int, int]],
                delta: float) -> int:
    n = 0
    for s, (r, c) in zip(bank_slide, bank_xy):
        d = math.hypot(r - q[0], c - q[1])
        n += int(s == slide and 0 < d < delta)
    return n


@pytest.mark.parametrize("method", ["dense", "grid"])
@pytest.mark.parametrize(("delta", "expected"), [(1.1, 4), (1.5, 8), (2.0, 8), (3.0, 24)])
def test_interior_tile_counts(method: str, delta: float, expected: int) -> None:
    slide, xy = _grid(11, 11)
    q = torch.tensor([[5.0, 5.0]])
    mask = spatial_neighbors(torch.tensor([0]), q, slide, xy, delta, method=method)  # type: ignore[arg-type]
    assert int(mask.sum()) == expected
    if delta == 3.0:  # (±2, ±2) at 2.83 kept, (0, ±3) at 3 dropped
        kept = {tuple(int(v) for v in xy[j]) for j in torch.nonzero(mask[0]).flatten().tolist()}
        assert (7, 7) in kept and (3, 3) in kept and (5, 8) not in kept and (5, 5) not in kept


@pytest.mark.parametrize("method", ["dense", "grid"])
def test_corners_missing_tiles_and_other_slides(method: str) -> None:
    s0, xy0 = _grid(6, 6, slide=0)
    s1, xy1 = _grid(6, 6, slide=1)  # same coordinates on another slide: never neighbours
    keep = torch.ones(36, dtype=torch.bool)
    keep[[7, 8, 13]] = False  # tiles (1,1), (1,2), (2,1) missing from the tissue mask on slide 0
    bank_slide, bank_xy = torch.cat([s0[keep], s1]), torch.cat([xy0[keep], xy1])
    q_slide, q = torch.tensor([0, 0, 1, 0]), torch.tensor([[0.0, 0], [5, 5], [0, 0], [2, 2]])
    mask = spatial_neighbors(q_slide, q, bank_slide, bank_xy, 3.0, method=method)  # type: ignore[arg-type]
    assert mask.sum(1).tolist() == [8 - 3, 8, 8, 24 - 3]  # corner (0,0) without 3 missing; (2,2): 5x5 minus 3
    assert not mask[[0, 1, 3]][:, 33:].any() and not mask[2, :33].any()
    bs, bx = bank_slide.tolist(), [tuple(int(v) for v in p) for p in bank_xy.tolist()]
    for i in range(4):
        qi = (int(q[i, 0]), int(q[i, 1]))
        assert int(mask[i].sum()) == _loop_count(qi, int(q_slide[i]), bs, bx, 3.0)


def test_duplicates_at_the_same_position() -> None:
    bank_slide = torch.tensor([0, 0, 0, 0])
    bank_xy = torch.tensor([[0.0, 0], [0, 0], [0, 1], [0, 1]])
    for method in ("dense", "grid"):
        m = spatial_neighbors(torch.tensor([0]), torch.tensor([[0.0, 0]]), bank_slide, bank_xy, 1.5,
                              method=method)  # type: ignore[arg-type]
        assert m.tolist() == [[False, False, True, True]]  # distance 0 excluded, both tiles at (0, 1) kept


@pytest.mark.parametrize("delta", [1.1, 2.0, 2.5, 3.0, 5.0, 7.5])
def test_grid_lookup_equals_distance_matrix(delta: float) -> None:
    g = torch.Generator().manual_seed(0)
    n = 3000
    bank_slide = torch.randint(0, 4, (n,), generator=g)
    bank_xy = torch.randint(-5, 40, (n, 2), generator=g).float()  # random holes and duplicates
    q_idx = torch.randint(0, n, (64,), generator=g)
    q_slide = torch.cat([bank_slide[q_idx], torch.tensor([7])])  # a slide absent from the bank
    q_xy = torch.cat([bank_xy[q_idx], torch.tensor([[100.0, -50.0]])])  # plus a query outside the bank's box
    dense = dense_neighbors(q_slide, q_xy, bank_slide, bank_xy, delta)
    grid = SpatialGrid(bank_slide, bank_xy).neighbors(q_slide, q_xy, delta)
    assert torch.equal(dense, grid) and int(dense.sum()) > 0
    assert torch.equal(spatial_neighbors(q_slide, q_xy, bank_slide, bank_xy, delta, method="auto"), dense)


def test_auto_uses_the_grid_for_large_banks_and_dense_for_fractional_coordinates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pathseg.ssl.sgcl.spatial as sp

    slide, xy = _grid(30, 30)
    monkeypatch.setattr(sp, "DENSE_LIMIT", 10)
    calls: list[str] = []
    real = sp.SpatialGrid.neighbors
    monkeypatch.setattr(sp.SpatialGrid, "neighbors", lambda self, *a: calls.append("grid") or real(self, *a))
    m = spatial_neighbors(torch.tensor([0]), torch.tensor([[10.0, 10.0]]), slide, xy, 3.0)
    assert calls == ["grid"] and int(m.sum()) == 24
    m = spatial_neighbors(torch.tensor([0]), torch.tensor([[10.25, 10.0]]), slide, xy, 1.0)  # quadrant-like
    assert calls == ["grid"] and int(m.sum()) == 2  # (10, 10) at 0.25 and (11, 10) at 0.75
    with pytest.raises(ValueError):
        SpatialGrid(slide, xy + 0.5)
