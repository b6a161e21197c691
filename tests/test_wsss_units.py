"""Unit tests of the MLPS building blocks against hand computations (spec: ../shared/methods/mlps_wsss.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pathseg.config import load_config
from pathseg.errors import ConfigError
from pathseg.train.schedules import poly as poly_factor
from pathseg.wsss.config import WsssConfig
from pathseg.wsss.gate import gate_predictions
from pathseg.wsss.gradcam import grad_cams
from pathseg.wsss.pda import dropout_attention, pda_active, pda_gamma
from pathseg.wsss.pseudo_masks import combine, gray_cv2, normalise_global, white_background
from pathseg.wsss.stage2 import pm_loss

# ---------------------------------------------------------------- PDA schedule and attention (spec §1.2)


@pytest.mark.parametrize(
    ("epoch", "gamma"),
    [(0, 1.0), (1, 0.98), (3, 0.98**3), (19, 0.98**19), (20, 0.98**20), (21, 0.98**21), (22, 0.98**22),
     (23, 0.98**22), (40, 0.98**22)],
)
def test_pda_gamma_schedule(epoch: int, gamma: float) -> None:
    assert pda_gamma(epoch) == pytest.approx(gamma, abs=1e-12)


def test_pda_gamma_spec_values() -> None:
    # values quoted in the spec: 0.941 at e=3, 0.681 at e=19, 0.6676 after 20 epochs (issue #8 log)
    assert round(pda_gamma(3), 3) == 0.941
    assert round(pda_gamma(19), 3) == 0.681
    assert round(pda_gamma(20), 4) == 0.6676
    # the floor binds only after 22 epochs: gamma_21 = 0.654 > 0.65 decays once more, then stays
    assert pda_gamma(22) < 0.65 and pda_gamma(22) == pda_gamma(100)


def test_pda_active_from_epoch_3() -> None:
    assert [pda_active(e) for e in range(5)] == [False, False, False, True, True]


def test_dropout_attention_hand_case() -> None:
    # one feature channel, 2x2 map; two classes with weights 1 and -1 (so class 1's map is ReLU(-F))
    feats = torch.tensor([[[[1.0, 2.0], [3.0, -4.0]]]])
    weight = torch.tensor([[1.0], [-1.0]])
    gamma, divisor = 0.7, 4.0
    out = dropout_attention(feats, weight, gamma, divisor)
    f = feats[0, 0].numpy()
    expected = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            total = 0.0
            for w in (1.0, -1.0):
                m = max(w * f[i, j], 0.0)
                peak = max(max(w * v, 0.0) for v in f.ravel())
                total += 0.0 if m > gamma * peak else m
            expected[i, j] = f[i, j] * total / divisor
    # class 0 map [1,2,3,0], peak 3 -> 3 dropped; class 1 map [0,0,0,4], peak 4 -> 4 dropped
    np.testing.assert_allclose(out[0, 0].numpy(), expected)
    np.testing.assert_allclose(out[0, 0].numpy(), [[1 * 1 / 4, 2 * 2 / 4], [0.0, 0.0]])


def test_pda_gamma_one_is_not_identity() -> None:
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = dropout_attention(feats, torch.tensor([[1.0]]), 1.0, 4.0)
    assert not torch.allclose(out, feats)


def test_poly_factor() -> None:
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100) == 0.0 and poly_factor(150, 100) == 0.0


# ---------------------------------------------------------------- Grad-CAM (spec §2)


class OneConvNet(nn.Module):
    """1x1 conv → GAP → linear: ∂z_c/∂A_k(p) = W_ck / (h·w), so α_ck = W_ck / (h·w)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 3)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a = self.conv(x)
        return self.fc(a.mean(dim=(2, 3))), {"deep": a}


