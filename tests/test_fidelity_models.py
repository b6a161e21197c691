"""The papers' networks: URL's U-Net decoder, MLPS's ResNet-38d and DeepLabV3+ (shapes, parameter counts, rates),
the dense head's width, and the LUAD / BCSS-WSSS white-background rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pathseg.data.layout import DatasetInfo, read_dataset_info, write_dataset_info
from pathseg.models import create_segmentation_model, save_encoder
from pathseg.models.deeplab import DeepLabV3PlusPaper
from pathseg.models.resnet38d import ResNet38d
from pathseg.models.url_unet import PaperUNet
from pathseg.ssl.url.method import URLMethod
from pathseg.ssl.url.model import URLNet, smp_decode
from pathseg.wsss.classifier import build_multilabel_classifier
from pathseg.wsss.config import PseudoConfig
from pathseg.wsss.generate import uses_background
from pathseg.wsss.pseudo_masks import background_rule
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


# ------------------------------------------------------------------ URL (spec §2.1)
RESNET18_TRUNK = 11_176_512  # torchvision resnet18 without fc


def _url_decoder_params() -> int:
    """The spec's decoder, written out: up = ConvTranspose(k2, bias), cbr = conv3×3 (bias) + BN."""
    total = 0
    for c_in, skip, width in ((512, 256, 512), (512, 128, 256), (256, 64, 128), (128, 64, 64)):
        total += conv(c_in, c_in, 2, True) + conv(c_in + skip, width, 3, True) + bn(width)
        total += conv(width, width, 3, True) + bn(width)
    return total


def test_url_paper_networks_have_the_originals_parameter_counts() -> None:
    dec = _url_decoder_params()
    head = conv(64, 64, 1, True) + conv(64, 32, 1, True)
    top = conv(64, 64, 2, True) + conv(64, 64, 3, True) + bn(64) + conv(64, 6, 1, True)
    glob = 512 * 128
    assert RESNET18_TRUNK + dec + top == 22_288_582  # the spec's ResNetUNet(6)
    assert count(PaperUNet("resnet18", 6)) == RESNET18_TRUNK + dec + top
    net = URLNet("resnet18", decoder="paper")
    assert count(net.unet) + count(net.dense_head) == RESNET18_TRUNK + dec + head == 22_240_928  # ResNetUNetHead
    assert count(net) == 22_306_464  # ResNetUNetHeadOneStage (dense + global)
    assert count(net.encoder) + count(net.global_head) == RESNET18_TRUNK + glob == 11_242_048  # ResNetBackBone


def test_url_paper_decoder_shapes() -> None:
    torch.manual_seed(0)
    net = URLNet("resnet18", decoder="paper").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.features(x)
        assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                        (512, 2, 2)]
        assert net.decoder(feats).shape == (2, 64, 32, 32)  # H/2, 64 channels
        assert net.embed_dense(x).shape == (2, 32, 32, 32) and net.embed_global(x).shape == (2, 128)
        assert PaperUNet("resnet18", 6).eval()(x).shape == (2, 6, 64, 64)
    assert isinstance(net.decoder.ups[0], nn.ConvTranspose2d) and net.decoder.ups[0].stride == (2, 2)


def test_smp_dense_head_reads_a_block_as_wide_as_the_embedding() -> None:
    torch.manual_seed(0)
    net = URLNet("resnet18").eval()
    assert net.dense_head[0].in_channels == 32 >= 32  # smp widths 256-128-64-32-16: the 32-channel H/2 block
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = net.features(x)
        assert torch.allclose(smp_decode(net.decoder, feats, len(net.decoder.blocks)), net.decoder(feats))
        dense = net.embed_dense(x)
    assert dense.shape == (1, 32, 32, 32)
    rank = int(torch.linalg.matrix_rank(dense[0].flatten(1).t().double(), rtol=1e-6))
    assert rank == 32  # reading the 16-channel full-resolution block caps it at 16


def test_url_paper_export_loads_into_url_unet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = save_encoder(tmp_path / "s1.safetensors", URLMethod("resnet18", "1").export_state(), "resnet18",
                         (0.5,) * 3, (0.2,) * 3)
    method = _started(URLMethod("resnet18", "2", decoder="paper"), start)
    path = save_encoder(tmp_path / "s2.safetensors", method.export_state(), "resnet18", (0.5,) * 3, (0.2,) * 3)
    model = create_segmentation_model("url_unet", "resnet18", 6, encoder_weights=path)
    assert not model.encoder_load_report.missing and model.decoder_loaded == len(method.net.decoder.state_dict())
    src, dst = method.net.unet.state_dict(), model.state_dict()
    assert all(torch.equal(v, dst[k]) for k, v in src.items())
    assert not any(k.startswith(("upsample", "conv_original_size", "conv_last")) for k in src)  # left to fine-tune


