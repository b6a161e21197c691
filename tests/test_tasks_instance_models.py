"""Instance models: encoder files load by name, training steps change weights, evaluation writes what it returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pathseg.metrics import instance_metrics
from pathseg.tasks.instance.config import InstanceSection
from pathseg.tasks.instance.dataset import InstanceDataset
from pathseg.tasks.instance.factory import InstanceModelSpec, build_instance_model, load_instance_model, targets_for
from tasks_helpers import write_encoder_file
from test_tasks_instance import make_instance_set

FAST_RCNN = {"detections_per_img": 20, "rpn_proposals": 50, "roi_batch": 32}  # CPU-sized Mask R-CNN


def test_maskrcnn_trunk_loads_an_encoder_file_by_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from safetensors.torch import load_file

    from pathseg.tasks.instance.maskrcnn import build_maskrcnn

    path = write_encoder_file(tmp_path / "enc.safetensors", "resnet18")
    saved = load_file(str(path))
    with caplog.at_level(logging.INFO, logger="pathseg"):
        model = build_maskrcnn("resnet18", encoder_weights=path, anchor_sizes=(8, 16, 32, 64, 128))
    # the frozen-BN trunk has no num_batches_tracked: that is not worth a warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "num_batches_tracked" not in caplog.text and "20 tolerated" in caplog.text  # counted, not listed
    trunk = model.detector.backbone.body.state_dict()
    shared = [k for k in saved if k in trunk]
    assert "conv1.weight" in shared and "layer4.1.bn2.running_var" in shared and "layer1.0.conv1.weight" in shared
    assert len(shared) == len([k for k in saved if not k.endswith("num_batches_tracked")])  # every tensor lands
    for key in shared:
        torch.testing.assert_close(trunk[key], saved[key], rtol=0, atol=0)
    random = build_maskrcnn("resnet18", anchor_sizes=(8, 16, 32, 64, 128)).detector.backbone.body.state_dict()
    assert not torch.equal(random["conv1.weight"], saved["conv1.weight"])


def test_maskrcnn_trunk_refuses_weights_of_another_resnet(tmp_path: Path) -> None:
    from pathseg.errors import PathsegError
    from pathseg.tasks.instance.maskrcnn import build_maskrcnn

    path = write_encoder_file(tmp_path / "enc34.safetensors", "resnet34")
    with pytest.raises(PathsegError, match="resnet34"):  # the message names what the file looks like
        build_maskrcnn("resnet18", encoder_weights=path, anchor_sizes=(8, 16, 32, 64, 128))


def test_proposal_free_encoder_loads_by_name(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    path = write_encoder_file(tmp_path / "enc.safetensors", "resnet18")
    model = build_instance_model(InstanceSection(model="hover").resolved("nuclei"), "resnet18", path)
    torch.testing.assert_close(model.encoder.model.conv1.weight, load_file(str(path))["conv1.weight"])
    out = model(torch.randn(1, 3, 50, 70))  # any size: padded to a multiple of 32, cropped back
    assert out.shape == (1, 4, 50, 70)


def _fit(model_name: str, root: Path, folder: Path, steps: int = 1, validate: bool = False) -> tuple[object, object]:
    from pathseg.tasks.instance.module import InstanceModule
    from pathseg.tasks.instance.train import fit_instance, loaders
    from pathseg.train.config import TrainerConfig

    torch.manual_seed(0)
    section = InstanceSection(model=model_name, semantic_head=model_name == "maskrcnn",  # type: ignore[arg-type]
                              **FAST_RCNN).resolved("nuclei")
    model = build_instance_model(section, "resnet18")
    kw = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    train = InstanceDataset(root, "train", targets=targets_for(section), crop_size=64, train=True, **kw)
    val = InstanceDataset(root, "val", targets=targets_for(section), **kw) if validate else None
    train_loader, val_loader = loaders(train, val, batch_size=2, val_every_steps=1)
    module = InstanceModule(model, monitor=section.monitor, lr=1e-3, warmup_steps=0, max_steps=steps)
    cfg = TrainerConfig(max_steps=steps, accelerator="cpu", devices="1", progress_bar=False, log_every_n_steps=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    best = fit_instance(module, train_loader, val_loader, cfg, folder)
    after = model.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert changed, "no weight changed"
    assert any(k.startswith(("net.encoder", "detector.backbone.body")) for k in changed)  # the trunk trains too
    return module, best


@pytest.mark.parametrize("model_name", ["hover", "contour", pytest.param("maskrcnn", marks=pytest.mark.slow)])
def test_one_training_step_changes_weights(model_name: str, tmp_path: Path) -> None:
    root = make_instance_set(tmp_path / "ds", n=2)
    _fit(model_name, root, tmp_path / "run")
    assert (tmp_path / "run" / "model_best.safetensors").is_file()


@pytest.mark.slow
def test_validation_selects_best_weights_by_monitor(tmp_path: Path) -> None:
    root = make_instance_set(tmp_path / "ds", n=2)
    module, best = _fit("hover", root, tmp_path / "run", steps=2, validate=True)
    scores = [h["aji"] for h in module.history]  # type: ignore[attr-defined]
    assert len(scores) == 2 and best.best_score == pytest.approx(max(scores))  # type: ignore[attr-defined]


class ColourNet(nn.Module):
    """A 1x1 convolution whose foreground logit follows the red channel (the synthetic nuclei are dark)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.encoder.weight.zero_()
            self.encoder.bias.zero_()
            self.encoder.weight[1, 0] = -5.0  # normalised red: nuclei about -0.6, background about 1.6
            self.encoder.bias[1] = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # type: ignore[no-any-return]


