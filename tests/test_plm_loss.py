"""PLM's dense matching loss against an explicit loop implementation of the spec's formulas (§2.3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathseg.ssl.plm import DenseMatchingLoss, grid_boxes, overlap_fractions


def unit(v: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    x = torch.stack(v) if isinstance(v, list) else v
    return x / torch.sqrt((x * x).sum())


def linear(layer: nn.Linear, v: torch.Tensor) -> torch.Tensor:
    return torch.stack([(layer.weight[o] * v).sum() + layer.bias[o] for o in range(layer.weight.shape[0])])


def nce(anchor: torch.Tensor, pos: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    top = torch.exp((anchor * pos).sum() / tau)
    bottom = top + sum(torch.exp((anchor * u).sum() / tau) for u in queue)
    return -torch.log(top / bottom)


def loop_loss(zq: torch.Tensor, zk: torch.Tensor, pq: torch.Tensor, pk: torch.Tensor, phi_q: nn.Linear,
              phi_k: nn.Linear, queue: torch.Tensor, tau: float, normalize: str) -> torch.Tensor:
    b_, n_, _ = zq.shape
    terms, weights = [], []
    for b in range(b_):
        for i in range(n_):  # set A: query cell i vs the overlap-weighted key cells
            w = sum(float(pq[b, i, j]) for j in range(n_))
            mixed = sum(float(pq[b, i, j]) / w * zk[b, j] for j in range(n_)) if w > 0 else torch.zeros_like(zk[b, 0])
            pos = unit(linear(phi_k, mixed)).detach()
            terms.append(w * nce(unit(zq[b, i]), pos, queue, tau))
            weights.append(w)
        for j in range(n_):  # set B: key cell j vs the overlap-weighted query cells through φ
            w = sum(float(pk[b, j, i]) for i in range(n_))
            mixed = sum(float(pk[b, j, i]) / w * zq[b, i] for i in range(n_)) if w > 0 else torch.zeros_like(zq[b, 0])
            terms.append(w * nce(unit(linear(phi_q, mixed)), unit(zk[b, j]), queue, tau))
            weights.append(w)
    total = sum(terms)
    assert isinstance(total, torch.Tensor)
    return total / (2 * b_ * n_) if normalize == "mean" else total / sum(weights)


def case(seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    crops_q = torch.tensor([[0.0, 0.0, 0.6, 0.5, 0.0], [0.2, 0.1, 0.5, 0.5, 1.0]])
    crops_k = torch.tensor([[0.3, 0.2, 0.6, 0.7, 1.0], [0.25, 0.3, 0.5, 0.6, 0.0]])
    pq, pk = overlap_fractions(grid_boxes(crops_q, 3), grid_boxes(crops_k, 3))
    zq = torch.randn(2, 9, 6, generator=gen, dtype=torch.float64)
    zk = torch.randn(2, 9, 6, generator=gen, dtype=torch.float64)
    queue = F.normalize(torch.randn(5, 6, generator=gen, dtype=torch.float64), dim=1)
    return zq, zk, pq.double(), pk.double(), queue


@pytest.mark.parametrize("normalize", ["mean", "coverage"])
def test_loss_and_gradients_equal_the_loop_implementation(normalize: str) -> None:
    zq, zk, pq, pk, queue = case()
    assert (pq.sum(-1) == 0).any() and (pq.sum(-1) > 0.99).any() and ((pq > 0).sum(-1) > 1).any()
    torch.manual_seed(0)
    phi_q = nn.Linear(6, 6).double()
    phi_k = nn.Linear(6, 6).double()
    for p in phi_k.parameters():
        p.requires_grad_(False)
    zq1 = zq.clone().requires_grad_(True)
    got = DenseMatchingLoss(0.2, normalize)(zq1, zk, pq, pk, phi_q, phi_k, queue)  # type: ignore[arg-type]
    got.backward()
    g_zq, g_w = zq1.grad.clone(), phi_q.weight.grad.clone()  # type: ignore[union-attr]
    phi_q.zero_grad()
    zq2 = zq.clone().requires_grad_(True)
    want = loop_loss(zq2, zk, pq, pk, phi_q, phi_k, queue, 0.2, normalize)
    want.backward()
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-9)
    assert torch.allclose(g_zq, zq2.grad, atol=1e-10)  # type: ignore[arg-type]
    assert torch.allclose(g_w, phi_q.weight.grad, atol=1e-10)  # type: ignore[arg-type]


def test_normalisations_differ_by_the_mean_coverage() -> None:
    zq, zk, pq, pk, queue = case(1)
    phi = nn.Linear(6, 6).double().requires_grad_(False)
    mean = DenseMatchingLoss(0.2, "mean")(zq, zk, pq, pk, phi, phi, queue)
    cov = DenseMatchingLoss(0.2, "coverage")(zq, zk, pq, pk, phi, phi, queue)
    w = torch.cat([pq.sum(-1), pk.sum(-1)]).sum()
    assert float(mean) == pytest.approx(float(cov) * float(w) / (2 * 2 * 9), rel=1e-9)


def test_no_gradient_reaches_the_key_side() -> None:
    zq, zk, pq, pk, queue = case(2)
    phi_q, phi_k = nn.Linear(6, 6).double(), nn.Linear(6, 6).double()
    zq.requires_grad_(True)
    zk.requires_grad_(True)
    DenseMatchingLoss()(zq, zk, pq, pk, phi_q, phi_k, queue).backward()
    assert zk.grad is None and phi_k.weight.grad is None
    assert phi_q.weight.grad is not None and float(phi_q.weight.grad.abs().sum()) > 0


def test_no_overlap_at_all_gives_zero() -> None:
    zq, zk, _, _, queue = case(3)
    zero = torch.zeros(2, 9, 9, dtype=torch.float64)
    phi = nn.Linear(6, 6).double()
    zq.requires_grad_(True)
    for mode in ("mean", "coverage"):
        out = DenseMatchingLoss(0.2, mode)(zq, zk, zero, zero, phi, phi, queue)  # type: ignore[arg-type]
        assert float(out.detach()) == 0.0 and out.requires_grad  # still part of the graph
    with pytest.raises(ValueError, match="normalize"):
        DenseMatchingLoss(0.2, "sum")  # type: ignore[arg-type]
