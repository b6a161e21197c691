"""UNIT networks: modulated convolution against a direct per-sample convolution, shapes, trunk keys, R1, ADA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pathseg.ssl.unit.discriminators import AdaptiveAugment, PatchDiscriminator, StyleDiscriminator, r1_penalty
from pathseg.ssl.unit.generator import CoModGenerator, ModulatedConv2d, ResNetGenerator
from pathseg.ssl.unit.segmenter import Segmenter
from ssl_helpers import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.mark.parametrize("demod,up", [(True, False), (False, False), (True, True)])
def test_modulated_conv_matches_per_sample_conv(demod: bool, up: bool) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 4, 3, style_dim=5, demodulate=demod, upsample=up)
    x, style = torch.randn(2, 3, 6, 6), torch.randn(2, 5)
    out = conv(x, style)
    for b in range(2):
        s = style[b] @ conv.affine.weight.T + conv.affine.bias  # [3]
        w = conv.weight * conv.scale
        for i in range(3):
            w = torch.cat([w[:, :i], w[:, i:i + 1] * s[i], w[:, i + 1:]], dim=1)
        if demod:
            norms = torch.stack([w[o].pow(2).sum() for o in range(4)])
            w = w / torch.sqrt(norms + 1e-8)[:, None, None, None]
        xb = x[b:b + 1].repeat_interleave(2, 2).repeat_interleave(2, 3) if up else x[b:b + 1]
        ref = F.conv2d(xb, w, padding=1)
        assert torch.allclose(out[b:b + 1], ref, atol=1e-5)


@pytest.mark.parametrize("size", [64, 256])
def test_shapes(size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    g = CoModGenerator(size, width=1 if size == 256 else 2, max_channels=8, z_dim=8, mapping_layers=2,
                       skip_resolution=64)
    assert g(x).shape == (2, 3, size, size)
    assert ResNetGenerator(4, 1)(x).shape == (2, 3, size, size)
    assert StyleDiscriminator(size, 1, 8)(x).shape == (2,)
    assert PatchDiscriminator(4, 4)(x).shape == (2, 1, size // 16, size // 16)
    if size == 64:
        mask, inst = Segmenter("resnet18", 16, (8, 8))(x, with_instance=True)
        assert mask.shape == (2, 3, size, size) and inst is not None and inst.shape == (2, 2, size, size)


def test_generator_uses_mask_and_noise_code() -> None:
    torch.manual_seed(0)
    g = CoModGenerator(32, 4, 16, 8, 2, 32)
    m1, m2, z = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), torch.randn(1, 8)
    a = g(m1, z, noise=False)
    assert torch.equal(a, g(m1, z, noise=False))
    assert not torch.allclose(a, g(m2, z, noise=False)) and not torch.allclose(a, g(m1, torch.randn(1, 8), noise=False))


def test_trunk_keys_are_timm_resnet50_gn() -> None:
    import timm

    s = Segmenter("resnet50_gn", 16, (8, 8), instance_head=False)
    ref = timm.create_model("resnet50_gn", pretrained=False, num_classes=0)
    assert set(s.trunk.state_dict()) == set(ref.state_dict())
    assert type(s.trunk.bn1).__name__ == "GroupNorm" and s.trunk.bn1.num_groups == 32
    ref.load_state_dict(s.trunk.state_dict(), strict=True)


def test_r1_penalty_on_a_linear_critic() -> None:
    w = torch.randn(3 * 4 * 4)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = (x.flatten(1) @ w) ** 2  # D(x) = (w.x)^2, grad = 2 (w.x) w
    expected = torch.stack([(2 * (x[b].flatten() @ w) * w).pow(2).sum() for b in range(2)]).mean()
    assert torch.allclose(r1_penalty(out, x), expected.detach(), rtol=1e-5)


def test_ada_probability_and_identity() -> None:
    ada = AdaptiveAugment(target=0.6, speed=0.1)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(ada(x), x)  # p = 0
    ada.update(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # E[sign] = 0.5 < 0.6: p stays 0
    assert float(ada.p) == 0.0
    ada.update(torch.ones(4))  # 1.0 > 0.6
    ada.update(torch.ones(4))
    assert abs(float(ada.p) - 0.2) < 1e-6
    ada.p.fill_(1.0)
    x.requires_grad_(True)
    y = ada(x)
    y.sum().backward()
    assert not torch.equal(y, x) and x.grad is not None and x.grad.abs().sum() > 0
