"""Two CPU processes (gloo DDP) give the same losses, gradients and queues as one process on the global batch.

BatchNorm layers are put in eval mode so that every sample's embedding depends on itself only (per-device BN
statistics would otherwise differ by construction; SyncBN, which removes that difference, needs GPUs). What is
tested is the cross-rank part: gathered keys filling the queue in rank order, negatives identical on every rank,
and DDP's gradient averaging of per-rank mean losses.
"""

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

STEPS = 2
GLOBAL_BATCH = 8


def _make(method: str) -> Any:
    from pathseg.ssl.densecl import DenseCL
    from pathseg.ssl.mocov2 import MoCoV2

    torch.manual_seed(0)
    cls = MoCoV2 if method == "mocov2" else DenseCL
    model = cls("resnet18", queue_size=32, momentum=0.9, proj_dim=16, hidden_dim=32)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [{"view1": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g),
             "view2": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g)} for _ in range(STEPS)]


class _Wrap(nn.Module):
    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.method.training_loss(batch)["loss"]


def _train(model: Any, batches: list[dict[str, torch.Tensor]], rank: int, world: int) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    wrapped: nn.Module = _Wrap(model)
    if world > 1:
        wrapped = DDP(wrapped, broadcast_buffers=False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    losses, grads = [], {}
    per = GLOBAL_BATCH // world
    extra: dict[str, torch.Tensor] = {}
    for step, batch in enumerate(batches):
        local = {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}
        model.on_step_start(step, STEPS)
        if step == 0:  # the keys of the whole global batch, straight from the key encoder (BN in eval mode)
            with torch.no_grad():
                feat = model.key_backbone.forward_features(batch["view2"]).mean((2, 3))
                extra["global_keys"] = torch.nn.functional.normalize(model.key_head(feat), dim=1)
        opt.zero_grad()
        loss = wrapped(local)
        loss.backward()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        if step == 0:
            extra["queue_after_first"] = model.queue.queue[:GLOBAL_BATCH].clone()
    return {"losses": losses, "grads": grads, "state": {k: v.clone() for k, v in model.state_dict().items()},
            **extra}


def _worker(rank: int, world: int, port: int, method: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = _train(_make(method), _batches(), rank, world)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["mocov2", "densecl"])
def test_two_ranks_equal_one_process(method: str) -> None:
    torch.set_num_threads(1)
    single = _train(_make(method), _batches(), 0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.start_processes(_worker, args=(2, free_port(), method, tmp), nprocs=2, join=True,
                           start_method="spawn")
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for res in ranks:  # every rank's queue holds the keys of both ranks' samples, in rank order
        assert torch.allclose(res["queue_after_first"], single["global_keys"], atol=1e-5)
        assert res["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
        assert set(res["grads"]) == set(single["grads"])
        for name, g in single["grads"].items():
            assert torch.allclose(res["grads"][name], g, rtol=1e-4, atol=1e-6), name
        for name, v in single["state"].items():  # queues filled in rank order, same weights after the steps
            assert torch.allclose(res["state"][name].float(), v.float(), rtol=1e-4, atol=1e-5), name
