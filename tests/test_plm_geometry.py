"""PLM geometry: cell boxes, exact overlaps and the views' records, against independent computations."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pathseg.errors import ConfigError
from pathseg.ssl.plm import grid_boxes, overlap_fractions
from pathseg.ssl.plm.geometry import check_grid
from pathseg.ssl.plm.views import Geometry, RecordedViews, apply_geometry


def random_crops(n: int, gen: torch.Generator, extra: bool = False) -> torch.Tensor:
    top, left = torch.rand(n, generator=gen) * 0.5, torch.rand(n, generator=gen) * 0.5
    h = 0.2 + torch.rand(n, generator=gen) * 0.3
    w = 0.2 + torch.rand(n, generator=gen) * 0.3
    cols = [top, left, h, w, (torch.rand(n, generator=gen) < 0.5).float()]
    if extra:
        cols += [(torch.rand(n, generator=gen) < 0.5).float(), torch.randint(0, 4, (n,), generator=gen).float()]
    return torch.stack(cols, dim=1)


def index_grid(g: int, hflip: bool, vflip: bool, k: int) -> torch.Tensor:
    """Which un-transformed cell lands at each output cell: the view's ops applied to an index image."""
    idx = torch.arange(g * g).view(g, g)
    if hflip:
        idx = idx.flip(-1)
    if vflip:
        idx = idx.flip(-2)
    return torch.rot90(idx, k, dims=(-2, -1)).flatten()


def test_identical_crops_give_the_identity_matching() -> None:
    crops = random_crops(6, torch.Generator().manual_seed(0), extra=True)
    boxes = grid_boxes(crops, 7)
    pq, pk = overlap_fractions(boxes, boxes)
    eye = torch.eye(49).expand(6, 49, 49)
    assert torch.allclose(pq, eye, atol=1e-5) and torch.allclose(pk, eye, atol=1e-5)


def test_flipped_view_gives_the_mirrored_column_permutation() -> None:
    g = 5
    crops = random_crops(3, torch.Generator().manual_seed(1))
    crops[:, 4] = 0
    flipped = crops.clone()
    flipped[:, 4] = 1
    pq, pk = overlap_fractions(grid_boxes(crops, g), grid_boxes(flipped, g))
    perm = torch.zeros(g * g, g * g)
    for r, c in itertools.product(range(g), range(g)):
        perm[r * g + c, r * g + (g - 1 - c)] = 1
    for b in range(3):
        assert torch.allclose(pq[b], perm, atol=1e-5) and torch.allclose(pk[b], perm.t(), atol=1e-5)


@pytest.mark.parametrize(("hflip", "vflip", "k"), list(itertools.product([False, True], [False, True], range(4))))
def test_vflip_and_rot90_permute_cells_as_the_image(hflip: bool, vflip: bool, k: int) -> None:
    g = 4
    crops = random_crops(2, torch.Generator().manual_seed(2), extra=True)
    plain = crops.clone()
    plain[:, 4:] = 0
    moved = crops.clone()
    moved[:, 4], moved[:, 5], moved[:, 6] = float(hflip), float(vflip), float(k)
    pq, _ = overlap_fractions(grid_boxes(plain, g), grid_boxes(moved, g))
    src = index_grid(g, hflip, vflip, k)  # key cell j covers un-transformed cell src[j]
    expected = torch.zeros(g * g, g * g)
    expected[src, torch.arange(g * g)] = 1
    for b in range(2):
        assert torch.allclose(pq[b], expected, atol=1e-5)


def test_overlap_fractions_agree_with_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(3)
    crops_q, crops_k = random_crops(2, gen), random_crops(2, gen)
    crops_k[:, :2] = crops_q[:, :2] + 0.1  # make the views overlap
    bq, bk = grid_boxes(crops_q, 3), grid_boxes(crops_k, 3)
    pq, pk = overlap_fractions(bq, bk)
    n = 40000
    for b, i in [(0, 0), (0, 4), (1, 8), (1, 2)]:
        t, le, bo, r = bq[b, i].tolist()
        u = torch.rand(n, 2, generator=gen)
        pts = torch.stack([t + (bo - t) * u[:, 0], le + (r - le) * u[:, 1]], 1)
        for j in range(9):
            kt, kl, kb, kr = bk[b, j].tolist()
            inside = ((pts[:, 0] >= kt) & (pts[:, 0] < kb) & (pts[:, 1] >= kl) & (pts[:, 1] < kr)).float().mean()
            assert abs(float(pq[b, i, j]) - float(inside)) < 0.01
    # pk is the same intersection over the key cell's area
    area_q = (bq[..., 2] - bq[..., 0]) * (bq[..., 3] - bq[..., 1])
    area_k = (bk[..., 2] - bk[..., 0]) * (bk[..., 3] - bk[..., 1])
    assert torch.allclose(pk.transpose(1, 2) * area_k[:, None, :], pq * area_q[:, :, None], atol=1e-7)
    assert (pq > 0).any()


