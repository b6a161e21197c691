"""Seed aggregation, model specs, encoder resolution, schedule and pictures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathseg.errors import ConfigError, DataError
from pathseg.tasks.common import ModelSpec, aggregate_seeds, resolve_encoder
from pathseg.tasks.pictures import plot_confusion, plot_curves, plot_overlays
from tasks_helpers import write_encoder_file


def test_aggregate_seeds_mean_and_sample_std():
    per_seed = {
        "0": {"miou": 0.5, "iou_per_class": [0.2, None, 0.6], "num_pixels": 10, "confusion_matrix": [[1, 0], [0, 1]]},
        "1": {"miou": 0.7, "iou_per_class": [0.4, None, None], "num_pixels": 10, "confusion_matrix": [[2, 1], [0, 0]]},
        "2": {"miou": None, "iou_per_class": [0.3, None, 0.8], "num_pixels": 10, "confusion_matrix": [[0, 0], [0, 0]]},
    }
    out = aggregate_seeds(per_seed)
    assert out["miou"] == pytest.approx(0.6)
    assert out["miou_std"] == pytest.approx(math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1))
    assert out["iou_per_class"][0] == pytest.approx(0.3) and out["iou_per_class"][1] is None
    assert out["iou_per_class"][2] == pytest.approx(0.7)
    assert out["iou_per_class_std"][0] == pytest.approx(0.1)
    assert out["confusion_matrix"] == [[3, 1], [0, 1]]
    assert out["num_pixels"] == 10 and out["seeds"] == [0, 1, 2] and out["per_seed"] is per_seed
    single = aggregate_seeds({"5": {"miou": 0.4}})
    assert single["miou"] == 0.4 and single["miou_std"] == 0.0


def test_model_spec_roundtrip(tmp_path):
    spec = ModelSpec(task="segmentation", encoder="resnet18", num_classes=3, decoder="unet", class_names=["a"])
    spec.save(tmp_path / "model.json")
    assert ModelSpec.load(tmp_path / "model.json") == spec
    with pytest.raises(DataError):
        ModelSpec.load(tmp_path / "missing.json")


def test_resolve_encoder(tmp_path):
    assert resolve_encoder("random").timm_name == "resnet18"
    assert resolve_encoder("random", "resnet50").timm_name == "resnet50"
    path = write_encoder_file(tmp_path / "e.safetensors", mean=(0.1, 0.2, 0.3))
    spec = resolve_encoder(str(path))
    assert spec.timm_name == "resnet18" and spec.mean == (0.1, 0.2, 0.3) and spec.weights == path
    assert resolve_encoder(str(path), "resnet18").timm_name == "resnet18"
    with pytest.raises(ConfigError, match="disagrees"):
        resolve_encoder(str(path), "vit_small_patch16_224")
    with pytest.raises(DataError, match="not found"):
        resolve_encoder(str(tmp_path / "nope.safetensors"))


def test_pictures(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_loss,val_miou\n0,0,1.0,\n0,1,0.8,\n0,1,,0.3\n1,3,0.5,0.4\n")
    assert plot_curves(csv, tmp_path / "curves.png")
    assert not plot_curves(tmp_path / "none.csv", tmp_path / "x.png")
    image = np.zeros((16, 20, 3), np.uint8)
    gt = np.zeros((16, 20), np.int64)
    gt[0] = 255
    assert plot_overlays([("a", image, gt, gt.clip(0, 1))], tmp_path / "ov.png", [(0, 0, 0), (255, 0, 0)])
    plot_confusion([[5, 1], [0, 0]], ["bg", "gland"], tmp_path / "cm.png")
    for name in ("curves.png", "ov.png", "cm.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
