"""Instance validation under data-parallel processes scores the whole split, not each rank's shard.

Two gloo processes each score the shard that Lightning's ``DistributedSampler`` gives them (one image padded by
repetition to make the shards equal), gather with :meth:`InstanceMetricAccumulator.sync`, and must both report
exactly the metrics one process computes over all images once each.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler

from ddp_helpers import free_port
from pathseg.metrics import InstanceMetricAccumulator

N_IMAGES = 5  # odd: the sampler pads rank 1 with a copy of image 0


def _maps(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    true = np.zeros((32, 32), np.int64)
    pred = np.zeros_like(true)
    for k in range(1, 4 + i):
        y, x = rng.integers(0, 26, 2)
        true[y:y + 6, x:x + 6] = k
        dy, dx = rng.integers(-2, 3, 2)
        pred[max(0, y + dy):y + dy + 5, max(0, x + dx):x + dx + 7] = 10 * k + i
    return pred, true


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        acc = InstanceMetricAccumulator()
        shard = list(DistributedSampler(range(N_IMAGES), num_replicas=world, rank=rank, shuffle=False))
        for i in shard:
            acc.update(*_maps(i), key=i)
        local = acc.compute()
        acc.sync()
        record = {"local": local, "synced": acc.compute(), "keys": acc.keys, "shard": shard}
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def test_sync_merges_shards_and_drops_sampler_padding() -> None:
    single = InstanceMetricAccumulator()
    for i in range(N_IMAGES):
        single.update(*_maps(i), key=i)
    expected = single.compute()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, free_port(), tmp), nprocs=2, join=True)
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(ranks[0]["shard"] + ranks[1]["shard"]) == [0, 0, 1, 2, 3, 4]  # the padding is really there
    for r in ranks:
        assert r["keys"] == list(range(N_IMAGES))
        assert r["synced"] == json.loads(json.dumps(expected))
    assert ranks[0]["local"]["num_images"] == 3 and ranks[0]["local"] != expected


def test_sync_without_process_group_is_a_no_op() -> None:
    acc = InstanceMetricAccumulator()
    acc.update(*_maps(0), key=0)
    before = acc.compute()
    acc.sync()
    assert acc.compute() == before and acc.keys == [0]


class ThresholdModel(torch.nn.Module):
    """A classical predictor: connected components of the dark pixels. Its scores differ from image to image
    (touching discs merge), so a rank that scored only its own shard would log other numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Conv2d(3, 1, 1)

    def predict(self, images: torch.Tensor) -> list[object]:
        from scipy import ndimage

        from pathseg.tasks.instance.types import InstancePrediction

        dark = (images.mean(1) < 0).cpu().numpy()
        return [InstancePrediction(ndimage.label(d)[0].astype(np.int32)) for d in dark]


def _validate(root: Path, devices: int) -> dict[str, float]:
    import lightning as L
    from torch.utils.data import DataLoader

    from pathseg.tasks.instance.dataset import InstanceDataset, collate_instances
    from pathseg.tasks.instance.module import InstanceModule

    module = InstanceModule(ThresholdModel(), monitor="aji")
    data = InstanceDataset(root, "val", targets="hover", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(root.parent))
    [logged] = trainer.validate(module, DataLoader(data, batch_size=1, collate_fn=collate_instances))
    return logged


@pytest.mark.slow
def test_lightning_ddp_validation_logs_whole_split_metrics(tmp_path: Path) -> None:
    from pathseg.tasks.instance.dataset import InstanceDataset
    from test_tasks_instance import make_instance_set

    root = make_instance_set(tmp_path / "ds", n=3, size=64, seed=3)
    one, two = _validate(root, 1), _validate(root, 2)
    rank0_only = InstanceMetricAccumulator()  # what rank 0 alone would log: images 0 and 2
    data = InstanceDataset(root, "val", targets="hover", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    for i in (0, 2):
        x, target = data[i]
        rank0_only.update(ThresholdModel().predict(x[None])[0].instances, target["instances"].numpy())  # type: ignore[attr-defined]
    assert rank0_only.compute()["aji"] != pytest.approx(one["val_aji"], abs=1e-3)  # the shards really differ
    assert set(one) == set(two) and "val_aji" in one
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-6), key
