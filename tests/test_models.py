"""Backbones, weights files and segmentation models (pathseg.models)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import timm
import torch

from pathseg.errors import ConfigError, PathsegError
from pathseg.models import (
    create_encoder,
    create_segmentation_model,
    feature_encoder,
    load_weights,
    read_encoder,
    save_encoder,
)
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def test_create_encoder_pooled_features() -> None:
    enc = create_encoder("resnet18")
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 512)
    vit = create_encoder("vit_small_patch16_224")
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, 384)


def test_resnet50_and_output_stride() -> None:
    enc = create_encoder("resnet50", output_stride=16)
    assert enc.num_features == 2048
    fe = feature_encoder("resnet50", output_stride=8)
    assert fe.feature_info.reduction()[-1] == 8


def test_unknown_backbone_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        create_encoder("resnet1800")


def test_feature_encoder_cnn_and_vit() -> None:
    fe = feature_encoder("resnet18")
    assert fe.feature_info.channels() == [64, 64, 128, 256, 512]
    assert fe.feature_info.reduction() == [2, 4, 8, 16, 32]
    maps = fe(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == fe.feature_info.channels()
    assert maps[-1].shape[-1] == 2
    vit = feature_encoder("vit_small_patch16_224", out_indices=[5, 11])
    assert vit.feature_info.channels() == [384, 384] and vit.feature_info.reduction() == [16, 16]
    outs = vit(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 384, 4, 4)] * 2
    # CNN feature extractor and pooled encoder share parameter names
    assert set(feature_encoder("resnet18").state_dict()) == set(create_encoder("resnet18").state_dict())


def test_load_weights_strips_prefixes_and_reports(tmp_path: Path) -> None:
    src = create_encoder("resnet18")
    state = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    state["module.backbone.extra_head.weight"] = torch.zeros(3)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.ckpt")
    dst = create_encoder("resnet18")
    with pytest.raises(PathsegError, match=r"extra_head\.weight"):
        load_weights(dst, tmp_path / "w.ckpt")  # strict by default
    report = load_weights(dst, tmp_path / "w.ckpt", allow_partial=True)
    assert report.missing == [] and report.unexpected == ["extra_head.weight"]
    assert len(report.matched) == len(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])
    with pytest.raises(PathsegError, match=r"1 file tensors the model does not have.*--allow-partial-weights"):
        load_weights(dst, tmp_path / "w.ckpt", strict=True)


def test_load_weights_no_match_names_file(tmp_path: Path) -> None:
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(PathsegError, match="no key of this file matches") as exc:
        load_weights(create_encoder("resnet18"), tmp_path / "x.pth")
    assert str(tmp_path / "x.pth") in str(exc.value)


class Evil:
    """A pickled object that is not a tensor."""

    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_pickled_object_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": Evil()}, fh)
    with pytest.raises(PathsegError, match="pickled Python objects") as exc:
        load_weights(create_encoder("resnet18"), path)
    assert str(path) in str(exc.value)
    assert "pwned" not in capsys.readouterr().out
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(PathsegError, match=str(raw.name)):
        load_weights(create_encoder("resnet18"), raw)


def test_invalid_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(PathsegError, match="not a valid safetensors"):
        load_weights(create_encoder("resnet18"), bad)
    with pytest.raises(PathsegError, match="not found"):
        load_weights(create_encoder("resnet18"), tmp_path / "missing.pth")
    other = tmp_path / "w.h5"
    other.write_bytes(b"x")
    with pytest.raises(PathsegError, match="unknown weights format"):
        load_weights(create_encoder("resnet18"), other)


def test_encoder_file_roundtrip_and_metadata(tmp_path: Path) -> None:
    enc = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = save_encoder(tmp_path / "enc.safetensors", enc.state_dict(), "resnet18", (0.7, 0.6, 0.8),
                        (0.15, 0.2, 0.1), extra={"method": "mocov2", "steps": 12})
    state, meta = read_encoder(path)
    assert set(state) == set(enc.state_dict())
    assert meta.timm_name == "resnet18" and meta.mean == (0.7, 0.6, 0.8) and meta.std == (0.15, 0.2, 0.1)
    assert meta.get("timm_name") == "resnet18" and meta["method"] == "mocov2" and meta.get("steps") == "12"
    assert meta.pathseg_version
    loaded = create_encoder("resnet18", weights=path)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


@pytest.mark.parametrize("decoder", ["unet", "deeplabv3plus", "fpn"])
def test_segmentation_model_loads_every_encoder_key(tmp_path: Path, decoder: str) -> None:
    torch.manual_seed(0)
    enc = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = save_encoder(tmp_path / "enc.safetensors", enc.state_dict(), "resnet18", (0.5,) * 3, (0.2,) * 3)
    model = create_segmentation_model(decoder, "resnet18", num_classes=3, encoder_weights=path)
    report = model.encoder_load_report
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.matched) == len(enc.state_dict())
    inner = model.encoder.model.state_dict()
    assert all(torch.equal(v, inner[k]) for k, v in enc.state_dict().items())
    model.eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_segmentation_model_random_and_errors() -> None:
    model = create_segmentation_model("unet", "resnet18", 2, encoder_weights="random")
    assert model.encoder_load_report is None
    with pytest.raises(ConfigError, match="unknown decoder"):
        create_segmentation_model("segformer", "resnet18", 2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="output_stride"):
        create_segmentation_model("unet", "resnet18", 2, output_stride=8)
    for decoder in ("url_unet", "plm_unet"):
        with pytest.raises(ConfigError, match=f"output_stride is not supported by {decoder}"):
            create_segmentation_model(decoder, "resnet18", 2, output_stride=8)  # type: ignore[arg-type]