@pytest.mark.parametrize("model_name", ["hover", pytest.param("maskrcnn", marks=pytest.mark.slow)])
def test_evaluation_writes_the_returned_prediction(model_name: str, tmp_path: Path) -> None:
    import tifffile

    from pathseg.tasks.instance.evaluation import evaluate_instance, plot_instance_examples
    from pathseg.tasks.instance.proposal_free import ProposalFreeModel

    root = make_instance_set(tmp_path / "ds", n=2)
    torch.manual_seed(0)
    if model_name == "hover":
        model: nn.Module = ProposalFreeModel(ColourNet(), "hover")
    else:
        section = InstanceSection(model="maskrcnn", score_threshold=0.0, **FAST_RCNN).resolved("nuclei")
        model = build_instance_model(section, "resnet18")
    ds = InstanceDataset(root, "val", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    metrics, examples = evaluate_instance(model, ds, pred_dir=tmp_path / "pred", num_examples=2)
    for sid, _, true, pred in examples:
        assert pred.max() > 0
        written = tifffile.imread(tmp_path / "pred" / f"{sid}.tif")
        np.testing.assert_array_equal(written, pred)
        assert metrics["per_image"][sid] == instance_metrics(written, true)
    assert metrics["num_images"] == 2
    assert ("mask_ap" in metrics) == (model_name == "maskrcnn")
    if model_name == "hover":  # colour thresholding finds every nucleus; touching ones merge
        assert metrics["dice"] > 0.95 and metrics["object_dice"] > 0.5
    assert plot_instance_examples(examples, tmp_path / "pred.png")


def test_saved_model_rebuilds_exactly(tmp_path: Path) -> None:
    from pathseg.tasks.common import save_weights

    section = InstanceSection(model="contour").resolved("glands")
    model = build_instance_model(section, "resnet18").eval()
    spec = InstanceModelSpec(encoder="resnet18", section=dataclasses.asdict(section))
    spec.save(tmp_path / "seed")
    save_weights(model, tmp_path / "seed" / "model_best.safetensors")
    again, loaded = load_instance_model(tmp_path / "seed")
    assert loaded.instance_section() == section
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_contour_overlay_colours_only_contours() -> None:
    from pathseg.tasks.instance.evaluation import contour_overlay

    image = np.full((8, 8, 3), 100, np.uint8)
    inst = np.zeros((8, 8), int)
    inst[2:6, 2:6] = 5
    out = contour_overlay(image, inst)
    ring = np.zeros((8, 8), bool)
    ring[2:6, 2:6] = True
    ring[3:5, 3:5] = False
    assert np.all(np.any(out[ring] != 100, axis=1)) and np.all(out[~ring] == 100)
