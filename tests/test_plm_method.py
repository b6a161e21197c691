"""The PLM method: λ = 0 is MoCo v2, the momentum encoder covers backbone + heads + φ, grid checks, CLI smoke run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pathseg.cli.main import main
from pathseg.errors import ConfigError
from pathseg.models import read_encoder
from pathseg.ssl.mocov2 import MoCoV2
from pathseg.ssl.plm import DenseMatchingLoss, grid_boxes, overlap_fractions
from pathseg.ssl.plm.model import PLM
from ssl_helpers import make_unlabeled, one_thread

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
_threads = pytest.fixture(autouse=True)(one_thread)


def batch(n: int = 4, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for _ in range(2):
        tl = torch.rand(n, 2, generator=gen) * 0.4
        hw = 0.4 + torch.rand(n, 2, generator=gen) * 0.5
        flips = (torch.rand(n, 2, generator=gen) < 0.5).float()
        crops.append(torch.cat([tl, hw.clamp(max=1 - tl), flips, torch.randint(0, 4, (n, 1), generator=gen)], 1))
    x1, x2 = torch.randn(2, n, 3, size, size, generator=gen)
    return {"view1": x1, "view2": x2, "crop1": crops[0], "crop2": crops[1]}


def test_lambda_zero_is_mocov2() -> None:
    torch.manual_seed(0)
    moco = MoCoV2("resnet18", queue_size=32, momentum=0.9, shuffle_bn=True, shuffle_groups=2)
    plm = PLM("resnet18", queue_size=32, momentum=0.9, loss_lambda=0.0, shuffle_bn=True, shuffle_groups=2)
    for a, b in ((plm.backbone, moco.backbone), (plm.head, moco.head), (plm.key_backbone, moco.key_backbone),
                 (plm.key_head, moco.key_head)):
        a.load_state_dict(b.state_dict())
    plm.queue.queue.copy_(moco.queue.queue)
    data = batch()
    for step in range(2):  # two steps: the momentum update and the queue agree as well
        moco.on_step_start(step, 2)
        plm.on_step_start(step, 2)
        torch.manual_seed(10 + step)  # same shuffle-BN permutation
        lm = moco.training_loss(data)["loss"]
        torch.manual_seed(10 + step)
        out = plm.training_loss(data)
        assert float(out["loss"].detach()) == pytest.approx(float(lm.detach()), rel=1e-5)
        assert float(out["loss_global"]) == pytest.approx(float(lm.detach()), rel=1e-5)
        assert float(out["loss_dense"]) > 0  # computed, but weighted by λ = 0
        lm.backward()
        out["loss"].backward()
        for (name, pm), pp in zip(moco.backbone.named_parameters(), plm.backbone.parameters()):
            assert torch.allclose(pm.grad, pp.grad, rtol=1e-4, atol=1e-6), name  # type: ignore[arg-type]
        with torch.no_grad():
            for m in (moco, plm):
                for p in m.trainable_parameters():
                    p -= 0.1 * p.grad  # type: ignore[operator]
                    p.grad = None
        assert torch.allclose(plm.queue.queue, moco.queue.queue, atol=1e-5)


def test_momentum_update_covers_backbone_heads_and_phi() -> None:
    torch.manual_seed(0)
    m = 0.9
    plm = PLM("resnet18", queue_size=16, momentum=m, shuffle_bn=False)
    query_ids = {id(p) for p in plm.trainable_parameters()}
    expected = [plm.backbone, plm.head, plm.dense_head, plm.phi]
    assert query_ids == {id(p) for mod in expected for p in mod.parameters()}
    key0 = {f"{i}.{n}": p.clone() for i, (k, _) in enumerate(plm.momentum_pairs()) for n, p in k.named_parameters()}
    opt = torch.optim.SGD(plm.trainable_parameters(), lr=0.5)
    plm.training_loss(batch())["loss"].backward()
    opt.step()
    plm.on_step_start(1, 10)
    names = [type(q).__name__ for _, q in plm.momentum_pairs()]
    assert len(names) == 4 and names[-1] == "Linear"  # φ is part of the momentum encoder
    for i, (key, query) in enumerate(plm.momentum_pairs()):
        for (name, pk), pq in zip(key.named_parameters(), query.parameters()):
            k0 = key0[f"{i}.{name}"]
            assert not pk.requires_grad
            assert torch.allclose(pk, m * k0 + (1 - m) * pq.detach(), atol=1e-6), (names[i], name)
        moved = [not torch.equal(k0, q) for (n, _), q in zip(key.named_parameters(), query.parameters())
                 for k0 in [key0[f"{i}.{n}"]]]
        assert any(moved), names[i]  # the query moved, so the check is not trivial


def test_dense_term_uses_row_major_cells_and_the_recorded_geometry() -> None:
    torch.manual_seed(0)
    plm = PLM("resnet18", queue_size=16, shuffle_bn=False, loss_lambda=1.0).eval()
    data = batch(n=2, size=96)
    with torch.no_grad():
        _, zq, fmap = plm.encode(data["view1"])
        dense = plm.dense_head(fmap)  # [B, D, 3, 3]
        assert torch.equal(zq[1, 1 * 3 + 2], dense[1, :, 1, 2])  # cell r·G + c
        _, zk, _ = plm.encode(data["view2"], key=True)
        pq, pk = overlap_fractions(grid_boxes(data["crop1"], 3), grid_boxes(data["crop2"], 3))
        want = DenseMatchingLoss(0.2)(zq, zk, pq, pk, plm.phi, plm.key_phi, plm.dense_queue.queue.clone())
        queue_before = plm.dense_queue.queue.clone()
        out = plm.training_loss(data)
    assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)
    assert float(out["coverage"]) == pytest.approx(float(pq.sum(-1).mean()), rel=1e-6)
    # the dense queue receives the normalised mean of the raw key projections
    assert torch.allclose(plm.dense_queue.queue[:2], F.normalize(zk.mean(1), dim=1), atol=1e-6)
    assert not torch.allclose(plm.dense_queue.queue[:2], queue_before[:2])


def test_grid_is_checked_at_run_time() -> None:
    plm = PLM("resnet18", queue_size=16, shuffle_bn=False)
    with pytest.raises(ConfigError, match="multiple of 32"):
        plm.training_loss(batch(n=2, size=72))
    plm.grid_size = 7
    with pytest.raises(ConfigError, match="grid_size is 7"):
        plm.training_loss(batch(n=2, size=64))
    with pytest.raises(ConfigError, match="CNN"):
        PLM("vit_tiny_patch16_224")


def test_tiny_config_cli_run_and_export(tmp_path: Path) -> None:
    data = make_unlabeled(tmp_path / "data", n=4, size=72)
    run = tmp_path / "run"
    rc = main(["pretrain", "--config", str(CONFIGS / "plm_cpu_tiny.yaml"), "--data", str(data), "--out", str(run),
               "--batch-size", "4", "trainer.max_steps=3", "trainer.log_every_n_steps=1", "checkpoint.every_n_steps=0"])
    assert rc in (0, None)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "plm" and metrics["steps"] == 3 and metrics["final_loss"] > 0
    with (run / "logs" / "version_0" / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/coverage")]
    assert rows and all(0 <= float(r["train/coverage"]) <= 1 for r in rows)
    loss = [float(r["train/loss"]) for r in rows]
    mix = [0.5 * float(r["train/loss_global"]) + 0.5 * float(r["train/loss_dense"]) for r in rows]
    assert loss == pytest.approx(mix, rel=1e-4)  # (1 - λ)·L_G + λ·L_D with λ = 0.5
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(run), "--out", str(out)]) in (0, None)
    state, meta = read_encoder(out)
    auto, _ = read_encoder(run / "encoder.safetensors")
    assert meta.timm_name == "resnet18" and meta.get("method") == "plm"
    assert set(state) == set(auto) and all(torch.equal(state[k], auto[k]) for k in state)
    import timm

    assert set(state) == set(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict())


def test_default_config_holds_the_spec_hyper_parameters(tmp_path: Path) -> None:
    from pathseg.config import load_config
    from pathseg.ssl.config import PretrainConfig
    from pathseg.ssl.engine import method_config

    cfg = load_config(PretrainConfig, CONFIGS / "plm.yaml", overrides=[f"data={tmp_path}", f"out={tmp_path / 'r'}"])
    _, m = method_config(cfg)
    assert (cfg.backbone, cfg.crop_size, cfg.batch_size, cfg.trainer.max_epochs) == ("resnet18", 224, 256, 200)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum) == ("sgd", 0.03, 1e-4, 0.9)
    assert (m.queue_size, m.momentum, m.temperature, m.loss_lambda, m.proj_dim, m.grid_size) == (
        16384, 0.999, 0.2, 0.5, 128, 7)
    assert m.views.scale == (0.2, 1.0) and m.views.hflip and not m.views.vflip and not m.views.rot90
    assert m.views.hed_sigma == 0 and m.shuffle_bn and m.dense_normalize == "mean"


def test_original_backbone_init() -> None:
    torch.manual_seed(0)
    timm_init = PLM("resnet18", queue_size=16, shuffle_bn=False)
    zeros = [float(b.bn2.weight.detach().abs().sum()) for b in timm_init.backbone.layer1]  # type: ignore[union-attr]
    assert zeros == [0.0, 0.0]  # timm zero-initialises the last BN of each block
    plm = PLM("resnet18", queue_size=16, shuffle_bn=False, backbone_init="original")
    for mod in plm.backbone.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    conv = plm.backbone.layer3[0].conv2  # type: ignore[index]
    fan_in = conv.weight[0].numel()
    assert float(conv.weight.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.equal(plm.key_backbone.layer3[0].conv2.weight, conv.weight)  # type: ignore[index]
