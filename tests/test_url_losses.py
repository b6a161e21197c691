"""URL losses against independent, loop-based computations written straight from the spec's equations."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from pathseg.ssl.url import ImageLevelLoss, PixelLoss, SuperpixelLoss

TAU = 0.3


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _vec(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t]


def ref_image_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float = TAU) -> float:
    b_count, s, _ = z1.shape
    total = 0.0
    for b in range(b_count):
        u = [_vec(z1[b, i]) for i in range(s)] + [_vec(z2[b, i]) for i in range(s)]
        for i in range(2 * s):
            p = i + s if i < s else i - s
            denom = sum(math.exp(_cos(u[i], u[j]) / tau) for j in range(2 * s) if j != i)
            total += -math.log(math.exp(_cos(u[i], u[p]) / tau) / denom)
    return total / (b_count * s)


def _protos(f: torch.Tensor, sp: torch.Tensor) -> dict[int, list[float]]:
    """Unnormalised mean embedding of every id >= 0 of one image (f [C,H,W], sp [H,W])."""
    sums: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    c, h, w = f.shape
    for y in range(h):
        for x in range(w):
            k = int(sp[y, x])
            if k < 0:
                continue
            acc = sums.setdefault(k, [0.0] * c)
            for ch in range(c):
                acc[ch] += float(f[ch, y, x])
            counts[k] = counts.get(k, 0) + 1
    return {k: [v / counts[k] for v in sums[k]] for k in sorted(sums)}


def ref_superpixel_loss(f1, f2, sp1, sp2, tau: float = TAU, other_view_only: bool = False) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for b in range(f1.shape[0]):
        m1, m2 = _protos(f1[b], sp1[b]), _protos(f2[b], sp2[b])
        entries = [(1, k, v) for k, v in m1.items()] + [(2, k, v) for k, v in m2.items()]
        n = len(entries)
        a = [[math.exp(_cos(entries[i][2], entries[j][2]) / tau) for j in range(n)] for i in range(n)]
        for view in (1, 2):
            losses = []
            for i, (vi, ki, _) in enumerate(entries):
                if vi != view:
                    continue
                match = [j for j, (vj, kj, _) in enumerate(entries) if vj != view and kj == ki]
                if not match:
                    continue
                if other_view_only:
                    denom = sum(a[i][j] for j in range(n) if entries[j][0] != view)
                else:
                    denom = sum(a[i]) - a[i][i]
                losses.append(-math.log(a[i][match[0]] / denom))
            if losses:
                total += sum(losses) / len(losses)
    return total / f1.shape[0]


def ref_pixel_loss(f, sp, tau: float = TAU, pixel_negatives: bool = False) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for b in range(f.shape[0]):
        protos = _protos(f[b], sp[b])
        pixels: dict[int, list[list[float]]] = {k: [] for k in protos}
        for y in range(sp.shape[1]):
            for x in range(sp.shape[2]):
                k = int(sp[b, y, x])
                if k >= 0:
                    pixels[k].append(_vec(f[b, :, y, x]))
        losses = []
        for i, zi in protos.items():
            e_sim = sum(math.exp(_cos(zi, p) / tau) for p in pixels[i]) / len(pixels[i])
            if pixel_negatives:
                e_dis = sum(
                    sum(math.exp(_cos(zi, q) / tau) for q in pixels[j]) / len(pixels[j]) for j in protos if j != i
                )
            else:
                e_dis = sum(math.exp(_cos(zi, zj) / tau) for j, zj in protos.items() if j != i)
            losses.append(-math.log(e_sim / (e_sim + e_dis)))
        total += sum(losses) / len(losses) if losses else 0.0
    return total / f.shape[0]


def _dense_inputs(seed: int = 0, b: int = 2, c: int = 5, h: int = 6, w: int = 7, k: int = 6):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    f2 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    sp1 = torch.randint(0, k, (b, h, w), generator=g)
    sp2 = torch.randint(2, k + 3, (b, h, w), generator=g)  # partial overlap: ids 2..k-1 shared
    sp1[0, 0, :3] = -1  # padding
    sp2[1, -1, :] = -1
    return f1, f2, sp1, sp2


@pytest.mark.parametrize("s", [2, 5])
def test_image_level_matches_reference(s: int) -> None:
    g = torch.Generator().manual_seed(s)
    z1, z2 = torch.randn(3, s, 8, generator=g), torch.randn(3, s, 8, generator=g)
    got = ImageLevelLoss(TAU)(z1, z2)
    assert got.item() == pytest.approx(ref_image_loss(z1, z2), rel=1e-5)
    mean = ImageLevelLoss(TAU, reduction="mean")(z1, z2)
    assert mean.item() == pytest.approx(got.item() / 2, rel=1e-6)


def test_image_level_single_scale_is_zero_and_warns_once() -> None:
    loss = ImageLevelLoss()
    z1 = torch.randn(4, 1, 8, requires_grad=True)
    with pytest.warns(UserWarning, match="single scale"):
        out = loss(z1, torch.randn(4, 1, 8))
    assert out.item() == pytest.approx(0.0, abs=1e-6)
    out.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(torch.randn(4, 1, 8), torch.randn(4, 1, 8))


@pytest.mark.parametrize("seed", [0, 1])
def test_superpixel_matches_reference(seed: int) -> None:
    f1, f2, sp1, sp2 = _dense_inputs(seed)
    got = SuperpixelLoss(TAU)(f1, f2, sp1, sp2)
    assert got.item() == pytest.approx(ref_superpixel_loss(f1, f2, sp1, sp2), rel=1e-6)
    other = SuperpixelLoss(TAU, negatives="other_view")(f1, f2, sp1, sp2)
    assert other.item() == pytest.approx(ref_superpixel_loss(f1, f2, sp1, sp2, other_view_only=True), rel=1e-6)


def test_superpixel_sparse_ids_and_ignore() -> None:
    f1, f2, sp1, sp2 = _dense_inputs(3)
    big1, big2 = sp1 * 1000, sp2 * 1000  # large, sparse ids; -1 stays ignored (-1000 too)
    assert SuperpixelLoss(TAU)(f1, f2, big1, big2).item() == pytest.approx(
        ref_superpixel_loss(f1, f2, sp1, sp2), rel=1e-6
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("negatives", ["prototype", "pixel"])
def test_pixel_matches_reference(seed: int, negatives: str) -> None:
    f, _, sp, _ = _dense_inputs(seed)
    got = PixelLoss(TAU, negatives=negatives)(f, sp)  # type: ignore[arg-type]
    assert got.item() == pytest.approx(ref_pixel_loss(f, sp, pixel_negatives=negatives == "pixel"), rel=1e-6)


def test_single_superpixel() -> None:
    f1, f2, _, _ = _dense_inputs(0)
    sp = torch.zeros(2, 6, 7, dtype=torch.long)
    assert SuperpixelLoss()(f1, f2, sp, sp).item() == pytest.approx(0.0, abs=1e-6)  # positive is the only term
    assert PixelLoss()(f1, sp).item() == pytest.approx(0.0, abs=1e-6)
    assert PixelLoss(negatives="pixel")(f1, sp).item() == pytest.approx(0.0, abs=1e-6)


def test_no_shared_superpixel_is_zero_with_warning_never_nan() -> None:
    f1, f2, _, _ = _dense_inputs(0)
    f1.requires_grad_(True)
    sp1 = torch.randint(0, 4, (2, 6, 7))
    sp2 = sp1 + 10
    with pytest.warns(UserWarning, match="share no superpixel"):
        out = SuperpixelLoss()(f1, f2, sp1, sp2)
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(f1.grad).all()  # type: ignore[arg-type]
    # one image without overlap, the other with: the mean is still over B (the empty image counts 0)
    sp2b = sp2.clone()
    sp2b[1] = sp1[1]
    with pytest.warns(UserWarning):
        half = SuperpixelLoss()(f1, f2, sp1, sp2b)
    ref = ref_superpixel_loss(f1.detach(), f2, sp1, sp2b)
    assert half.item() == pytest.approx(ref, rel=1e-6)


def test_all_ignored_and_zero_features_are_finite() -> None:
    f = torch.zeros(2, 4, 5, 5, requires_grad=True)
    sp = torch.full((2, 5, 5), -1)
    sp[0, :2] = 3
    with pytest.warns(UserWarning, match="share no superpixel"):  # image 1 has no valid pixel at all
        sp_loss = SuperpixelLoss()(f, f, sp, sp)
    for loss in (PixelLoss()(f, sp), PixelLoss(negatives="pixel")(f, sp), sp_loss):
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(f.grad).all()  # type: ignore[arg-type]


def test_gradients_finite_and_flow_through_all_views() -> None:
    f1, f2, sp1, sp2 = _dense_inputs(2)
    f1 = f1.float().requires_grad_(True)
    f2 = f2.float().requires_grad_(True)
    loss = SuperpixelLoss(0.1)(f1, f2, sp1, sp2) + PixelLoss(0.1)(f1, sp1) + PixelLoss(0.1, "pixel")(f2, sp2)
    loss.backward()
    for g in (f1.grad, f2.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_small_temperature_does_not_overflow() -> None:
    f1, f2, sp1, sp2 = _dense_inputs(4)
    f1, f2 = f1.float(), f2.float()
    assert torch.isfinite(SuperpixelLoss(0.005)(f1, f2, sp1, sp2))
    assert torch.isfinite(PixelLoss(0.005)(f1, sp1)) and torch.isfinite(PixelLoss(0.005, "pixel")(f1, sp1))


def test_shape_errors() -> None:
    f = torch.randn(2, 4, 5, 5)
    with pytest.raises(ValueError, match="same size"):
        PixelLoss()(f, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, S, D\]"):
        ImageLevelLoss()(torch.randn(2, 3), torch.randn(2, 3))
