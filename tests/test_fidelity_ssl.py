"""Fidelity of the SSL baselines to their official code: DenseCL's dense queue, shuffling BatchNorm, head inits."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from ddp_helpers import free_port
from pathseg.ssl.base import ConvHead, MLPHead
from pathseg.ssl.densecl import DenseCL
from pathseg.ssl.mocov2 import MoCoV2
from pathseg.ssl.shuffle_bn import effective_groups, shuffle_permutation, shuffled_key_forward, step_generator
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


# ------------------------------------------------------------------ DenseCL: what the dense queue receives
def _official_keys(model: DenseCL, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official neck written out (``DenseCLNeck.forward``): avgpool → mlp; mlp2 → avgpool2; then normalise."""
    fmap = model.key_backbone.forward_features(x)  # [N, C, h, w]
    lin1, lin2 = model.key_head[0], model.key_head[2]
    pooled = fmap.mean(dim=(2, 3))
    glob = F.relu(pooled @ lin1.weight.t() + lin1.bias) @ lin2.weight.t() + lin2.bias
    c1, c2 = model.key_dense_head[0], model.key_dense_head[2]
    hid = F.relu(torch.einsum("nchw,dc->ndhw", fmap, c1.weight[:, :, 0, 0]) + c1.bias.view(1, -1, 1, 1))
    raw = torch.einsum("nchw,dc->ndhw", hid, c2.weight[:, :, 0, 0]) + c2.bias.view(1, -1, 1, 1)
    dense_pooled = F.adaptive_avg_pool2d(raw, 1).flatten(1)  # avgpool2 of the *raw* projections
    return F.normalize(glob, dim=1), F.normalize(dense_pooled, dim=1)


def test_densecl_queues_receive_the_official_keys() -> None:
    torch.manual_seed(0)
    model = DenseCL("resnet18", queue_size=8, proj_dim=16, hidden_dim=32)
    model.eval()  # running statistics: each key depends on its own image only
    g = torch.Generator().manual_seed(1)
    batch = {"view1": torch.randn(4, 3, 96, 96, generator=g), "view2": torch.randn(4, 3, 96, 96, generator=g)}
    with torch.no_grad():
        k_glob, k_dense = _official_keys(model, batch["view2"])
        fmap = model.key_backbone.forward_features(batch["view2"])
        per_location = F.normalize(model.key_dense_head(fmap).flatten(2), dim=1)
        old_rule = F.normalize(per_location.mean(dim=2), dim=1)  # mean of normalised projections
    model.training_loss(batch)
    assert torch.allclose(model.queue.queue[:4], k_glob, atol=1e-5)
    assert torch.allclose(model.dense_queue.queue[:4], k_dense, atol=1e-5)
    assert not torch.allclose(k_dense, old_rule, atol=1e-3)  # the two orderings differ on a 3×3 map
    assert int(model.dense_queue.ptr) == 4


# ------------------------------------------------------------------ shuffling BatchNorm
def _revealing_bn(n: int) -> nn.Module:
    """BatchNorm over one-hot inputs: row i of the output is non-zero exactly at the samples of i's BN batch."""
    return nn.BatchNorm1d(n, affine=False, track_running_stats=False)


def _groups_seen(out: torch.Tensor) -> list[frozenset[int]]:
    return [frozenset(torch.nonzero(row.abs() > 1e-3).flatten().tolist()) for row in out]


def _bn_of_group(n: int, i: int, members: frozenset[int], eps: float = 1e-5) -> torch.Tensor:
    """Row i of a BatchNorm over the one-hot rows ``members``, written out."""
    s = len(members)
    row = torch.zeros(n)
    for j in members:
        mean, var = 1 / s, (1 / s) * (1 - 1 / s)
        row[j] = ((1.0 if j == i else 0.0) - mean) / math.sqrt(var + eps)
    return row