def test_disjoint_and_contained_boxes() -> None:
    # a 1x1 grid each: q = [0, .5]^2, k = [.25, .75] x [.25, 1.0] -> intersection .25 x .25
    q = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]])
    k = torch.tensor([[[0.25, 0.25, 0.75, 1.0]]])
    pq, pk = overlap_fractions(q, k)
    assert float(pq) == pytest.approx(0.0625 / 0.25) and float(pk) == pytest.approx(0.0625 / 0.375)
    far = torch.tensor([[[0.6, 0.6, 0.9, 0.9]]])
    assert float(overlap_fractions(q, far)[0]) == 0.0


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """``[2, H, W]``: each pixel holds its centre's (y, x) as fractions of the image."""
    yy, xx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([yy, xx]).double()


def pooled_cells_match_boxes(view: torch.Tensor, record: torch.Tensor, g: int, h: int, w: int) -> None:
    s = view.shape[-1] // g
    pooled = F.avg_pool2d(view[None], s)[0].flatten(1).t()  # [N, 2] mean (y, x) of each cell
    boxes = grid_boxes(record[None], g)[0].double()
    centres = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    assert torch.allclose(pooled, centres, atol=0.5 / min(h, w)), (pooled - centres).abs().max()
    # every pixel a cell pools lies inside that cell's box
    cells = view.unfold(1, s, s).unfold(2, s, s).reshape(2, g * g, s * s)  # [2, N, s*s]
    tol = 1e-6
    assert (cells[0] >= boxes[:, :1] - tol).all() and (cells[0] <= boxes[:, 2:3] + tol).all()
    assert (cells[1] >= boxes[:, 1:2] - tol).all() and (cells[1] <= boxes[:, 3:4] + tol).all()


@pytest.mark.parametrize("geom", [Geometry(10, 20, 60, 45), Geometry(3, 7, 100, 90, hflip=True),
                                  Geometry(40, 5, 21, 30, vflip=True, rot90=1),
                                  Geometry(0, 0, 120, 100, hflip=True, vflip=True, rot90=3)])
def test_cell_boxes_contain_the_pixels_each_cell_pools(geom: Geometry) -> None:
    h, w, g, s = 120, 100, 7, 8
    view = apply_geometry(coordinate_image(h, w), geom, g * s)
    pooled_cells_match_boxes(view, geom.record((h, w)), g, h, w)


def test_recorded_views_pipeline_matches_its_records() -> None:
    h, w, g, s = 90, 110, 4, 8
    img = coordinate_image(h, w)
    views = RecordedViews(g * s, photometric=lambda x: x, scale=(0.1, 1.0), hflip=True, vflip=True, rot90=True)
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        out = views(img)
        for v in ("1", "2"):
            rec = out[f"crop{v}"]
            seen.add(tuple(int(x) for x in rec[4:].tolist()))
            pooled_cells_match_boxes(out[f"view{v}"], rec, g, h, w)
    assert len(seen) >= 12  # most of the 16 flip/rotation combinations were exercised


def test_views_are_reproducible_from_torch_rng() -> None:
    img = (coordinate_image(50, 60)[:1].repeat(3, 1, 1) * 255).to(torch.uint8)
    views = RecordedViews(32, photometric=lambda x: x, vflip=True, rot90=True)
    torch.manual_seed(5)
    a = views(img)
    torch.manual_seed(5)
    b = views(img)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["crop1"], a["crop2"])


def test_check_grid() -> None:
    assert check_grid((7, 7), (224, 224), 32, 7) == 7
    assert check_grid((2, 2), (64, 64), 32, 0) == 2
    with pytest.raises(ConfigError, match="multiple of 32"):
        check_grid((3, 3), (72, 72), 32, 0)
    with pytest.raises(ConfigError, match="grid_size is 7"):
        check_grid((2, 2), (64, 64), 32, 7)
    with pytest.raises(ConfigError, match="square"):
        check_grid((2, 3), (64, 96), 32, 0)


def test_coverage_statistics_match_the_spec_simulation() -> None:
    # spec §1.3 (4,000 pairs, 224 px sources, G = 7): mean ω 0.70, 20 % of cells ω = 0, 58 % fully covered,
    # a covered cell touches 3.4 key cells on average and at most 12
    from pathseg.ssl.plm.views import sample_geometry

    torch.manual_seed(0)
    img = torch.zeros(1, 224, 224)
    recs = [sample_geometry(img, (0.2, 1.0), (3 / 4, 4 / 3)).record((224, 224)) for _ in range(2 * 1500)]
    pq, _ = overlap_fractions(grid_boxes(torch.stack(recs[::2]), 7), grid_boxes(torch.stack(recs[1::2]), 7))
    w = pq.sum(-1)
    assert float(w.mean()) == pytest.approx(0.70, abs=0.03)
    assert float((w < 1e-6).float().mean()) == pytest.approx(0.20, abs=0.03)
    assert float((w > 1 - 1e-5).float().mean()) == pytest.approx(0.58, abs=0.03)
    touched = (pq > 0).sum(-1)
    assert float(touched[w > 0].float().mean()) == pytest.approx(3.4, abs=0.2) and int(touched.max()) <= 12
