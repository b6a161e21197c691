"""URL stages end to end with Lightning on a tiny synthetic data set: stage 1 → export → stage 2 → export."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from url_helpers import make_dataset

from pathseg.errors import ConfigError, DataError
from pathseg.ssl.url.config import SuperpixelConfig, URLConfig, ViewConfig
from pathseg.ssl.url.method import (
    URLModule,
    build_url_dataset,
    build_url_model,
    export_url,
    make_objective,
)
from pathseg.ssl.url.model import load_unet_weights


def _cfg(stage: str, **kw: str) -> URLConfig:
    views = ViewConfig(crop_size=64, patch_size=96, scales=[1.0, 0.5, 2.0])
    return URLConfig(stage=stage, views=views, superpixels=SuperpixelConfig(region_size=12), **kw)  # type: ignore[arg-type]


def _fit(cfg: URLConfig, root: Path, out: Path) -> Path:
    model = build_url_model(cfg)
    loader = DataLoader(build_url_dataset(cfg, root, progress=False), batch_size=2, drop_last=True)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(URLModule(model, make_objective(cfg)), loader)
    return export_url(model, cfg, out)


def test_two_stages_and_joint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = make_dataset(tmp_path, n=2, size=112)
    s1 = _fit(_cfg("1"), root, tmp_path / "s1")
    cfg2 = _cfg("2", stage1_checkpoint=str(tmp_path / "s1"))
    model2 = build_url_model(cfg2)
    enc_before = {k: v.clone() for k, v in model2.encoder.state_dict().items()}
    from safetensors.torch import load_file

    stored = load_file(str(s1))
    assert all(torch.equal(v, stored[f"encoder.{k}"]) for k, v in enc_before.items())  # stage 2 starts from stage 1
    s2 = _fit(cfg2, root, tmp_path / "s2")
    after = load_file(str(s2))
    assert all(torch.equal(after[f"encoder.{k}"], v) for k, v in enc_before.items())  # frozen, BN stats included
    assert any(k.startswith("decoder.") for k in after)
    import segmentation_models_pytorch as smp

    unet = smp.Unet(encoder_name="tu-resnet18", encoder_weights=None, classes=2)
    assert any(k.startswith("decoder.") for k in load_unet_weights(unet, s2))
    joint = _fit(_cfg("joint"), root, tmp_path / "joint")
    assert joint.is_file()


def test_stage2_needs_a_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stage1_checkpoint"):
        build_url_model(_cfg("2"))
    with pytest.raises(DataError, match="url_unet"):
        build_url_model(_cfg("2", stage1_checkpoint=str(tmp_path)))
