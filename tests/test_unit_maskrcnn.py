"""UNIT with the faithful Mask R-CNN instance guidance: targets, gradients into S's trunk, one step, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pathseg.config import from_dict
from pathseg.ssl.api import load_methods
from pathseg.ssl.unit import losses as L
from pathseg.ssl.unit.guidance import detection_targets
from ssl_helpers import build_unit, one_thread

pytest.importorskip("torchvision")

TINY = {"g_width": 2, "g_max_channels": 8, "z_dim": 8, "mapping_layers": 2, "skip_resolution": 32, "fpn_dim": 8,
        "decoder_hidden": [8, 8], "ds_width": 4, "ds_layers": 3, "picture_every": 0, "ada": False,
        "guidance": "maskrcnn", "mrcnn_roi_batch": 64, "masks": {"mpp": 0.5}}
MRCNN_LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}

_threads = pytest.fixture(autouse=True)(one_thread)


def _build(tmp: Path, **args: Any) -> tuple[Any, Any]:
    return build_unit(tmp, TINY, **args)


def test_targets_are_the_pseudo_instances() -> None:
    inst = np.zeros((1, 12, 12), np.int64)
    inst[0, 1:4, 2:7] = 5  # box x 2-7, y 1-4
    inst[0, 8:11, 8:9] = 9  # 1 px wide: dropped (detectron2 drops boxes narrower than 2 px)
    inst[0, 6:10, 0:3] = 2
    (t,) = detection_targets(torch.from_numpy(inst), torch.device("cpu"))
    assert t["boxes"].tolist() == [[2.0, 1.0, 7.0, 4.0], [0.0, 6.0, 3.0, 10.0]] or \
        t["boxes"].tolist() == [[0.0, 6.0, 3.0, 10.0], [2.0, 1.0, 7.0, 4.0]]
    assert t["labels"].tolist() == [1, 1] and t["masks"].shape == (2, 12, 12)
    for box, mask in zip(t["boxes"].tolist(), t["masks"]):
        x0, y0, x1, y1 = map(int, box)
        expected = np.zeros((12, 12), bool)
        expected[y0:y1, x0:x1] = inst[0, y0:y1, x0:x1] > 0
        assert np.array_equal(mask.numpy().astype(bool), expected)


def _trunk_and_branch_grads(method: Any, batch: dict[str, torch.Tensor], seg_weight: float) -> dict[str, torch.Tensor]:
    method.zero_grad(set_to_none=True)
    for d in (method.d_g, method.d_s):
        d.requires_grad_(False)
    torch.manual_seed(1)  # the same z, noise and RoI sampling in every call
    terms, _ = method.generator_terms(batch, step=0)
    weights = L.LossWeights(method.weights.adv, method.weights.cycle, seg_weight)
    L.combine(terms, weights).backward()
    parts = {"trunk": method.s.trunk, "branch": method.s.instance, "decoder": method.s.decoder}
    out = {k: torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in m.parameters()])
           for k, m in parts.items()}
    out["seg"] = terms["seg"].detach()
    out["parts"] = torch.stack([terms[f"seg_{k}"] for k in sorted(MRCNN_LOSSES)])
    return out


@pytest.mark.slow
def test_guidance_reaches_the_trunk_only_when_weighted(tmp_path: Path) -> None:
    method, batch = _build(tmp_path)
    assert type(method.s.instance).__name__ == "MaskRCNNBranch"
    with_seg, without = _trunk_and_branch_grads(method, batch, 6.0), _trunk_and_branch_grads(method, batch, 0.0)
    assert float(with_seg["seg"]) == pytest.approx(float(with_seg["parts"].sum()), rel=1e-6)
    assert float(with_seg["seg"]) > 0
    assert with_seg["branch"].abs().sum() > 0 and without["branch"].abs().sum() == 0
    seg_only = with_seg["trunk"] - without["trunk"]  # the guidance's own gradient on S's trunk (L_GS is linear)
    assert seg_only.abs().sum() > 1e-3 * without["trunk"].abs().sum()
    assert torch.allclose(with_seg["decoder"], without["decoder"], atol=1e-7)  # the mask decoder is not in L_seg


def test_one_training_step_with_maskrcnn_guidance(tmp_path: Path) -> None:
    method, batch = _build(tmp_path)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    out = method.manual_step(batch, method.build_optimizers(1e-3, 0.0), 0, lambda loss: loss.backward())
    assert {"seg", *(f"seg_{k}" for k in MRCNN_LOSSES)} <= set(out)
    after = method.state_dict()
    for prefix in ("s.instance.rpn.", "s.instance.roi_heads.box_head.", "s.instance.roi_heads.mask_head.",
                   "s.trunk."):
        keys = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()]
        assert keys and any(not torch.equal(before[k], after[k]) for k in keys), prefix
    extra = method.export_extra()
    assert extra["unit_guidance"] == "maskrcnn"
    from pathseg.models import read_encoder, save_encoder

    path = save_encoder(tmp_path / "enc.safetensors", method.export_state(), "resnet18", (0.5,) * 3, (0.5,) * 3,
                        extra=extra)
    _, meta = read_encoder(path)
    assert meta.get("unit_guidance") == "maskrcnn"


def test_unknown_guidance_and_bad_anchors_are_config_errors(tmp_path: Path) -> None:
    from pathseg.errors import ConfigError

    spec = load_methods().get("unit")
    with pytest.raises(ConfigError):
        from_dict(spec.config, {"guidance": "solo"}, prefix="method_args.")
    with pytest.raises(ConfigError, match="mrcnn_anchor_sizes"):
        from_dict(spec.config, {"mrcnn_anchor_sizes": [8, 16]}, prefix="method_args.")
