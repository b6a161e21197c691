"""PLM's shallow U-Net (spec §4.3, the frozen-encoder BCSS protocol): parameter count of the original written out
layer by layer, shapes, narrowing up-samplings, and a PLM export loading into it by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pathseg.models import create_segmentation_model, save_encoder
from pathseg.models.plm_unet import ShallowUNet
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)
RESNET18_TRUNK = 11_176_512  # torchvision resnet18 without fc


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # every decoder conv has a bias


def _original_params(num_classes: int) -> int:
    """``SResUnet18``: up_conv6..10 (ConvTranspose k2) and double_conv 6..9 (conv3×3 + BN, twice), conv10 1×1."""
    total = RESNET18_TRUNK
    for c_in, up, skip, width in ((512, 512, 256, 512), (512, 256, 128, 256), (256, 128, 64, 128),
                                  (128, 64, 64, 64)):
        total += _conv(c_in, up, 2) + _conv(up + skip, width, 3) + 2 * width + _conv(width, width, 3) + 2 * width
    return total + _conv(64, 32, 2) + _conv(32, num_classes, 1)


def test_parameter_count_equals_the_originals() -> None:
    for n in (2, 5, 21):
        assert sum(p.numel() for p in ShallowUNet("resnet18", n).parameters()) == _original_params(n)


def test_shapes_and_narrowing_upsamplings() -> None:
    net = ShallowUNet("resnet18", 5).eval()
    ups = [(u.in_channels, u.out_channels) for u in net.decoder.ups] + [
        (net.upsample.in_channels, net.upsample.out_channels)]
    assert ups == [(512, 512), (512, 256), (256, 128), (128, 64), (64, 32)]
    assert [s[0][0].in_channels for s in net.decoder.convs] == [768, 384, 192, 128]
    with torch.no_grad():
        assert net(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)
        assert net(torch.randn(1, 3, 96, 160)).shape == (1, 5, 96, 160)


def test_export_loads_into_the_shallow_unet_by_name(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    trunk = timm.create_model("resnet18", num_classes=0, pretrained=False)
    with torch.no_grad():
        for p in trunk.parameters():
            p.normal_()
    path = save_encoder(tmp_path / "plm.safetensors", trunk.state_dict(), "resnet18", (0.5,) * 3, (0.2,) * 3)
    model = create_segmentation_model("plm_unet", "resnet18", 5, encoder_weights=path)
    assert isinstance(model, ShallowUNet) and not model.encoder_load_report.missing
    loaded = model.encoder.model.state_dict()
    for key, value in trunk.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert isinstance(model.classifier, nn.Conv2d) and model.classifier.kernel_size == (1, 1)
