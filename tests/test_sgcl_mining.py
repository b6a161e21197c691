"""SGCL semantic positives (aux anchor, kNN, k-means intersection) and Beta-sampled semi-hard negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathseg.ssl.sgcl import beta_rank_pdf, kmeans, mine_negatives, sample_ranks, semantic_positives


def test_beta_rank_pdf_matches_the_reference_statistics() -> None:
    # The reference's bank length: the spec measured ranks between the 2.7th and 10.8th percentile (5 %/95 %), mean
    # 6.35 %, for one random draw whose sample max was 0.775; the expected max of 1e6 samples is 0.754 (-> 11.0 %).
    n = 681_486
    length = int(0.2 * n)
    pdf = beta_rank_pdf(length).numpy()
    assert pdf.shape == (length,) and pdf.min() > 0 and pdf.sum() == pytest.approx(1.0)
    cdf = np.cumsum(pdf)
    q05, q95 = np.searchsorted(cdf, 0.05) / n, np.searchsorted(cdf, 0.95) / n
    mean = float((pdf * np.arange(length)).sum()) / n
    assert q05 == pytest.approx(0.027, abs=0.001) and q95 == pytest.approx(0.108, abs=0.003)
    assert mean == pytest.approx(0.0635, abs=0.0015)
    # the reference procedure: histogram of 1e6 Beta(5, 15) samples over [min, max], stretched by nearest neighbour
    samples = np.random.default_rng(0).beta(5, 15, 1_000_000)
    hist, _ = np.histogram(samples, bins=100, range=(samples.min(), samples.max()))
    ref = hist[np.floor(np.arange(length) * 100 / length).astype(int)].astype(float)
    assert np.abs(np.cumsum(ref / ref.sum()) - cdf).max() < 0.01


def test_sample_ranks_distinct_and_bounded() -> None:
    pdf = beta_rank_pdf(50)
    r = sample_ranks(pdf, 20, torch.Generator().manual_seed(0))
    assert len(set(r.tolist())) == 20 and int(r.max()) < 50
    with pytest.raises(ValueError):
        sample_ranks(pdf, 51)


def test_mine_negatives_matches_loop() -> None:
    g = torch.Generator().manual_seed(1)
    b, n, length = 4, 30, 12
    scores = torch.rand(b, n, generator=g) * 2 - 1
    exclude = torch.rand(b, n, generator=g) < 0.3
    exclude[3, :20] = True  # only 10 items left for 12 positions
    ranks = torch.tensor([0, 5, 11, 2])
    idx, valid = mine_negatives(scores, exclude, ranks, length)
    for i in range(b):
        order = sorted((j for j in range(n) if not exclude[i, j]), key=lambda j: -float(scores[i, j]))
        for k, r in enumerate(ranks.tolist()):
            if r < len(order):
                assert valid[i, k] and int(idx[i, k]) == order[r]
            else:
                assert not valid[i, k]
    assert not valid[3, 2] and int(valid.sum()) == 15


def _loop_semantic(z: torch.Tensor, index: list[int], spatial: torch.Tensor, bank: torch.Tensor,
                   labels: torch.Tensor, nei_k: int) -> torch.Tensor:
    b, n = spatial.shape
    out = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        queries = [(z[i], index[i])]
        nbrs = [j for j in range(n) if spatial[i, j]]
        if nbrs:
            a = max(nbrs, key=lambda j: float(z[i] @ bank[j]))
            queries.append((bank[a], a))
        for q, own in queries:
            cand = sorted((j for j in range(n) if j != own), key=lambda j: -float(q @ bank[j]))[:nei_k]
            for j in cand:
                if all(int(labels[r, j]) == int(labels[r, own]) for r in range(labels.shape[0])):
                    out[i, j] = True
        out[i, index[i]] = False
    return out


def test_semantic_positives_match_loop() -> None:
    g = torch.Generator().manual_seed(2)
    n, b, d = 40, 5, 8
    bank = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    index = [0, 7, 13, 21, 39]
    z = F.normalize(bank[index] + 0.3 * torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    spatial = torch.rand(b, n, generator=g) < 0.1
    spatial[2] = False  # no spatial neighbour: no aux anchor
    labels = torch.stack([torch.randint(0, 3, (n,), generator=g) for _ in range(3)])
    labels[:, :20] = 0  # many agreements
    got = semantic_positives(z, torch.tensor(index), z @ bank.T, spatial, bank, labels, aux_num=1, nei_k=10)
    expect = _loop_semantic(z, index, spatial, bank, labels, 10)
    assert torch.equal(got, expect) and int(got.sum()) > 5
    own_only = semantic_positives(z, torch.tensor(index), z @ bank.T, spatial, bank, labels, aux_num=0, nei_k=10)
    assert bool((own_only <= got).all()) and int(own_only.sum()) < int(got.sum())


def test_kmeans_recovers_separated_blobs_and_is_seeded() -> None:
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [-5, 0, 0]])
    truth = torch.arange(4).repeat_interleave(50)
    x = centres[truth] + 0.3 * torch.randn(200, 3, generator=g)
    best = None
    for seed in range(5):  # Lloyd can fall into a local optimum: some seed finds the true partition
        lab = kmeans(x, 4, iters=20, seed=seed)
        pairs = {(int(a), int(b)) for a, b in zip(lab, truth)}
        if len(pairs) == 4 and len({a for a, _ in pairs}) == 4:
            best = seed
    assert best is not None
    assert torch.equal(kmeans(x, 4, seed=11), kmeans(x, 4, seed=11))
    assert torch.equal(kmeans(x, 200, iters=3, seed=0).sort().values, torch.arange(200))  # k = N: singletons
    with pytest.raises(ValueError):
        kmeans(x, 201)


def test_kmeans_subsamples_like_faiss_but_labels_everything() -> None:
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(4))
    lab = kmeans(x, 2, iters=5, seed=0, max_points_per_centroid=10)  # trains on 20 points
    assert lab.shape == (500,) and set(lab.tolist()) == {0, 1}


def test_masks_use_minus_infinity_when_similarities_are_negative() -> None:
    # The reference masks by multiplying with 0: with negative similarities the anchor's own column and
    # non-neighbours (similarity 0) would win; here they never do.
    g = torch.Generator().manual_seed(5)
    n = 12
    bank = F.normalize(torch.cat([torch.tensor([[1.0, 0, 0]]), torch.randn(n - 1, 3, generator=g).abs() * -1]), dim=1)
    z = bank[:1].clone()
    spatial = torch.zeros(1, n, dtype=torch.bool)
    spatial[0, [4, 9]] = True
    labels = torch.zeros(3, n, dtype=torch.long)
    for aux in (0, 1):
        got = semantic_positives(z, torch.tensor([0]), z @ bank.T, spatial, bank, labels, aux_num=aux, nei_k=2)
        assert torch.equal(got, _loop_semantic_aux(z, 0, spatial, bank, labels, 2, aux)), aux
        assert int(got.sum()) >= 2


def _loop_semantic_aux(z: torch.Tensor, own: int, spatial: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor,
                       nei_k: int, aux_num: int) -> torch.Tensor:
    if aux_num:
        return _loop_semantic(z, [own], spatial, bank, labels, nei_k)
    return _loop_semantic(z, [own], torch.zeros_like(spatial), bank, labels, nei_k)


def test_kmeans_reseeds_empty_clusters() -> None:
    x = torch.tensor([[100.0, 0], [100, 5], [105, 0]]).repeat_interleave(10, 0)  # duplicates: empty clusters
    truth = torch.arange(3).repeat_interleave(10)
    for seed in range(6):
        lab = kmeans(x, 3, iters=20, seed=seed)
        assert len(set(lab.tolist())) == 3, seed
        assert len({(int(a), int(b)) for a, b in zip(lab, truth)}) == 3, seed