def test_gradcam_matches_analytic_case() -> None:
    net = OneConvNet().eval()
    x = torch.randn(2, 3, 5, 6)
    cams = grad_cams(net, x, ["deep"])["deep"]
    assert cams.shape == (2, 3, 5, 6)
    a = net.conv(x).detach().numpy()
    w = net.fc.weight.detach().numpy()
    hw = 5 * 6
    for n in range(2):
        for c in range(3):
            expected = np.zeros((5, 6))
            for k in range(4):
                expected += (w[c, k] / hw) * a[n, k]
            np.testing.assert_allclose(cams[n, c].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (cams < 0).any()  # no ReLU: negative values survive


def test_gradcam_resizes_bilinear() -> None:
    net = OneConvNet().eval()
    x = torch.randn(1, 3, 4, 4)
    small = grad_cams(net, x, ["deep"])["deep"]
    big = grad_cams(net, x, ["deep"], out_size=(8, 8))["deep"]
    ref = torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(big, ref)


def test_classifier_gives_three_depths_at_stride_8() -> None:
    from pathseg.wsss.classifier import build_multilabel_classifier

    model = build_multilabel_classifier("resnet18", 2).eval()
    logits, maps = model.features_and_logits(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 2)
    assert {k: tuple(v.shape[-2:]) for k, v in maps.items()} == {"shallow": (8, 8), "mid": (8, 8), "deep": (8, 8)}
    cams = grad_cams(model, torch.rand(2, 3, 64, 64), ["deep", "mid", "shallow"])
    assert all(v.shape == (2, 2, 64, 64) for v in cams.values())


# ---------------------------------------------------------------- combination rule and background (spec §2)


def test_normalise_global_uses_one_min_max() -> None:
    g = np.array([[[0.0, 2.0]], [[-2.0, 6.0]]])
    np.testing.assert_allclose(normalise_global(g), (g + 2) / 8)


def test_combine_two_present_classes_and_background() -> None:
    cams = np.array([[[0.0, 2.0, 4.0]], [[4.0, 2.0, 0.0]]])
    labels = np.array([1, 1])
    np.testing.assert_array_equal(combine(cams, labels, None, None), [[1, 0, 0]])  # tie at pixel 1 -> lowest
    white = np.array([[False, True, False]])
    np.testing.assert_array_equal(combine(cams, labels, white, 2), [[1, 2, 0]])
    np.testing.assert_array_equal(combine(cams, labels, white, 2, parity=True), [[1, 2, 0]])


def test_combine_restricts_to_labels_and_parity_edge_case() -> None:
    cams = np.array([[[0.0, 2.0, 4.0]], [[4.0, 2.0, 0.0]]])
    # only class 1 present: every pixel is class 1 ...
    np.testing.assert_array_equal(combine(cams, np.array([0, 1]), None, None), [[1, 1, 1]])
    # ... except, in the original rule, where class 1 sits at the global minimum: tie at 0 -> index 0 (absent!)
    np.testing.assert_array_equal(combine(cams, np.array([0, 1]), None, None, parity=True), [[1, 1, 0]])


def test_combine_unlabelled_patch() -> None:
    cams = np.random.default_rng(0).normal(size=(2, 2, 2))
    white = np.array([[True, False], [False, False]])
    np.testing.assert_array_equal(combine(cams, np.array([0, 0]), white, 2), [[2, 255], [255, 255]])
    np.testing.assert_array_equal(combine(cams, np.array([0, 0]), white, 2, parity=True), [[2, 0], [0, 0]])


def test_combine_single_label_covers_patch() -> None:
    cams = np.random.default_rng(1).normal(size=(3, 4, 5))
    assert (combine(cams, np.array([0, 0, 1]), None, None) == 2).all()


def test_gray_matches_cv2_formula() -> None:
    rgb = np.array([[[255, 255, 255], [200, 201, 202], [10, 250, 30], [0, 0, 0]]], dtype=np.uint8)
    expected = [int(0.299 * r + 0.587 * g + 0.114 * b + 0.5) for r, g, b in rgb[0].astype(float)]
    np.testing.assert_array_equal(gray_cv2(rgb)[0], expected)


def test_white_background_drops_small_components() -> None:
    rgb = np.zeros((20, 20, 3), dtype=np.uint8)
    rgb[0:10, 0:10] = 255  # 100 px white block: kept
    rgb[15:17, 15:17] = 255  # 4 px: removed
    rgb[12, 0:49 // 7] = 255  # thin line of 7 px: removed
    bg = white_background(rgb, 200, 50)
    assert bg[0:10, 0:10].all() and bg.sum() == 100
    # diagonal neighbours are not connected (4-connectivity): two 25-px blocks touching at a corner
    rgb2 = np.zeros((20, 20, 3), dtype=np.uint8)
    rgb2[0:5, 0:5] = 255
    rgb2[5:10, 5:10] = 255
    assert white_background(rgb2, 200, 50).sum() == 0


# ---------------------------------------------------------------- gate (spec §3.5)


def test_gate_parity_reproduces_original_rule() -> None:
    logits = torch.tensor([[[[-1.0, 5.0]], [[-2.0, 1.0]], [[-3.0, 2.0]]]])  # [1, 3, 1, 2]
    probs = torch.tensor([[0.05, 0.5, 0.5]])  # class 0 gated off
    pred = gate_predictions(logits, probs, 0.1, "parity")
    # original: s' = s * g -> pixel 0: [0, -2, -3] -> the gated class 0 wins; pixel 1: [0, 1, 2] -> 2
    assert pred.tolist() == [[[0, 2]]]


def test_gate_fixed_gated_class_never_wins() -> None:
    logits = torch.tensor([[[[-1.0, 5.0]], [[-2.0, 1.0]], [[-3.0, 2.0]]]])
    probs = torch.tensor([[0.05, 0.5, 0.5]])
    assert gate_predictions(logits, probs, 0.1, "fixed").tolist() == [[[1, 2]]]
    torch.manual_seed(0)
    big = torch.randn(4, 3, 8, 8)
    p = torch.tensor([[0.0, 0.9, 0.9], [0.9, 0.0, 0.9], [0.9, 0.9, 0.0], [0.0, 0.0, 0.9]])
    pred = gate_predictions(big, p, 0.1, "fixed")
    for n in range(4):
        for c in range(3):
            if p[n, c] <= 0.1:
                assert not (pred[n] == c).any()


def test_gate_fixed_all_gated_means_no_gate() -> None:
    logits = torch.randn(1, 3, 4, 4)
    pred = gate_predictions(logits, torch.tensor([[0.01, 0.02, 0.03]]), 0.1, "fixed")
    assert torch.equal(pred, logits.argmax(dim=1))


# ---------------------------------------------------------------- stage-2 loss (spec §3.3)


def _ce_loop(logits: torch.Tensor, target: torch.Tensor, skip: set[int]) -> tuple[float, int]:
    total, count = 0.0, 0
    n, _, h, w = logits.shape
    for i in range(n):
        for y in range(h):
            for x in range(w):
                t = int(target[i, y, x])
                if t in skip:
                    continue
                s = logits[i, :, y, x].tolist()
                lse = math.log(sum(math.exp(v) for v in s))
                total += lse - s[t]
                count += 1
    return total, count


def _targets(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randint(0, 5, (2, 3, 4), generator=g) for k in ("deep", "mid", "shallow")}
    return out


def test_pm_loss_fixed_weights_and_ignores_background() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 4)
    targets = _targets(1)
    weights = {"deep": 0.6, "mid": 0.2, "shallow": 0.2}
    loss = pm_loss(logits, targets, weights, bg_index=4)
    expected = 0.0
    for name, w in weights.items():
        total, count = _ce_loop(logits, targets[name], {4, 255})
        expected += w * total / count
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    other = pm_loss(logits, targets, {"deep": 1.0, "mid": 0.0, "shallow": 0.0}, bg_index=4)
    total, count = _ce_loop(logits, targets["deep"], {4, 255})
    assert other.item() == pytest.approx(total / count, rel=1e-5)


def test_pm_loss_parity_double_division_and_fifth_channel() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 4)
    targets = _targets(2)
    targets["mid"] = targets["mid"].masked_fill(targets["deep"] == 4, 4)  # bg is the same in all layers
    targets["shallow"] = targets["shallow"].masked_fill(targets["deep"] == 4, 4)
    weights = {"deep": 0.6, "mid": 0.2, "shallow": 0.2}
    extra = (targets["deep"] == 4).float()[:, None] * 100.0
    five = torch.cat([logits, extra], dim=1)
    expected = 0.0
    for name, w in weights.items():
        total, count = _ce_loop(five, targets[name], {255})
        assert count == 2 * 3 * 4  # white pixels stay in the denominator
        expected += w * total / count / 2  # ... and the mean is divided again by N = 2
    loss = pm_loss(logits, targets, weights, bg_index=4, parity=True)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_pm_loss_fixed_is_not_divided_by_batch_size() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 2)
    t = {"deep": torch.randint(0, 3, (1, 2, 2))}
    one = pm_loss(logits, t, {"deep": 1.0}, None)
    many = pm_loss(logits.repeat(5, 1, 1, 1), {"deep": t["deep"].repeat(5, 1, 1)}, {"deep": 1.0}, None)
    assert many.item() == pytest.approx(one.item(), rel=1e-6)
    many_parity = pm_loss(logits.repeat(5, 1, 1, 1), {"deep": t["deep"].repeat(5, 1, 1)}, {"deep": 1.0}, None,
                          parity=True)
    one_parity = pm_loss(logits, t, {"deep": 1.0}, None, parity=True)
    assert many_parity.item() == pytest.approx(one_parity.item() / 5, rel=1e-6)


