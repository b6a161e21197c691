"""``pathseg finetune --task instance`` trains through the engine and ``metrics.json`` holds the test metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathseg.cli.main import main
from pathseg.metrics import instance_metrics
from ssl_helpers import one_thread
from test_tasks_instance import make_instance_set

_threads = pytest.fixture(autouse=True)(one_thread)


def test_finetune_instance_hover_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_instance_set(tmp_path / "d", n=2, size=64)
    out = tmp_path / "run"
    code = main(["finetune", "--task", "instance", "--data", str(data), "--out", str(out), "--val-split", "",
                 "--test-split", "val", "--crop-size", "64", "trainer.max_steps=2", "trainer.val_every_steps=2",
                 "trainer.batch_size=2", "trainer.num_workers=0", "trainer.accelerator=cpu",
                 "trainer.progress_bar=false", "inference.num_examples=1"])
    assert code == 0, capsys.readouterr().err
    assert "aji" in capsys.readouterr().out
    seed = json.loads((out / "seed_0" / "metrics.json").read_text())
    assert seed["model"] == "hover" and seed["objects"] == "nuclei"
    # the written predictions reproduce the reported metrics (independent recomputation per image)
    scores = []
    for i in range(2):
        pred = tifffile.imread(out / "seed_0" / "predictions" / f"im{i}.tif")
        true = tifffile.imread(data / "val" / "instances" / f"im{i}.tif")
        scores.append(instance_metrics(pred, true)["aji"])
    assert seed["aji"] == pytest.approx(float(np.mean(scores)), abs=1e-9)
    assert json.loads((out / "metrics.json").read_text())["aji"] == pytest.approx(seed["aji"])
    assert (out / "seed_0" / "model_best.safetensors").is_file() and (out / "seed_0" / "predictions.png").is_file()


def test_evaluate_reproduces_an_instance_run_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_instance_set(tmp_path / "d", n=2, size=64)
    out = tmp_path / "run"
    args = ["finetune", "--task", "instance", "--model", "contour", "--data", str(data), "--out", str(out),
            "--val-split", "", "--test-split", "val", "--crop-size", "64", "trainer.max_steps=2",
            "trainer.val_every_steps=2", "trainer.batch_size=2", "trainer.num_workers=0", "trainer.accelerator=cpu",
            "trainer.progress_bar=false", "inference.num_examples=1"]
    assert main(args) == 0, capsys.readouterr().err
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", "val", "--device", "cpu"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    again = json.loads((out / "eval_synth-nuclei_val.json").read_text())
    for key in ("aji", "aji_plus", "pq", "object_f1", "object_dice", "object_hausdorff", "dice"):
        assert again[key] == first[key], key
    assert first["per_seed"]["0"]["model"] == "contour"
