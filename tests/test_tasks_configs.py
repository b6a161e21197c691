"""Every shipped configs/finetune/*.yaml loads and runs a 1-2 step smoke on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathseg.cli.main import main
from pathseg.config import load_config
from pathseg.tasks.config import FinetuneConfig
from tasks_helpers import make_classification_set, make_segmentation_set

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "finetune").glob("*.yaml"))
SMOKE = ["trainer.max_steps=1", "trainer.val_every_steps=1", "trainer.batch_size=2", "trainer.num_workers=0",
         "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true", "crop_size=64",
         "--seeds", "0", "inference.num_examples=1"]


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"glas_unet_r18.yaml", "synth_smoke.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_runs(path, tmp_path, capsys):
    cfg = load_config(FinetuneConfig, path, values={"data": "d", "out": "o"})  # data and out come from flags
    if cfg.task == "segmentation":
        data = make_segmentation_set(tmp_path / "d", splits={cfg.train_split: 2, cfg.test_split: 1}, size=(64, 70))
    else:
        data = make_classification_set(tmp_path / "c", splits={"train": 4, cfg.test_split: 3})
    out = tmp_path / "run"
    code = main(["finetune", "--config", str(path), "--data", str(data), "--out", str(out), *SMOKE])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
