"""Smoke test of ``pathseg wsss`` on a tiny synthetic patch-label set: three stages, resume, rerun, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathseg.cli.main import main
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.io import read_mask, write_png

SIZE = 32


def _make_set(root: Path, with_background: bool) -> Path:
    """Two tissue classes: class 0 = red left half, class 1 = blue right half; optional white exclude class 2."""
    rng = np.random.default_rng(0)
    classes = [ClassInfo("red", 0, (255, 0, 0)), ClassInfo("blue", 1, (0, 0, 255))]
    if with_background:
        classes.append(ClassInfo("background", 2, (255, 255, 255)))
    write_dataset_info(root, DatasetInfo(name="toy", task="patch_labels", classes=classes,
                                         exclude_index=2 if with_background else None))
    for split, n in (("train", 6), ("test", 2)):
        rows = []
        for i in range(n):
            kind = i % 3  # 0: red only, 1: blue only, 2: both
            img = rng.integers(0, 60, size=(SIZE, SIZE, 3)).astype(np.uint8)
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            if kind == 0:
                img[..., 0] += 180
            elif kind == 1:
                img[..., 2] += 180
                mask[:] = 1
            else:
                img[:, : SIZE // 2, 0] += 180
                img[:, SIZE // 2 :, 2] += 180
                mask[:, SIZE // 2 :] = 1
            if with_background:
                img[:8, :8] = 255
                mask[:8, :8] = 2
            sid = f"p{i}"
            write_png(root / split / "images" / f"{sid}.png", img)
            write_png(root / split / "masks" / f"{sid}.png", mask)
            rows.append({"id": sid, "red": int(kind != 1), "blue": int(kind != 0)})
        with open(root / split / "labels.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "red", "blue"])
            writer.writeheader()
            writer.writerows(rows)
    return root


FAST = [
    "--device", "cpu", "stage1.epochs=1", "stage1.batch_size=3", "stage1.max_steps=2", "pseudo.batch_size=3",
    "stage2.epochs=1", "stage2.batch_size=3", "stage2.max_steps=2",
]


def test_wsss_pipeline_runs_resumes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _make_set(tmp_path / "toy", with_background=True)
    out = tmp_path / "run"
    assert main(["wsss", "--data", str(data), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "[3/3] stage2: finished" in text
    for stage in ("stage1", "pseudo", "stage2"):
        assert (out / stage / "done.json").is_file()
    for layer in ("deep", "mid", "shallow"):
        pm = read_mask(out / "pseudo" / layer / "train" / "masks" / "p0.png")
        assert pm.shape == (SIZE, SIZE) and set(np.unique(pm)) <= {0, 1, 2, 255}
        assert (pm[:8, :8] == 2).all()  # white-background rule
        assert (read_mask(out / "pseudo" / layer / "train" / "masks" / "p1.png")[8:, 8:] == 1).all()  # one label
        assert (out / "pseudo" / layer / "dataset.yaml").is_file()
        with Image.open(out / "pseudo" / layer / "train" / "masks" / "p0.png") as im:
            assert im.mode == "P" and im.getpalette()[6:9] == [255, 255, 255]  # palette of the data set
        assert (out / "pseudo" / layer / "train" / "images" / "p0.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    quality = metrics["pseudo"]["quality"]["deep"]
    assert quality["iou_per_class"][2] is None  # exclude class left out
    assert 0.0 <= quality["miou"] <= 1.0
    test = metrics["stage2"]["eval"]["test"]
    assert set(test) == {"gate", "no_gate"} and len(test["gate"]["iou_per_class"]) == 3
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed"

    # resume: every stage is skipped
    assert main(["wsss", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert capsys.readouterr().out.count("done already, skipping") == 3

    # a finished stage with a changed config is an error ...
    assert main(["wsss", "--data", str(data), "--out", str(out), *FAST, "stage2.gate.threshold=0.2"]) == 2
    assert "--rerun stage2" in capsys.readouterr().err
    # ... unless rerun
    args = ["wsss", "--data", str(data), "--out", str(out), *FAST, "stage2.gate.threshold=0.2", "--rerun", "stage2"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("done already, skipping") == 2

    # the fully supervised reference: stage 2 again on the true training masks, same budget and evaluation
    assert main([*args, "stage2.supervision=full"]) == 0
    assert "6 patches, true masks {'deep': 1.0}" in capsys.readouterr().out
    assert "test" in json.loads((out / "metrics.json").read_text())["stage2"]["eval"]
    for p in (data / "train" / "masks").iterdir():
        p.unlink()
    assert main([*args, "stage2.supervision=full"]) == 2
    assert "--keep-train-masks" in capsys.readouterr().err


def test_wsss_parity_without_background(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _make_set(tmp_path / "toy", with_background=False)
    out = tmp_path / "run"
    assert main(["wsss", "--data", str(data), "--out", str(out), *FAST, "--parity", "pseudo.layers=[deep, mid]",
                 "stage2.layer_weights={deep: 0.5, mid: 0.5}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["pseudo"]["quality"]) == {"deep", "mid"}
    assert not (out / "pseudo" / "shallow").exists()
    capsys.readouterr()
    # an interrupted pseudo-mask stage resumes: only the missing mask is generated again
    (out / "pseudo" / "done.json").unlink()
    (out / "pseudo" / "mid" / "train" / "masks" / "p3.png").unlink()
    assert main(["wsss", "--data", str(data), "--out", str(out), *FAST, "--parity", "pseudo.layers=[deep, mid]",
                 "stage2.layer_weights={deep: 0.5, mid: 0.5}"]) == 0
    assert "6 patches, 5 done already" in capsys.readouterr().out
    assert (out / "pseudo" / "mid" / "train" / "masks" / "p3.png").is_file()


def test_wsss_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _make_set(tmp_path / "toy", with_background=False)
    (data / "train" / "labels.csv").unlink()
    assert main(["wsss", "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    assert "labels.csv" in capsys.readouterr().err
    data2 = _make_set(tmp_path / "toy2", with_background=False)
    code = main(["wsss", "--data", str(data2), "--out", str(tmp_path / "r2"), *FAST, "pseudo.layers=[deep]"])
    assert code == 2
    assert "pseudo.layers" in capsys.readouterr().err


def test_crf_needs_optional_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pathseg.errors import ConfigError
    from pathseg.wsss.pseudo_masks import require_crf

    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ConfigError, match="pydensecrf2"):
        require_crf()


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "wsss").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_config_runs(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _make_set(tmp_path / "toy", with_background=True)
    out = tmp_path / "run"
    args = ["wsss", "--config", str(config), "--data", str(data), "--out", str(out), *FAST, "stage1.epochs=1",
            "pseudo.max_images=3", "stage2.max_eval_images=1"]
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
