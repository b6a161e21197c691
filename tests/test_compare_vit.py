"""ViT encoders as compare entries: a plain timm ViT safetensors file (a foundation model's layout) loads into the
fine-tuning model, a frozen one stays bit-identical through training, and a compare cell with it runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from pathseg.cli.main import main
from pathseg.errors import ConfigError, PathsegError
from pathseg.models import create_segmentation_model, read_encoder
from pathseg.models.vit import detect_timm_name, dpt_channels
from pathseg.tasks.common import ModelSpec, build_model, resolve_encoder
from ssl_helpers import one_thread
from tasks_helpers import make_segmentation_set

_threads = pytest.fixture(autouse=True)(one_thread)
VIT = "vit_tiny_patch16_224"  # the layout of vit_small_patch16_224 at width 192: same code path, 4x faster


def _vit_file(path: Path, name: str = VIT, prefix: str = "") -> tuple[Path, dict[str, torch.Tensor]]:
    """A plain timm state dict (no pathseg metadata, classifier head included), as a foundation model ships."""
    import timm

    torch.manual_seed(123)
    state = {prefix + k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    save_file(state, str(path))
    return path, state


def test_detects_vit_names_from_tensor_layout() -> None:
    import timm

    for name in ("vit_small_patch16_224", "vit_base_patch32_384", "resnet50"):
        with torch.device("meta"):
            state = timm.create_model(name, pretrained=False, num_classes=0).state_dict()
        assert detect_timm_name(state) == name
        assert detect_timm_name({f"model.{k}": v for k, v in state.items()}) == name
    with torch.device("meta"):
        reg = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False).state_dict()
    assert detect_timm_name(reg) is None  # DINOv2 layout (registers, LayerScale): backbone= is needed
    assert dpt_channels(384) == ([96, 192, 384, 384], 256)


def test_plain_vit_file_loads_into_the_finetuning_model_tensor_for_tensor(tmp_path: Path) -> None:
    path, state = _vit_file(tmp_path / "fm.safetensors", prefix="model.")
    enc = resolve_encoder(str(path))
    assert enc.timm_name == VIT and enc.weights == path
    spec = ModelSpec(task="segmentation", encoder=enc.timm_name, num_classes=3, decoder="dpt", window=64)
    model = build_model(spec, encoder_weights=enc.weights)
    loaded = model.encoder.model.state_dict()  # type: ignore[union-attr]
    expected = {k[len("model."):]: v for k, v in state.items() if not k.startswith("model.head.")}
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="use decoder=dpt"):
        create_segmentation_model("unet", VIT, 3)


def test_vit_file_of_unknown_layout_needs_backbone(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file({"trunk.w": torch.zeros(2, 2)}, str(path))
    with pytest.raises(PathsegError, match="backbone="):
        read_encoder(path)
    assert read_encoder(path, "vit_small_patch16_224")[1].timm_name == "vit_small_patch16_224"
    deit, _ = _vit_file(tmp_path / "deit.safetensors", "deit_tiny_patch16_224")  # same tensors as vit_tiny
    assert resolve_encoder(str(deit)).timm_name == VIT
    assert resolve_encoder(str(deit), "deit_tiny_patch16_224").timm_name == "deit_tiny_patch16_224"


FAST = ["trainer.max_steps=3", "trainer.val_every_steps=3", "trainer.batch_size=2", "trainer.num_workers=0",
        "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "trainer.progress_bar=false",
        "optim.warmup_steps=0", "crop_size=64", "val_split=", "inference.num_examples=0"]


def test_compare_cell_with_a_frozen_vit_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, state = _vit_file(tmp_path / "fm.safetensors")
    seg = make_segmentation_set(tmp_path / "seg", splits={"train": 3, "test": 3}, size=(64, 80))
    config = {"fractions": [1.0], "seeds": [0], "baselines": ["random"],
              "methods": [{"name": "random", "encoder": "random"},
                          {"name": "vit_frozen", "encoder": str(path),
                           "finetune_overrides": ["decoder=dpt", "freeze_encoder=true"]}],
              "tasks": [{"name": "synth", "data": str(seg), "overrides": FAST, "test_images": 2}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(tmp_path / "c.yaml"), "--out", str(out)]) == 0, capsys.readouterr().err

    cell = out / "cells" / "vit_frozen__synth__f1"
    last = load_file(str(cell / "seed_0" / "model_last.safetensors"))
    for key, value in state.items():
        if not key.startswith("head."):
            assert torch.equal(last[f"encoder.model.{key}"], value), key  # frozen: bit-identical after 3 steps
    import lightning as L

    spec = ModelSpec.load(cell / "seed_0" / "model.json")
    assert spec.decoder == "dpt" and spec.encoder == VIT
    L.seed_everything(0, workers=True, verbose=False)  # the seed's own initialisation, replayed
    init = dict(build_model(spec, encoder_weights=path).named_parameters())  # parameters: BN buffers move anyway
    head = [k for k in init if k.startswith(("decoder.", "segmentation_head."))]
    changed = [k for k in head if not torch.equal(last[k], init[k].detach())]
    assert changed  # the decoder trained (with optim.lr=0 this list is empty: the replay is exact)

    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["per_seed"]["0"]["num_images"] == 2 and metrics["test_split"] == "test_first2"
    assert (seg / "splits" / "test_first2.txt").read_text().splitlines()[1:] == [
        "# pathseg compare: the first 2 images of test", "img0", "img1"]
    with (out / "results.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["method"] == "vit_frozen")
    assert float(row["score"]) == pytest.approx(metrics["per_seed"]["0"]["miou"], abs=1e-12)
