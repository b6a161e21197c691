"""Losses, queues, correspondence, kNN and schedules of pathseg.ssl against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathseg.ssl.base import Queue
from pathseg.ssl.densecl import DenseCLLoss, dense_positives
from pathseg.ssl.losses import QueueInfoNCE
from pathseg.ssl.monitor import knn_accuracy
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)


def _infonce_loop(q: torch.Tensor, k: torch.Tensor, neg: torch.Tensor, tau: float) -> float:
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        negs = sum(math.exp(float(q[i] @ neg[j]) / tau) for j in range(neg.shape[0]))
        total += -math.log(pos / (pos + negs))
    return total / q.shape[0]


def test_queue_infonce_matches_formula() -> None:
    torch.manual_seed(0)
    q, k, neg = _unit(5, 8), _unit(5, 8), _unit(7, 8)
    got = float(QueueInfoNCE(0.2)(q, k, neg))
    assert got == pytest.approx(_infonce_loop(q, k, neg, 0.2), rel=1e-5)
    assert float(QueueInfoNCE(0.5)(q, k, neg)) == pytest.approx(_infonce_loop(q, k, neg, 0.5), rel=1e-5)


def _matched_loop(qf: torch.Tensor, kf: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    n, _, s = qf.shape
    out = torch.empty(n, kp.shape[1], s, dtype=kp.dtype)
    for b in range(n):
        for i in range(s):
            sims = [float(F.cosine_similarity(qf[b, :, i], kf[b, :, j], dim=0)) for j in range(s)]
            out[b, :, i] = kp[b, :, int(np.argmax(sims))]
    return out


def test_dense_positives_match_argmax_loop() -> None:
    torch.manual_seed(1)
    qf, kf = torch.randn(2, 6, 9, dtype=torch.float64), torch.randn(2, 6, 9, dtype=torch.float64)
    kp = F.normalize(torch.randn(2, 4, 9, dtype=torch.float64), dim=1)
    assert torch.allclose(dense_positives(qf, kf, kp), _matched_loop(qf, kf, kp))


def test_densecl_loss_matches_formula() -> None:
    torch.manual_seed(2)
    n, d, s, kq = 2, 8, 4, 6
    q, k, queue = _unit(n, d), _unit(n, d), _unit(kq, d)
    qd = F.normalize(torch.randn(n, d, s, dtype=torch.float64), dim=1)
    km = F.normalize(torch.randn(n, d, s, dtype=torch.float64), dim=1)
    qdense = _unit(kq, d)
    out = DenseCLLoss(0.2, 0.5)(q, k, queue, qd, km, qdense)
    # dense term: one InfoNCE per (image, location) pair, averaged over all N*S of them
    dense = 0.0
    for b in range(n):
        for i in range(s):
            dense += _infonce_loop(qd[b, :, i][None], km[b, :, i][None], qdense, 0.2)
    dense /= n * s
    glob = _infonce_loop(q, k, queue, 0.2)
    assert float(out["loss_dense"]) == pytest.approx(dense, rel=1e-5)
    assert float(out["loss_global"]) == pytest.approx(glob, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(0.5 * glob + 0.5 * dense, rel=1e-5)
    lam = DenseCLLoss(0.2, 0.25)(q, k, queue, qd, km, qdense)
    assert float(lam["loss"]) == pytest.approx(0.75 * glob + 0.25 * dense, rel=1e-5)


def test_queue_is_fifo_with_wraparound() -> None:
    queue = Queue(5, 2)
    rows = [torch.full((1, 2), float(i)) for i in range(8)]
    queue.enqueue(torch.cat(rows[:3]))
    queue.enqueue(torch.cat(rows[3:7]))
    # ring buffer of 5: positions get 0,1,2,3,4 then 5,6 overwrite positions 0,1
    assert queue.queue[:, 0].tolist() == [5, 6, 2, 3, 4] and int(queue.ptr) == 2
    queue.enqueue(torch.cat(rows[:6]))  # more than the size: keep the last 5
    assert queue.queue[:, 0].tolist() == [1, 2, 3, 4, 5] and int(queue.ptr) == 0


def test_knn_accuracy_matches_vote_loop() -> None:
    torch.manual_seed(3)
    tr, te = torch.randn(20, 4), torch.randn(7, 4)
    ytr, yte = torch.randint(0, 3, (20,)), torch.randint(0, 3, (7,))
    correct = 0
    for i in range(7):
        sims = [(float(F.cosine_similarity(te[i], tr[j], dim=0)), int(ytr[j])) for j in range(20)]
        votes = [0.0, 0.0, 0.0]
        for s, y in sorted(sims, reverse=True)[:5]:
            votes[y] += math.exp(s / 0.1)
        correct += int(np.argmax(votes) == int(yte[i]))
    assert knn_accuracy(tr, ytr, te, yte, k=5, temperature=0.1) == pytest.approx(correct / 7)