@pytest.mark.parametrize(("n", "groups", "size"), [(8, 2, 4), (8, 4, 2), (6, 3, 2), (4, 2, 2), (12, 8, 2)])
def test_shuffled_keys_never_share_their_query_devices_statistics(n: int, groups: int, size: int) -> None:
    bn = _revealing_bn(n)
    seen_blocks = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = shuffled_key_forward(bn, torch.eye(n), groups)
        for i, members in enumerate(_groups_seen(out)):
            device = frozenset(range(i // size * size, i // size * size + size))  # query i's virtual device
            assert i in members and len(members) == size  # unshuffled: row i is sample i, BN over `size` samples
            assert members != device  # never normalised with exactly its query's batch
            assert torch.allclose(out[i], _bn_of_group(n, i, members), atol=1e-4)
            seen_blocks.add(members)
    assert len(seen_blocks) > n // size  # the blocks change from step to step


def test_group_count_is_capped_and_small_batches_are_not_split() -> None:
    assert [effective_groups(n, 8) for n in (2, 3, 4, 5, 6, 8, 12, 16, 256)] == [1, 1, 2, 1, 3, 4, 6, 8, 8]
    assert effective_groups(16, 1) == 1
    out = shuffled_key_forward(_revealing_bn(5), torch.eye(5), 8)  # 5 samples: one batch
    assert all(m == frozenset(range(5)) for m in _groups_seen(out))


def test_permutation_repair_rule() -> None:
    for seed in range(200):
        torch.manual_seed(seed)
        perm = shuffle_permutation(4, 2)
        assert sorted(perm.tolist()) == [0, 1, 2, 3]
        assert all(len({int(v) // 2 for v in block}) > 1 for block in perm.view(2, 2))


@pytest.mark.parametrize("cls", [MoCoV2, DenseCL])
def test_methods_forward_keys_in_shuffled_blocks(cls: type) -> None:
    torch.manual_seed(0)
    model = cls("resnet18", queue_size=16, proj_dim=8, hidden_dim=16, shuffle_groups=2, seed=7)
    x = torch.randn(4, 3, 64, 64)
    model.train()
    model.on_step_start(3, 10)  # the shuffle of a step depends on (seed, step) only: exact resumption
    perm = shuffle_permutation(4, 2, generator=step_generator(7, 3))
    torch.manual_seed(123)  # the global RNG plays no part
    if cls is MoCoV2:
        keys = model.embed_key(x)

        def plain(t: torch.Tensor) -> torch.Tensor:
            return F.normalize(model.key_head(model.key_backbone(t)), dim=1)
    else:
        keys = model._keys(x)[0]

        def plain(t: torch.Tensor) -> torch.Tensor:
            return model._forward(t, model.key_backbone, model.key_head, model.key_dense_head)[0]
    with torch.no_grad():
        expected = torch.empty_like(keys)
        for block in perm.view(2, 2):
            expected[block] = plain(x[block])
        whole = plain(x)
    assert torch.allclose(keys, expected, atol=1e-5)
    assert not torch.allclose(keys, whole, atol=1e-3)
    model.shuffle_bn = False
    off = model.embed_key(x) if cls is MoCoV2 else model._keys(x)[0]
    assert torch.allclose(off, whole, atol=1e-5)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = []
        for seed in range(6):
            torch.manual_seed(seed * 10 + rank)  # ranks draw different permutations: rank 0's is broadcast
            x = torch.eye(8)[rank * 4:(rank + 1) * 4]
            results.append(shuffled_key_forward(_revealing_bn(8), x, groups=99))
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~40 s on the shared CPU
def test_ddp_shuffle_across_ranks() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.start_processes(_ddp_worker, args=(2, free_port(), tmp), nprocs=2, join=True, start_method="spawn")
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for step in range(6):
        blocks: set[frozenset[int]] = set()
        for rank in range(2):
            for j, members in enumerate(_groups_seen(ranks[rank][step])):
                i = rank * 4 + j
                assert i in members and len(members) == 4  # one rank's worth, row back at its sample
                assert members != frozenset(range(rank * 4, rank * 4 + 4))  # not this rank's own queries
                blocks.add(members)
        assert len(blocks) == 2 and frozenset().union(*blocks) == frozenset(range(8))  # one shared permutation


# ------------------------------------------------------------------ head initialisation
def test_head_inits_follow_the_originals() -> None:
    torch.manual_seed(0)
    moco = MLPHead(512, 512, 128)  # MoCo v2: plain nn.Linear, PyTorch default U(±1/sqrt(fan_in))
    bound = 1 / math.sqrt(512)
    assert float(moco[0].weight.detach().abs().max()) <= bound and float(moco[0].bias.detach().abs().max()) > 0
    assert float(moco[0].weight.detach().std()) == pytest.approx(bound / math.sqrt(3), rel=0.02)
    dense = MLPHead(512, 512, 128, init="kaiming")  # DenseCL: kaiming_init(mode='fan_in'), bias 0
    for lin in (dense[0], dense[2]):
        assert float(lin.weight.detach().std()) == pytest.approx(math.sqrt(2 / 512), rel=0.02)
        assert float(lin.weight.detach().mean()) == pytest.approx(0.0, abs=3e-3)
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    conv = ConvHead(512, 512, 128)[0]  # DenseCL's 1×1 convs keep PyTorch's default (kaiming_uniform a=√5)
    assert float(conv.weight.detach().abs().max()) <= bound and float(conv.weight.detach().std()) == pytest.approx(
        bound / math.sqrt(3), rel=0.02)
    model = DenseCL("resnet18", queue_size=4, proj_dim=128, hidden_dim=512)
    assert torch.equal(model.head[0].bias, torch.zeros(512)) and torch.equal(model.key_head[0].weight,
                                                                             model.head[0].weight)
    assert float(MoCoV2("resnet18", queue_size=4).head[0].bias.detach().abs().max()) > 0


def test_step_generator_fixes_the_permutation() -> None:
    draws = {s: shuffle_permutation(16, 4, generator=step_generator(0, s)).tolist() for s in range(6)}
    assert draws[2] == shuffle_permutation(16, 4, generator=step_generator(0, 2)).tolist()
    assert len({tuple(v) for v in draws.values()}) == 6  # a new permutation every step
    assert shuffle_permutation(16, 4, generator=step_generator(1, 2)).tolist() != draws[2]  # and per seed
