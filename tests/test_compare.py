"""``pathseg compare`` end to end on tiny synthetic data: random init vs a 2-step MoCo v2, one seed, one fraction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from pathseg.cli.main import main
from pathseg.compare.config import CompareConfig
from pathseg.compare.runner import run_compare
from pathseg.config import load_config
from ssl_helpers import make_unlabeled, one_thread
from tasks_helpers import make_segmentation_set

_threads = pytest.fixture(autouse=True)(one_thread)
ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=2", "trainer.val_every_steps=1", "trainer.batch_size=2", "trainer.num_workers=0",
        "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "trainer.progress_bar=false",
        "optim.warmup_steps=1", "crop_size=64", "backbone=resnet18", "val_split="]
TINY_PRETRAIN = ["crop_size=32", "batch_size=4", "num_workers=0", "method_args.queue_size=16",
                 "trainer.max_steps=2", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
                 "checkpoint.every_n_steps=1"]


def _write_config(tmp: Path, lr_override: str = "") -> Path:
    unlabeled = make_unlabeled(tmp / "unlabeled", n=8, size=40)
    seg = make_segmentation_set(tmp / "seg", splits={"train": 3, "test": 2}, size=(64, 70))
    moco_ft = [lr_override] if lr_override else []
    config = {
        "unlabeled": str(unlabeled), "fractions": [1.0], "seeds": [0],
        "methods": [{"name": "random", "encoder": "random"},
                    {"name": "mocov2", "pretrain": str(ROOT / "configs/pretrain/mocov2_cpu_tiny.yaml"),
                     "overrides": TINY_PRETRAIN, "finetune_overrides": moco_ft}],
        "tasks": [{"name": "synth", "data": str(seg), "task": "segmentation", "overrides": FAST}],
    }
    path = tmp / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_compare_table_equals_cells_and_reruns_only_changed_cells(tmp_path, capsys):
    config, out = _write_config(tmp_path), tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--out", str(out)]) == 0, capsys.readouterr().err
    assert "3 jobs run, 0 skipped" in capsys.readouterr().out
    assert (out / "pretrain" / "mocov2" / "encoder.safetensors").is_file()

    rows = _csv_rows(out / "results.csv")
    assert [(r["method"], r["task"], r["fraction"], r["seed"]) for r in rows] == [
        ("random", "synth", "1.0", "0"), ("mocov2", "synth", "1.0", "0")]
    scores = {}
    for r in rows:
        cell = json.loads((out / "cells" / f"{r['method']}__synth__f1" / "metrics.json").read_text())
        seed = cell["per_seed"]["0"]
        assert r["metric"] == "miou"
        assert float(r["score"]) == pytest.approx(seed["miou"], abs=1e-12)
        assert float(r["mdice"]) == pytest.approx(seed["mdice"], abs=1e-12)
        assert float(r["pixel_accuracy"]) == pytest.approx(seed["pixel_accuracy"], abs=1e-12)
        assert cell["encoder"] == ("random" if r["method"] == "random" else
                                   str(out / "pretrain" / "mocov2" / "encoder.safetensors"))
        scores[r["method"]] = seed["miou"]
    md = (out / "results.md").read_text()
    best = max(scores.values())
    assert f"**{best:.4f} ± 0.0000**" in md
    diff = scores["mocov2"] - scores["random"]
    signs = (int(diff > 0), int(diff < 0), int(diff == 0))
    assert f"| mocov2 | {diff:+.4f} ({signs[0]}/{signs[1]}/{signs[2]} of 1) |" in md
    for name in ("synth_miou.png", "cost.png"):
        assert (out / "plots" / name).stat().st_size > 1000

    cfg = load_config(CompareConfig, config, values={"out": str(out)})
    again = run_compare(cfg)  # same config: every pretraining and cell is skipped
    assert again.ran == [] and sorted(again.skipped) == ["mocov2__synth__f1", "pretrain/mocov2", "random__synth__f1"]
    assert _csv_rows(out / "results.csv") == rows

    random_metrics = (out / "cells" / "random__synth__f1" / "metrics.json").stat().st_mtime_ns
    changed = load_config(CompareConfig, _write_config(tmp_path, "optim.lr=0.005"), values={"out": str(out)})
    third = run_compare(changed)  # only mocov2's fine-tuning changed
    assert third.ran == ["mocov2__synth__f1"]
    assert sorted(third.skipped) == ["pretrain/mocov2", "random__synth__f1"]
    assert (out / "cells" / "random__synth__f1" / "metrics.json").stat().st_mtime_ns == random_metrics
    moco = json.loads((out / "cells" / "mocov2__synth__f1" / "metrics.json").read_text())
    assert yaml.safe_load((out / "cells" / "mocov2__synth__f1" / "config.yaml").read_text())["optim"]["lr"] == 0.005
    new_row = next(r for r in _csv_rows(out / "results.csv") if r["method"] == "mocov2")
    assert float(new_row["score"]) == pytest.approx(moco["per_seed"]["0"]["miou"], abs=1e-12)

    # a comparison killed after the pretraining's checkpoint but before its export: resumes only that job
    (out / "pretrain" / "mocov2" / "compare_key.json").unlink()
    (out / "pretrain" / "mocov2" / "encoder.safetensors").unlink()
    (out / "cells" / "random__synth__f1" / "compare_key.json").unlink()  # and one unfinished cell
    fourth = run_compare(changed)
    assert fourth.ran == ["pretrain/mocov2", "random__synth__f1"] and fourth.skipped == ["mocov2__synth__f1"]
    run = json.loads((out / "pretrain" / "mocov2" / "metrics.json").read_text())
    assert run["steps"] == 2  # continued from checkpoints/last.ckpt, no step repeated
