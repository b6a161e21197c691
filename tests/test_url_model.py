"""URL network: heads, frozen encoder with frozen BatchNorm statistics, U-Net export/import, stage objectives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pathseg.errors import PathsegError
from pathseg.models import create_segmentation_model, read_encoder, save_encoder
from pathseg.ssl.url.config import HE_MEAN, HE_STD
from pathseg.ssl.url.method import URLMethod
from pathseg.ssl.url.model import URLNet
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


def _export(method: URLMethod, path: Path) -> Path:
    """What the engine does at the end of a run."""
    return save_encoder(path, method.export_state(), method.timm_name, HE_MEAN, HE_STD, extra={"method": "url"})


@pytest.mark.parametrize("stage", ["2", "joint"])
def test_finetune_unet_loads_encoder_and_decoder_from_a_url_export(stage: str, tmp_path: Path) -> None:
    """``pathseg finetune --encoder RUN/encoder.safetensors`` builds its U-Net with create_segmentation_model."""
    torch.manual_seed(0)
    start = _export(URLMethod("resnet18", "1"), tmp_path / "s1.safetensors")
    method = _started(URLMethod("resnet18", stage=stage), start)
    path = _export(method, tmp_path / "encoder.safetensors")
    state, meta = read_encoder(path)  # a valid encoder file: timm name + H&E normalisation
    assert meta.timm_name == "resnet18" and meta.mean == HE_MEAN
    assert "conv1.weight" in state and any(k.startswith("decoder.") for k in state)
    model = create_segmentation_model("unet", "resnet18", 3, encoder_weights=path)
    assert not model.encoder_load_report.missing and model.decoder_loaded > 0
    src, dst = method.net.unet.state_dict(), model.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in src if k.startswith(("encoder.", "decoder.")))


def test_stage1_export_is_encoder_only_and_feeds_stage2(tmp_path: Path) -> None:
    torch.manual_seed(0)
    s1 = URLMethod("resnet18", "1")
    path = _export(s1, tmp_path / "s1.safetensors")
    assert not any(k.startswith("decoder.") for k in read_encoder(path)[0])
    fresh = create_segmentation_model("unet", "resnet18", 3, encoder_weights=path)
    assert fresh.decoder_loaded == 0
    s2 = _started(URLMethod("resnet18", "2"), path)
    assert all(torch.equal(v, s1.backbone.state_dict()[k]) for k, v in s2.backbone.state_dict().items())
    assert s2.backbone is s2.net.encoder.model


def test_mismatched_or_incomplete_files_are_clear_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = _export(URLMethod("resnet18", "joint"), tmp_path / "u.safetensors")
    with pytest.raises(PathsegError, match="does not fit"):  # resnet50's decoder has other widths
        create_segmentation_model("unet", "resnet50", 3, encoder_weights=path)
    partial = save_encoder(tmp_path / "p.safetensors", {"conv1.weight": torch.zeros(64, 3, 7, 7)}, "resnet18",
                           HE_MEAN, HE_STD)
    with pytest.raises(PathsegError, match="complete resnet18 encoder"):
        _started(URLMethod("resnet18", "2"), partial)


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


def _started(method: URLMethod, weights: Path) -> URLMethod:
    """A URL method whose encoder is loaded from ``weights``, as the registered factory does."""
    method.load_encoder(weights)
    return method
