"""Two CPU processes (gloo DDP): every rank ends with the same banks, k-means labels and generator state, and the
banks hold both ranks' embeddings (all-gathered updates)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ddp_helpers import free_port

pytestmark = pytest.mark.slow  # two spawned processes importing torch + timm: tens of seconds on a busy CPU


def _make() -> Any:
    from pathseg.ssl.sgcl.method import SGCL

    torch.manual_seed(0)
    rr, cc = torch.meshgrid(torch.arange(5), torch.arange(4), indexing="ij")
    xy = torch.stack([rr.reshape(-1), cc.reshape(-1)], 1).repeat(2, 1).float()
    model = SGCL("resnet18", torch.arange(2).repeat_interleave(20), xy, num_negatives=8, nei_k=3, kmeans_k=3,
                 kmeans_iters=3, hidden_dim=16, proj_dim=8)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = _make()
        g = torch.Generator().manual_seed(10 + rank)  # different images on each rank
        for step, idx in enumerate([[rank, 10 + rank], [20 + rank, 30 + rank]]):
            model.on_epoch_start(step)  # two epochs: k-means twice
            index = torch.tensor(idx)
            batch = {"global": torch.randn(2, 3, 32, 32, generator=g),
                     "local": torch.randn(2, 4, 3, 16, 16, generator=g), "index": index,
                     "slide": model.bank_slide[index], "pos": model.bank_xy[index]}
            model.on_step_start(step, 2)
            model.training_loss(batch)["loss"].backward()
        torch.save({k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("backbone", "head"))},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_share_banks_labels_and_rng() -> None:
    fresh = _make().state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.start_processes(_worker, args=(2, free_port(), tmp), nprocs=2, join=True, start_method="spawn")
        r0, r1 = (torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2))
    for key, value in r0.items():
        assert torch.equal(value, r1[key]), key
    assert int(r0["clustered_epoch"]) == 1
    changed = (r0["bank_global.bank"] != fresh["bank_global.bank"]).any(1)
    assert torch.nonzero(changed).flatten().tolist() == [0, 1, 10, 11, 20, 21, 30, 31]
