"""`pathseg demo` with tiny settings: every step runs and writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathseg.cli.main import main


def test_demo_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--size", "64", "--n-train", "8", "--n-test", "4", "--n-unlabeled", "4",
            "--epochs", "1", "--time-limit-s", "30"]
    assert main(args) == 0
    text = capsys.readouterr().out
    for step in ("synth", "check", "train", "evaluate", "pictures", "summary"):
        assert f"] {step}:" in text
    for name in ("config.yaml", "run.json", "metrics.json", "summary.md", "summary.json", "examples.png",
                 "predictions.png", "data/seg/dataset.yaml", "data/unlabeled/dataset.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["evaluate"]["miou"] <= 1.0
    assert summary["train"]["epochs"] in (0, 1)  # 0 when the time budget ends the first epoch
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["metrics"]["miou"] == summary["evaluate"]["miou"]
    assert "Learnability check" in (out / "summary.md").read_text()
    assert main(args) == 2  # exists: needs --overwrite
    assert capsys.readouterr().err.startswith("error:")


def test_demo_rejects_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "50"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
