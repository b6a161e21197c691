"""URL network: heads, frozen encoder with frozen BatchNorm statistics, U-Net export/import, stage objectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pathseg.errors import PathsegError
from pathseg.ssl.url.config import HE_MEAN, HE_STD
from pathseg.ssl.url.model import URLNet, build_unet, export_unet, load_unet_weights
from pathseg.ssl.url.objective import URLObjective


@pytest.fixture(scope="module")
def net() -> URLNet:
    torch.manual_seed(0)
    return URLNet("resnet18")


def test_heads_shapes(net: URLNet) -> None:
    x = torch.randn(2, 3, 64, 64)
    assert net.embed_global(x).shape == (2, 128)
    assert net.embed_dense(x).shape == (2, 32, 32, 32)
    dense, glob = net(x)
    assert dense.shape == (2, 32, 32, 32) and glob.shape == (2, 128)
    assert net.global_head.bias is None
    convs = list(net.dense_head)
    assert len(convs) == 2 and all(isinstance(c, torch.nn.Conv2d) for c in convs)  # no nonlinearity between


@pytest.mark.parametrize("bn_eval", [True, False])
def test_frozen_encoder_statistics(bn_eval: bool) -> None:
    torch.manual_seed(0)
    model = URLNet("resnet18")
    model.freeze_encoder(bn_eval=bn_eval)
    model.train()
    bn = model.encoder.model.bn1
    before = bn.running_mean.clone()
    out = model.embed_dense(torch.randn(2, 3, 64, 64) * 3 + 1)
    out.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None for p in model.decoder.parameters())
    assert torch.equal(bn.running_mean, before) == bn_eval  # parity (bn_eval=False): the original's drift
    assert model.decoder.training


def test_stage2_export_loads_encoder_and_decoder_into_a_finetune_unet(net: URLNet, tmp_path: Path) -> None:
    path = export_unet(net, tmp_path / "url_unet.safetensors", stage="2", mean=HE_MEAN, std=HE_STD)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        keys = list(fh.keys())
    assert meta["format"] == "pathseg.unet" and meta["encoder"] == "resnet18" and meta["parts"] == "encoder,decoder"
    assert meta["timm_name"] == "resnet18" and json.loads(meta["mean"]) == list(HE_MEAN)
    assert any(k.startswith("decoder.") for k in keys) and not any(k.startswith("segmentation_head") for k in keys)

    import segmentation_models_pytorch as smp

    target = smp.Unet(encoder_name="tu-resnet18", encoder_weights=None, classes=3)
    loaded = load_unet_weights(target, path)
    assert len(loaded) == len(keys)
    src, dst = net.unet.state_dict(), target.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in keys)

    stage1 = export_unet(net, tmp_path / "enc.safetensors", stage="1", mean=HE_MEAN, std=HE_STD)
    fresh = URLNet("resnet18")
    assert all(k.startswith("encoder.") for k in load_unet_weights(fresh, stage1))


def test_mismatched_export_is_a_clear_error(net: URLNet, tmp_path: Path) -> None:
    path = export_unet(net, tmp_path / "u.safetensors", stage="2", mean=HE_MEAN, std=HE_STD)
    other = build_unet("resnet18", decoder_channels=(128, 64, 32, 16, 8))
    with pytest.raises(PathsegError, match="do not fit"):
        load_unet_weights(other, path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(PathsegError):
        load_unet_weights(other, tmp_path / "junk.safetensors")


def _batch(b: int = 2, s: int = 3, c: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = (torch.arange(c // 2).view(-1, 1) // 4 * 10 + torch.arange(c // 2).view(1, -1) // 4).expand(b, -1, -1)
    return {
        "scales1": torch.randn(b, s, 3, c, c, generator=g),
        "scales2": torch.randn(b, s, 3, c, c, generator=g),
        "image1": torch.randn(b, 3, c, c, generator=g),
        "image2": torch.randn(b, 3, c, c, generator=g),
        "sp1": ids.clone(),
        "sp2": torch.roll(ids, 3, dims=2),
    }


@pytest.mark.parametrize("stage", ["1", "2", "joint"])
def test_objective_stages(net: URLNet, stage: str) -> None:
    net.zero_grad()
    terms = URLObjective(stage)(net, _batch())  # type: ignore[arg-type]
    expected = {"1": {"loss_img"}, "2": {"loss_sp", "loss_px"}, "joint": {"loss_img", "loss_sp", "loss_px"}}[stage]
    assert set(terms) == expected | {"loss"}
    assert torch.isclose(terms["loss"], sum(terms[k] for k in expected))  # type: ignore[arg-type]
    terms["loss"].backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert (net.global_head.weight.grad is not None) == (stage != "2")
    assert (net.dense_head[0].weight.grad is not None) == (stage != "1")


def test_finetune_model_loads_encoder_and_decoder_from_a_stage2_export(net: URLNet, tmp_path: Path) -> None:
    """``pathseg finetune --encoder url_unet.safetensors`` builds its U-Net with create_segmentation_model."""
    from pathseg.models import create_segmentation_model, read_encoder

    path = export_unet(net, tmp_path / "url_unet.safetensors", stage="2", mean=HE_MEAN, std=HE_STD)
    _, meta = read_encoder(path)  # a valid encoder file for resolve_encoder: timm name + H&E normalisation
    assert meta.timm_name == "resnet18" and meta.mean == HE_MEAN
    model = create_segmentation_model("unet", "resnet18", 3, encoder_weights=path)
    src, dst = net.unet.state_dict(), model.state_dict()
    assert not model.encoder_load_report.missing
    loaded = [k for k in src if k.startswith(("encoder.", "decoder."))]
    assert all(torch.equal(src[k], dst[k]) for k in loaded)
    stage1 = export_unet(net, tmp_path / "s1.safetensors", stage="1", mean=HE_MEAN, std=HE_STD)
    fresh = create_segmentation_model("unet", "resnet18", 3, encoder_weights=stage1)
    assert not torch.equal(fresh.state_dict()["decoder.blocks.0.conv1.0.weight"], src["decoder.blocks.0.conv1.0.weight"])
