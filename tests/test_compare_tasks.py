"""``pathseg compare`` cells of the other task kinds: a linear probe, a fine-tuned classifier and an instance model
(contour), two seeds each; the table's numbers must equal each cell's ``metrics.json`` (per seed, and mean ± std)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from pathseg.cli.main import main
from ssl_helpers import one_thread
from tasks_helpers import make_classification_set
from test_tasks_instance import make_instance_set

_threads = pytest.fixture(autouse=True)(one_thread)
TRAIN = ["trainer.max_steps=2", "trainer.val_every_steps=2", "trainer.batch_size=2", "trainer.num_workers=0",
         "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "trainer.progress_bar=false",
         "optim.warmup_steps=0", "val_split=", "inference.num_examples=0"]


def _config(tmp: Path) -> Path:
    cls = make_classification_set(tmp / "cls", splits={"train": 6, "test": 6}, size=32)
    inst = make_instance_set(tmp / "inst", n=2, size=64)
    config = {
        "fractions": [1.0], "seeds": [0, 1], "baselines": ["random"],
        "methods": [{"name": "random", "encoder": "random"}],
        "tasks": [
            {"name": "probe", "data": str(cls), "task": "probe",
             "overrides": ["epochs=20", "device=cpu", "batch_size=6", "image_size=32"]},
            {"name": "cls", "data": str(cls), "task": "classification", "overrides": [*TRAIN, "crop_size=32"]},
            {"name": "nuclei", "data": str(inst), "task": "instance",
             "overrides": [*TRAIN, "model=contour", "test_split=val", "crop_size=64"]},
        ],
    }
    path = tmp / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_probe_classification_and_instance_cells_table_equals_metrics(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(_config(tmp_path)), "--out", str(out)]) == 0, capsys.readouterr().err
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["seed"], r["metric"]) for r in rows] == [
        ("probe", "0", "balanced_accuracy"), ("probe", "1", "balanced_accuracy"),
        ("cls", "0", "balanced_accuracy"), ("cls", "1", "balanced_accuracy"),
        ("nuclei", "0", "aji"), ("nuclei", "1", "aji")]
    md = (out / "results.md").read_text()
    for task, extra in (("probe", "accuracy"), ("cls", "accuracy"), ("nuclei", "pq")):
        cell = json.loads((out / "cells" / f"random__{task}__f1" / "metrics.json").read_text())
        mine = [r for r in rows if r["task"] == task]
        for r in mine:
            seed = cell["per_seed"][r["seed"]]
            assert float(r["score"]) == pytest.approx(seed[r["metric"]], abs=1e-12), (task, r["seed"])
            assert float(r[extra]) == pytest.approx(seed[extra], abs=1e-12), (task, extra)
        metric = mine[0]["metric"]
        scores = [cell["per_seed"][s][metric] for s in ("0", "1")]
        assert cell[metric] == pytest.approx(sum(scores) / 2, abs=1e-12)  # the cell's own mean, independently
        assert f"| random | **{cell[metric]:.4f} ± {_std(scores):.4f}** |" in md, task
        assert f"## {task} ({metric}, mean ± std over seeds [0, 1])" in md
    probe = json.loads((out / "cells" / "random__probe__f1" / "metrics.json").read_text())
    assert probe["kind"] == "linear" and probe["num_train_images"] == 6
    nuclei = json.loads((out / "cells" / "random__nuclei__f1" / "metrics.json").read_text())
    assert nuclei["per_seed"]["0"]["model"] == "contour" and nuclei["objects"] == "nuclei"
    assert (out / "plots" / "nuclei_aji.png").is_file() and (out / "plots" / "probe_balanced_accuracy.png").is_file()
