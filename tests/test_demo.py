"""`pathseg demo` with tiny settings: every step runs and writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathseg.cli.main import main


def test_demo_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--size", "64", "--n-train", "8", "--n-test", "4", "--n-unlabeled", "8",
            "--crop", "64", "--pretrain-steps", "2", "--pretrain-batch-size", "4", "--finetune-steps", "2",
            "--finetune-batch-size", "2", "--label-fraction", "0.5"]
    assert main(args) == 0
    text = capsys.readouterr().out
    for step in ("synth", "check", "pretrain", "export", "finetune-random", "finetune-mocov2", "frozen-random",
                 "frozen-mocov2", "pictures", "summary"):
        assert f"] {step}:" in text
    for name in ("config.yaml", "run.json", "metrics.json", "summary.md", "summary.json", "examples.png",
                 "data/seg/dataset.yaml", "data/unlabeled/dataset.yaml", "encoder_mocov2.safetensors",
                 "finetune_random/metrics.json", "finetune_mocov2/metrics.json",
                 "finetune_mocov2/seed_0/predictions.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for run in ("finetune_random", "finetune_mocov2", "frozen_random", "frozen_mocov2"):  # the runs' own numbers
        assert summary[run]["miou"] == json.loads((out / run / "metrics.json").read_text())["miou"]
    assert summary["pretrain"]["steps"] == 2
    cfg_mocov2 = json.loads((out / "finetune_mocov2" / "metrics.json").read_text())
    assert cfg_mocov2["encoder"].endswith("encoder_mocov2.safetensors")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["metrics"]["miou_random"] == summary["finetune_random"]["miou"]
    md = (out / "summary.md").read_text()
    assert "Fine-tuning side by side" in md and "MoCo v2 (this run)" in md and "frozen MoCo v2 encoder" in md
    from safetensors.torch import load_file  # the frozen protocol really keeps the pretrained encoder

    enc = load_file(str(out / "encoder_mocov2.safetensors"))
    last = load_file(str(out / "frozen_mocov2" / "seed_0" / "model_last.safetensors"))
    assert all((last[f"encoder.model.{k}"] == v).all() for k, v in enc.items())
    assert "freeze_encoder: true" in (out / "frozen_mocov2" / "config.yaml").read_text()
    assert main(args) == 2  # exists: needs --overwrite
    assert capsys.readouterr().err.startswith("error:")


def test_demo_rejects_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "50"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