# ------------------------------------------------------------------ MLPS stage 1: ResNet-38d (spec §1.1)
def _resnet38d_params() -> int:
    """From the spec's table: pre-activation blocks (BN on the block input), bias-free convolutions."""
    def block(cin: int, mid: int, cout: int, project: bool) -> int:
        return bn(cin) + conv(cin, mid, 3, False) + bn(mid) + conv(mid, cout, 3, False) + (
            conv(cin, cout, 1, False) if project else 0)

    def bottleneck(cin: int, cout: int) -> int:
        return (bn(cin) + conv(cin, cout // 4, 1, False) + bn(cout // 4) + conv(cout // 4, cout // 2, 3, False)
                + bn(cout // 2) + conv(cout // 2, cout, 1, False) + conv(cin, cout, 1, False))

    total = conv(3, 64, 3, False)
    for cin, mid, cout, n in ((64, 128, 128, 3), (128, 256, 256, 3), (256, 512, 512, 6), (512, 512, 1024, 3)):
        total += block(cin, mid, cout, True) + (n - 1) * block(cout, mid, cout, False)
    return total + bottleneck(1024, 2048) + bottleneck(2048, 4096) + bn(4096)


def test_resnet38d_structure_and_levels() -> None:
    torch.manual_seed(0)
    net = ResNet38d()
    assert count(net) == _resnet38d_params()
    with torch.no_grad():
        levels = net.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(t.shape[1:]) for t in levels] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8),
                                                    (1024, 8, 8), (4096, 8, 8)]
    assert levels[3].min() < 0 and levels[4].min() < 0 and levels[5].min() >= 0  # raw sums; bn7 after ReLU
    assert net.b5.conv_branch2a.dilation == (1, 1) and net.b5.conv_branch2b1.dilation == (2, 2)
    assert net.b7.conv_branch2b1.dilation == (4, 4) and net.b6.dropout_2b1.p == 0.3 and net.b7.dropout_2b2.p == 0.5


def test_resnet38d_as_stage1_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_encoder(tmp_path / "r38.safetensors", ResNet38d().state_dict(), "resnet38d", (0,) * 3, (1,) * 3)
    model = build_multilabel_classifier("resnet38d", num_classes=4, weights=weights)
    assert model.layer_channels == [512, 1024, 4096]
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad and "bn" not in n}
    assert frozen == {"conv1a", "b2", "b2_1", "b2_2"}  # the original's not_training list
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    maps = model.feature_maps(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {"shallow": (512, 8, 8), "mid": (1024, 8, 8),
                                                                "deep": (4096, 8, 8)}


# ------------------------------------------------------------------ MLPS stage 2: DeepLabV3+ (spec §3.1)
def _deeplab_params(trunk: int, num_classes: int) -> int:
    aspp = conv(2048, 256, 1, False) + 3 * conv(2048, 256, 3, False) + conv(2048, 256, 1, False) + 5 * bn(256)
    aspp += conv(1280, 256, 1, False) + bn(256)
    decoder = conv(256, 48, 1, False) + bn(48) + conv(304, 256, 3, False) + bn(256) + conv(256, 256, 3, False)
    return trunk + aspp + decoder + bn(256) + conv(256, num_classes, 1, True)


def test_deeplab_paper_parameter_count() -> None:
    import timm

    trunk = count(timm.create_model("resnet101", num_classes=0))
    assert _deeplab_params(trunk, 21) == 59_344_309  # jfzhang95's DeepLabV3+ ResNet-101 (59.34 M)
    assert count(DeepLabV3PlusPaper("resnet101", 4, 16)) == _deeplab_params(trunk, 4)


@pytest.mark.parametrize(("stride", "rates", "layer4", "aspp_side"), [(16, (6, 12, 18), [2, 4, 8], 14),
                                                                       (8, (12, 24, 36), [4, 8, 16], 28)])
def test_deeplab_paper_rates_and_shapes(stride: int, rates: tuple[int, ...], layer4: list[int],
                                        aspp_side: int) -> None:
    torch.manual_seed(0)
    model = create_segmentation_model("deeplabv3plus_paper", "resnet50", 4, output_stride=stride).eval()
    assert isinstance(model, DeepLabV3PlusPaper)
    branches = [b[0] for b in model.aspp.branches]
    assert branches[0].kernel_size == (1, 1)
    assert tuple(b.dilation[0] for b in branches[1:]) == rates and all(b.padding == b.dilation for b in branches[1:])
    trunk = model.encoder.model
    assert [blk.conv2.dilation[0] for blk in trunk.layer4] == layer4
    assert all(blk.conv2.dilation[0] == (2 if stride == 8 else 1) for blk in trunk.layer3)
    drops = [m.p for m in model.decoder.last_conv if isinstance(m, nn.Dropout)]
    convs3 = [m for m in model.decoder.last_conv.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert drops == [0.5, 0.1] and len(convs3) == 2
    seen = {}
    model.aspp.register_forward_hook(lambda _m, _i, out: seen.update(aspp=out.shape))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 4, 224, 224) and seen["aspp"] == (1, 256, aspp_side, aspp_side)


# ------------------------------------------------------------------ pseudo masks: the white-background rule
def _info(name: str, white: bool | None, exclude: int | None = 4) -> DatasetInfo:
    return DatasetInfo(name=name, task="patch_labels", exclude_index=exclude, white_background=white)


def test_background_rule_follows_the_data_set(tmp_path: Path) -> None:
    auto = PseudoConfig()
    assert uses_background(auto, _info("luad-histoseg", True)) is True
    assert uses_background(auto, _info("bcss-wsss", False)) is False  # exclude index 4, yet no white rule
    assert background_rule("auto", _info("bcss-wsss", None)) is False  # converted before the field existed
    assert background_rule("auto", _info("luad-histoseg", None)) is True
    assert background_rule("auto", _info("toy", None)) is True and background_rule("auto", _info("t", None, None)) \
        is False
    assert background_rule("auto", _info("toy", False)) is False
    assert background_rule("white", _info("bcss-wsss", False)) and not background_rule("none", _info("x", True))
    write_dataset_info(tmp_path, _info("bcss-wsss", False))
    assert read_dataset_info(tmp_path).white_background is False


def _started(method: URLMethod, weights: Path) -> URLMethod:
    """A URL method whose encoder is loaded from ``weights``, as the registered factory does."""
    method.load_encoder(weights)
    return method
