"""UNIT losses and method: each term's gradients, one full CPU step at 64 px, stage 2, export, pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pathseg.ssl.unit import losses as L
from ssl_helpers import build_unit, one_thread

TINY = {"g_width": 2, "g_max_channels": 8, "z_dim": 8, "mapping_layers": 2, "skip_resolution": 32, "fpn_dim": 8,
        "decoder_hidden": [8, 8], "ds_width": 4, "ds_layers": 3, "r1_interval": 1, "picture_every": 1,
        "masks": {"mpp": 0.5}}


_threads = pytest.fixture(autouse=True)(one_thread)


def _build(tmp: Path, **args: Any) -> tuple[Any, Any]:
    return build_unit(tmp, TINY, extra={"out": str(tmp / "run")}, **args)


def test_instance_guidance_hand_computed() -> None:
    pred = torch.tensor([[[[0.0, 2.0]], [[0.5, -1.0]]]])  # [1, 2, 1, 2]
    fg, dist = torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[0.0, 0.25]]])
    bce = (np.log(2) + np.log(1 + np.exp(-2.0))) / 2
    assert abs(float(L.instance_guidance(pred, fg, dist)) - (bce + 1.25**2)) < 1e-6
    values = {"adv_g": 1.0, "adv_s": 3.0, "cyc_x": 0.5, "cyc_y": 1.5, "seg": 2.0}
    terms = {k: torch.tensor(v) for k, v in values.items()}
    assert abs(float(L.combine(terms, L.LossWeights())) - (0.5 * 4 + 10 * 0.5 * 2 + 6 * 2)) < 1e-6


def _grads(method: Any, batch: dict, drop: str | None) -> dict[str, torch.Tensor]:
    method.zero_grad(set_to_none=True)
    for d in (method.d_g, method.d_s):
        d.requires_grad_(False)
    torch.manual_seed(1)
    terms, _ = method.generator_terms(batch, step=0)
    terms.pop(drop, None)
    L.combine(terms, method.weights).backward()
    parts = {"g": method.g, "trunk": method.s.trunk, "decoder": method.s.decoder, "instance": method.s.instance}
    return {k: torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in m.parameters()])
            for k, m in parts.items()}


@pytest.mark.slow
def test_each_term_changes_only_its_gradients(tmp_path: Path) -> None:
    method, batch = _build(tmp_path, ada=False)
    full = _grads(method, batch, None)
    touched = {"adv_g": {"g"}, "adv_s": {"trunk", "decoder"}, "cyc_x": {"g", "trunk", "decoder"},
               "cyc_y": {"g", "trunk", "decoder"}, "seg": {"g", "trunk", "instance"}}
    for term, parts in touched.items():
        off = _grads(method, batch, term)
        for name in full:
            same = torch.allclose(full[name], off[name], atol=1e-7, rtol=1e-5)
            assert same != (name in parts), (term, name)
    assert full["instance"].abs().sum() > 0 and _grads(method, batch, "seg")["instance"].abs().sum() == 0


def test_discriminator_losses_reach_only_discriminators(tmp_path: Path) -> None:
    method, batch = _build(tmp_path)
    with torch.no_grad():
        _, images = method.generator_terms(batch, step=0)
    method.zero_grad(set_to_none=True)
    d_terms = method.discriminator_terms(images, step=0)
    assert {"d_s", "r1_s", "d_g", "r1_g"} <= set(d_terms)
    sum(v for k, v in d_terms.items() if not k.startswith("real_")).backward()
    assert all(p.grad is None for p in [*method.g.parameters(), *method.s.parameters()])
    assert all(p.grad is not None for p in [*method.d_g.parameters(), *method.d_s.parameters()])


def test_one_training_step(tmp_path: Path) -> None:
    method, batch = _build(tmp_path)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    opts = method.build_optimizers(1e-3, 0.0)
    out = method.manual_step(batch, opts, 0, lambda loss: loss.backward())
    assert {"loss", "adv_g", "adv_s", "cyc_x", "cyc_y", "seg", "d_g", "d_s", "ada_p"} <= set(out)
    after = method.state_dict()
    for prefix in ("g.", "s.trunk.", "s.decoder.", "s.instance.", "d_g.", "d_s."):
        keys = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()]
        assert any(not torch.equal(before[k], after[k]) for k in keys), prefix
    k = "g.mapping.net.0.weight"
    beta = 0.5 ** (2 / 20000.0)
    assert torch.allclose(after[f"g_ema.{k[2:]}"], beta * before[k] + (1 - beta) * after[k], atol=1e-7)
    assert abs(float(out["ada_p"]) - 2 / 500000 * (1 if float(out["real_logit_g"]) != 0 else 0)) < 1e-9 or \
        float(out["ada_p"]) == 0.0
    pic = tmp_path / "run" / "pictures" / "step0000000.png"
    from pathseg.io import read_rgb

    assert read_rgb(pic).shape == (2 * 66, 6 * 66, 3)
    import timm

    ref = timm.create_model("resnet18", pretrained=False, num_classes=0)
    ref.load_state_dict(method.export_state(), strict=True)
    assert method.export_extra()["unit_guidance"] == "proposal_free"


def test_stage2_loads_frozen_ema_generator(tmp_path: Path) -> None:
    stage1, batch = _build(tmp_path)
    with torch.no_grad():
        for p in stage1.g_ema.parameters():
            p.add_(0.5)
    ckpt = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"method.{k}": v for k, v in stage1.state_dict().items()}}, ckpt)
    stage2, _ = _build(tmp_path, stage="2", generator_file=str(tmp_path / "s1"))
    for k, v in stage1.g_ema.state_dict().items():
        assert torch.equal(stage2.g.state_dict()[k], v)
    assert stage2.d_g is None and stage2.g_ema is None
    assert not any(p.requires_grad for p in stage2.g.parameters())
    g_before = {k: v.clone() for k, v in stage2.g.state_dict().items()}
    s_before = stage2.s.decoder.out.weight.clone()
    out = stage2.manual_step(batch, stage2.build_optimizers(1e-3, 0.0), 1, lambda loss: loss.backward())
    assert "adv_g" not in out and "seg" in out
    assert all(torch.equal(v, stage2.g.state_dict()[k]) for k, v in g_before.items())
    assert not torch.equal(s_before, stage2.s.decoder.out.weight)


@pytest.mark.slow
def test_engine_smoke_stage1_stage2(tmp_path: Path) -> None:
    from pathseg.cli.main import main

    _build(tmp_path)  # writes tmp/real
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "unit_cpu_tiny.yaml")
    assert main(["pretrain", "--config", cfg, "--data", str(tmp_path / "real"), "--out", str(tmp_path / "r1"),
                 "batch_size=1"]) in (0, None)
    assert main(["pretrain", "--config", cfg, "--data", str(tmp_path / "real"), "--out", str(tmp_path / "r2"),
                 "batch_size=1", "method_args.stage=2", f"method_args.generator_file={tmp_path / 'r1'}"]) in (0, None)
    assert (tmp_path / "r2" / "encoder.safetensors").is_file()