# ---------------------------------------------------------------- config and bool parsing (spec §3.5 / §7.3)


@pytest.mark.parametrize(("text", "value"), [("False", False), ("false", False), ("no", False), ("True", True)])
def test_gate_flag_parses_strings(text: str, value: bool) -> None:
    cfg = load_config(WsssConfig, values={"data": "d", "out": "o"}, overrides=[f"stage2.gate.enabled={text}"])
    assert cfg.stage2.gate.enabled is value


def test_bad_bool_is_an_error() -> None:
    with pytest.raises(ConfigError):
        load_config(WsssConfig, values={"data": "d", "out": "o"}, overrides=["stage2.gate.enabled=maybe"])


def test_parity_switch_propagates() -> None:
    cfg = load_config(WsssConfig, values={"data": "d", "out": "o", "parity": "false"})
    assert not cfg.stage1.parity and cfg.stage2.gate.mode == "fixed"
    cfg = load_config(WsssConfig, values={"data": "d", "out": "o"}, overrides=["parity=true"])
    assert cfg.stage1.parity and cfg.pseudo.parity and cfg.stage2.parity and cfg.stage2.gate.mode == "parity"


def test_config_rejects_unknown_layer() -> None:
    with pytest.raises(ConfigError):
        load_config(WsssConfig, values={"data": "d", "out": "o"}, overrides=["stage2.layer_weights={bn7: 1.0}"])


def test_cli_flag_no_parity_and_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    from pathseg.cli.main import main

    code = main(["wsss", "--data", "d", "--out", "o", "--no-parity", "stage2.gate.enabled=False", "--print-config"])
    assert code == 0
    text = capsys.readouterr().out
    assert "enabled: false" in text and "parity: false" in text


@pytest.mark.parametrize("name", ["mlps_luad.yaml", "mlps_bcss.yaml", "glas_cpu_smoke.yaml"])
def test_shipped_configs_load(name: str) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "wsss" / name
    cfg = load_config(WsssConfig, path, values={"data": "d", "out": "o"})
    assert cfg.stage2.layer_weights["deep"] == pytest.approx(0.6)
