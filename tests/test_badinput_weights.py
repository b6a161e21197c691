"""Strict weight loading: files of another architecture are refused with the first keys and the likely
architecture; ``allow_partial`` keeps the old lenient behaviour with a report."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from pathseg.errors import PathsegError
from pathseg.models import create_encoder, load_weights
from pathseg.models.arch_guess import guess_architecture


def _save(tmp: Path, name: str, **kwargs: object) -> Path:
    from safetensors.torch import save_file

    model = timm.create_model(name, pretrained=False, **kwargs)
    path = tmp / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize(("name", "blocks", "bottleneck"), [
    ("resnet18", [2, 2, 2, 2], False), ("resnet34", [3, 4, 6, 3], False), ("resnet50", [3, 4, 6, 3], True)])
def test_guess_from_block_counts(name: str, blocks: list[int], bottleneck: bool) -> None:
    state = timm.create_model(name, pretrained=False, num_classes=0).state_dict()
    # independent count of the blocks per stage, from the keys
    counted = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in (1, 2, 3, 4)]
    assert counted == blocks and any(".conv3." in k for k in state) == bottleneck
    assert guess_architecture(state) == name
    prefixed = {f"module.backbone.{k}": v for k, v in state.items()}
    assert guess_architecture(prefixed) == name


def test_guess_vit_and_unknown() -> None:
    state = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()
    assert guess_architecture(state).startswith("vit_small_patch16_224 (width 384, depth 12)")
    assert guess_architecture({"foo.weight": torch.zeros(1)}) == "unknown"


@pytest.mark.parametrize("other", ["resnet34", "resnet50"])
def test_other_resnet_for_resnet18_is_refused(other: str, tmp_path: Path) -> None:
    path = _save(tmp_path, other, num_classes=0)
    model = create_encoder("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PathsegError) as exc:
        load_weights(model, path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and f"the file looks like {other}, the model is resnet18" in msg
    assert "--allow-partial-weights" in msg
    first_extra = "layer1.2.bn1.bias" if other == "resnet34" else "layer1.0.bn3.bias"
    assert first_extra in msg
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing loaded
    report = load_weights(model, path, allow_partial=True)
    assert report.unexpected and report.matched
    if other == "resnet50":
        assert "layer1.0.conv1.weight" in report.mismatched
        assert "[64, 64, 1, 1] vs [64, 64, 3, 3]" in msg
    from safetensors.torch import load_file

    src_state = load_file(str(path))
    for key in report.matched:  # what fit was loaded exactly
        assert torch.equal(model.state_dict()[key], src_state[key])


def test_classifier_head_is_tolerated_but_not_when_exact(tmp_path: Path) -> None:
    path = _save(tmp_path, "resnet18")  # with its fc head, like an ImageNet checkpoint
    report = load_weights(create_encoder("resnet18"), path)
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"] and not report.missing
    with pytest.raises(PathsegError, match=r"2 file tensors the model does not have \(first: fc\.bias, fc\.weight"):
        load_weights(create_encoder("resnet18"), path, strict=True)


def test_missing_tensors_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = create_encoder("resnet18").state_dict()
    part = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    save_file(part, str(tmp_path / "part.safetensors"))
    with pytest.raises(PathsegError, match=r"model tensors missing from the file \(first: layer4\.0\.conv1\.weight"):
        load_weights(create_encoder("resnet18"), tmp_path / "part.safetensors")
    report = load_weights(create_encoder("resnet18"), tmp_path / "part.safetensors", allow_partial=True)
    expected_missing = [k for k in state if k.startswith("layer4.")]
    assert report.missing == expected_missing
