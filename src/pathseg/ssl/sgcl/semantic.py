"""Semantic positives of SGCL (inter-invariance, §1.4 of the spec): propagation through an auxiliary anchor, kNN in
the memory bank, and agreement of several k-means labellings (Lin et al., MedIA 2023; after LocalAgg, Zhuang et al.
2019). k-means runs in torch on the bank, deterministically from a seed, so every DDP rank computes the same labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: faiss trains k-means on at most this many points per centroid (a random subset); all points are then assigned.
MAX_POINTS_PER_CENTROID = 256


def _assign(x: Tensor, centroids: Tensor, chunk: int = 65536) -> Tensor:
    """Nearest centroid (L2) of every row of ``x``, in chunks of rows."""
    c2 = (centroids * centroids).sum(1)
    out = [torch.argmin(c2[None, :] - 2 * part @ centroids.T, dim=1) for part in x.split(chunk)]
    return torch.cat(out)


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int = 20, seed: int = 0,
           max_points_per_centroid: int = MAX_POINTS_PER_CENTROID) -> Tensor:
    """Lloyd's k-means with L2 distance (as faiss ``Kmeans``); returns the label of every row ``[N]`` (int64).

    Initial centroids are ``k`` distinct random rows; the training set is a random subset of at most
    ``max_points_per_centroid · k`` rows (as faiss); an empty cluster is re-seeded at a random training row. All
    randomness comes from a CPU generator seeded with ``seed``, so the result depends only on ``(x, k, seed)``.
    """
    n = int(x.shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    g = torch.Generator().manual_seed(int(seed))
    x = x.float()
    train = x
    if n > max_points_per_centroid * k:
        train = x[torch.randperm(n, generator=g)[: max_points_per_centroid * k].to(x.device)]
    m = int(train.shape[0])
    centroids = train[torch.randperm(m, generator=g)[:k].to(x.device)].clone()
    for _ in range(iters):
        labels = _assign(train, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, train)
        counts = torch.bincount(labels, minlength=k)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
        if bool(empty.any()):
            pick = torch.randint(m, (int(empty.sum()),), generator=g).to(x.device)
            centroids[empty] = train[pick]
    return _assign(x, centroids)


def aux_anchors(sims: Tensor, spatial: Tensor, num: int = 1) -> tuple[Tensor, Tensor]:
    """The ``num`` spatial neighbours most similar to each anchor (the auxiliary anchors).

    Args:
        sims: Query-bank similarities ``[B, N]``.
        spatial: Spatial-neighbour mask ``[B, N]``.
        num: Auxiliary anchors per query (``aux_num``).

    Returns:
        ``(indices [B, num], valid [B, num])``; an anchor with fewer than ``num`` neighbours has invalid slots (the
        reference then took an arbitrary index, possibly from another slide).
    """
    masked = sims.masked_fill(~spatial, float("-inf"))
    values, idx = torch.topk(masked, num, dim=1)
    return idx, torch.isfinite(values)


def close_neighbors(queries: Tensor, own: Tensor, bank: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """kNN of each query in the bank (its own entry excluded), kept if all labellings agree with its own label.

    Args:
        queries: ``[M, D]`` embeddings.
        own: Bank index of each query ``[M]`` (excluded from its neighbours; its labels are the reference).
        bank: ``[N, D]`` memory bank.
        labels: ``[R, N]`` cluster labels of R k-means runs.
        k: Neighbours ``nei_k``.

    Returns:
        ``(indices [M, k], close [M, k])`` where ``close`` is the intersection over the R labellings.
    """
    dots = queries @ bank.T
    dots[torch.arange(dots.shape[0], device=dots.device), own] = float("-inf")
    idx = torch.topk(dots, k, dim=1, sorted=False).indices
    close = (labels[:, idx] == labels[:, own][:, :, None]).all(0)
    return idx, close


@torch.no_grad()
def semantic_positives(
    query: Tensor, index: Tensor, sims: Tensor, spatial: Tensor, bank: Tensor, labels: Tensor,
    aux_num: int = 1, nei_k: int = 4096,
) -> Tensor:
    """Semantic positives ``Σ(i) = Cl(z_i) ∪ ⋃_a Cl(V[a])`` over the auxiliary anchors ``a`` of each query.

    Args:
        query: L2-normalised query embeddings ``[B, D]``.
        index: Bank index of each query ``[B]``.
        sims: ``query @ bank.T`` ``[B, N]``.
        spatial: Spatial-neighbour mask ``[B, N]``.
        bank: Memory bank ``V`` ``[N, D]`` (the auxiliary anchor's query is its memory entry, as in the reference).
        labels: ``[R, N]`` k-means labels.
        aux_num: Auxiliary anchors per query (0: the query's own kNN only).
        nei_k: Background neighbours per query.

    Returns:
        ``BoolTensor[B, N]`` without the anchor itself.
    """
    b, n = sims.shape
    queries, owns, valid = [query], [index], [torch.ones(b, dtype=torch.bool, device=sims.device)]
    if aux_num > 0:
        aux, ok = aux_anchors(sims, spatial, aux_num)
        queries.append(bank[aux.T.reshape(-1)])
        owns.append(aux.T.reshape(-1))
        valid.append(ok.T.reshape(-1))
    idx, close = close_neighbors(torch.cat(queries), torch.cat(owns), bank, labels, nei_k)
    close &= torch.cat(valid)[:, None]
    hits = torch.zeros(idx.shape[0], n, dtype=torch.bool, device=sims.device).scatter_(1, idx, close)
    out = hits.view(-1, b, n).any(0)
    out[torch.arange(b, device=sims.device), index] = False
    return out
