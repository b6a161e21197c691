"""finetune / evaluate end to end on a tiny synthetic data set (resnet18, 64 px, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathseg.cli.main import main
from tasks_helpers import make_classification_set, make_segmentation_set, write_encoder_file

FAST = ["trainer.max_steps=2", "trainer.val_every_steps=1", "trainer.batch_size=2", "trainer.num_workers=0",
        "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "optim.warmup_steps=1"]


def test_finetune_segmentation_then_evaluate(tmp_path, capsys):
    data = make_segmentation_set(tmp_path / "d", splits={"train": 4, "val": 1, "test": 2}, size=(64, 70))
    out = tmp_path / "run"
    code = main(["finetune", "--task", "segmentation", "--data", str(data), "--encoder", "random",
                 "--decoder", "unet", "--out", str(out), "--label-fraction", "0.5", "--seeds", "0,1",
                 "--crop-size", "64", *FAST])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("miou", "mdice", "fwiou", "pixel_accuracy", "iou_per_class", "dice_per_class"):
        assert key in metrics and f"{key}_std" in metrics
    assert metrics["seeds"] == [0, 1] and set(metrics["per_seed"]) == {"0", "1"}
    assert metrics["per_seed"]["0"]["num_train_images"] == 2
    for seed in "01":  # each seed's mIoU is the mean IoU of its own confusion matrix, recomputed here
        cm = np.array(metrics["per_seed"][seed]["confusion_matrix"], dtype=float)
        tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
        assert metrics["per_seed"][seed]["miou"] == pytest.approx(float(np.mean(tp[union > 0] / union[union > 0])))
    mean = sum(metrics["per_seed"][s]["miou"] for s in "01") / 2
    assert metrics["miou"] == pytest.approx(mean)
    for name in ("config.yaml", "run.json", "seed_0/model.json", "seed_0/model_best.safetensors",
                 "seed_0/model_last.safetensors", "seed_0/curves.png", "seed_0/predictions.png",
                 "seed_0/confusion_matrix.png", "seed_1/metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "run.json").read_text())["status"] == "completed"

    code = main(["evaluate", "--run", str(out), "--data", str(data), "--split", "test"])
    assert code == 0
    again = json.loads((out / "eval_synth_test.json").read_text())
    assert again["miou"] == pytest.approx(metrics["miou"], abs=1e-6)
    assert (out / "seed_1" / "eval_synth_test_predictions.png").is_file()


def test_finetune_with_encoder_file_and_frozen_encoder(tmp_path, capsys):
    data = make_segmentation_set(tmp_path / "d", splits={"train": 3, "testA": 1})
    enc = write_encoder_file(tmp_path / "enc.safetensors")
    out = tmp_path / "run"
    code = main(["finetune", "--data", str(data), "--encoder", str(enc), "--out", str(out), "--freeze-encoder",
                 "--test-split", "testA", "--crop-size", "64", "--decoder", "fpn", *FAST])
    assert code == 0, capsys.readouterr().err
    spec = json.loads((out / "seed_0" / "model.json").read_text())
    assert spec["encoder"] == "resnet18" and spec["mean"] == [0.5, 0.5, 0.5] and spec["decoder"] == "fpn"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_split"] == "testA" and metrics["per_seed"]["0"]["weights"] == "last"  # no val split


def test_backbone_disagreeing_with_encoder_file_is_refused(tmp_path, capsys):
    data = make_segmentation_set(tmp_path / "d", splits={"train": 2, "test": 1})
    enc = write_encoder_file(tmp_path / "enc.safetensors")
    code = main(["finetune", "--data", str(data), "--encoder", str(enc), "--backbone", "resnet50",
                 "--out", str(tmp_path / "run"), *FAST])
    assert code == 2
    assert "disagrees" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    data = make_segmentation_set(tmp_path / "d", splits={"train": 2, "test": 1})
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "r"), "--test-split", "nope"]) == 2
    assert "split 'nope' not found" in capsys.readouterr().err
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "r"), "--crop-size", "50"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "r"), "--encoder", "missing.st"]) == 2
    assert "encoder file not found" in capsys.readouterr().err
    assert main(["finetune", "--out", str(tmp_path / "r")]) == 2
    assert "missing required value 'data' (give --data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_finetune_classification(tmp_path, capsys):
    data = make_classification_set(tmp_path / "c", splits={"train": 6, "val": 3, "test": 3})
    out = tmp_path / "run"
    code = main(["finetune", "--task", "classification", "--data", str(data), "--out", str(out),
                 "--crop-size", "32", *FAST])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
        assert key in metrics
    assert (out / "seed_0" / "confusion_matrix.png").is_file()
    assert metrics["per_seed"]["0"]["weights"] == "best"
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", "test"]) == 0
    again = json.loads((out / "eval_synthcls_test.json").read_text())
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])


def test_evaluate_refuses_a_directory_without_models(tmp_path, capsys):
    data = make_segmentation_set(tmp_path / "d", splits={"test": 1})
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--run", str(tmp_path / "empty"), "--data", str(data)]) == 2
    assert "no seed_<s>/model.json" in capsys.readouterr().err


def test_interrupted_finetune_resumes_finished_seeds(tmp_path, capsys, monkeypatch):
    import pathseg.tasks.finetune as ft

    data = make_segmentation_set(tmp_path / "d", splits={"train": 2, "test": 1})
    out = tmp_path / "run"
    args = ["finetune", "--data", str(data), "--encoder", "random", "--out", str(out), "--seeds", "0,1",
            "--crop-size", "64", *FAST]
    real = ft.run_seed
    trained: list[int] = []

    def killed_at_seed_1(cfg, plan):
        if plan.seed == 1:
            raise KeyboardInterrupt  # as if killed while training seed 1
        trained.append(plan.seed)
        return real(cfg, plan)

    monkeypatch.setattr(ft, "run_seed", killed_at_seed_1)
    assert main(args) != 0
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written under the final name
    partial = tmp_path / ".run.partial"
    assert (partial / "seed_0" / "metrics.json").is_file()
    seed0 = json.loads((partial / "seed_0" / "metrics.json").read_text())

    def count(cfg, plan):
        trained.append(plan.seed)
        return real(cfg, plan)

    monkeypatch.setattr(ft, "run_seed", count)
    assert main(args) == 0
    assert trained == [0, 1]  # seed 0 once before the interruption, seed 1 once after it
    assert "seed 0: finished already" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_seed"]["0"]["miou"] == seed0["miou"] and set(metrics["per_seed"]) == {"0", "1"}
    assert not partial.exists() and not (out / ".resume-key.json").exists()

    # a partial run with another config is started afresh, not mixed in
    monkeypatch.setattr(ft, "run_seed", killed_at_seed_1)
    assert main([*args, "--overwrite"]) != 0
    trained.clear()
    monkeypatch.setattr(ft, "run_seed", count)
    assert main([*args, "--overwrite", "optim.lr=0.0005"]) == 0
    assert trained == [0, 1]
