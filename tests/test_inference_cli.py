"""``pathseg predict`` from the command line: a real run folder, bad slides, refused models, --slide-mpp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference_helpers import NAMES, write_slide
from pathseg.cli.main import main


def _run_folder(root: Path, task: str = "segmentation", mpp: float | None = 1.0) -> Path:
    """A finetune-style run: RUN/seed_0/model.json (+ "mpp") and model_best.safetensors of a real U-Net."""
    from pathseg.tasks.common import ModelSpec, build_model, save_weights

    seed = root / "seed_0"
    seed.mkdir(parents=True)
    spec = ModelSpec(task=task, encoder="resnet18", decoder="unet" if task == "segmentation" else None,
                     num_classes=3, window=128, overlap=0.25, class_names=list(NAMES),
                     colors=[[0, 0, 0], [230, 60, 60], [40, 90, 230]])
    spec.save(seed / "model.json")
    if mpp is not None:
        raw = json.loads((seed / "model.json").read_text())
        (seed / "model.json").write_text(json.dumps({**raw, "mpp": mpp}))
    save_weights(build_model(spec), seed / "model_best.safetensors")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    slides = d / "slides"
    slides.mkdir()
    write_slide(slides / "good.tiff", 256, 320, [(128, 150, 110)], mpp=1.0)
    write_slide(slides / "blank.tiff", 256, 320, [], mpp=1.0)
    write_slide(slides / "nompp.tiff", 256, 320, [(128, 150, 110)], mpp=None)
    data = (slides / "good.tiff").read_bytes()
    (slides / "truncated.tiff").write_bytes(data[: len(data) // 3])
    (slides / "garbage.svs").write_bytes(np.random.default_rng(0).bytes(5000))
    return d, _run_folder(d / "run")


def test_bad_slides_give_one_error_line_each_and_exit_2(setup: tuple[Path, Path], capsys) -> None:
    d, run = setup
    out = d / "out"
    code = main(["predict", str(d / "slides"), "--model", str(run), "--out", str(out), "--workers", "0"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 4, captured.err
    by_slide = {name: [e for e in errors if name in e] for name in ("blank", "nompp", "truncated", "garbage")}
    assert all(len(v) == 1 for v in by_slide.values()), errors
    assert "no tissue" in by_slide["blank"][0]
    assert "--slide-mpp" in by_slide["nompp"][0]
    assert "1 of 5 slides done, 4 failed" in captured.out
    assert (out / "good" / "done.json").is_file() and (out / "good" / "classes.tif").is_file()
    assert not (out / "blank").exists() and not (out / "truncated").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mpp"] == 1.0 and summary["mpp_source"] == "model.json"
    assert sorted(s["status"] for s in summary["slides"]) == ["done", "failed", "failed", "failed", "failed"]

    code = main(["predict", str(d / "slides" / "good.tiff"), str(d / "slides" / "nompp.tiff"), "--model",
                 str(run), "--out", str(out), "--workers", "0", "--slide-mpp", "1.0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "good: skipped" in captured.out and "nompp: done" in captured.out


def test_refused_models(setup: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    d, _ = setup
    slide = str(d / "slides" / "good.tiff")
    cls_run = _run_folder(tmp_path / "cls", task="classification")
    assert main(["predict", slide, "--model", str(cls_run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classification" in err[0]
    no_mpp = _run_folder(tmp_path / "nompp", mpp=None)
    assert main(["predict", slide, "--model", str(no_mpp), "--out", str(tmp_path / "o")]) == 2
    assert "--mpp" in capsys.readouterr().err
    coarse = d / "coarse.tiff"
    write_slide(coarse, 256, 320, [(128, 160, 120)], mpp=4.0)
    run = d / "run"
    assert main(["predict", str(coarse), "--model", str(run / "seed_0" / "model_best.safetensors"),
                 "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "coarser than the model" in capsys.readouterr().err
