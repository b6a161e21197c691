"""The URL paper fine-tuning protocol (configs/finetune/url_paper.yaml): fixed windows, per-patch label fractions,
Adam + ReduceLROnPlateau on the epoch loss, url_unet, and the legacy per-batch metric only when asked."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pathseg.cli.main import main
from pathseg.data.patchify import patch_starts
from pathseg.io import read_mask, read_rgb
from pathseg.tasks.patches import PatchDataset, choose_patches, padded_windows
from ssl_helpers import one_thread
from tasks_helpers import make_segmentation_set

_threads = pytest.fixture(autouse=True)(one_thread)
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "url_paper.yaml"


def test_windows_of_the_mirror_padded_image() -> None:
    pad, corners = padded_windows(300, 600, 512, 256)
    assert pad == 128  # (512 - 256) / 2 on each side, as the original's PatchExtractor
    assert corners == [(y, x) for y in (0, 44) for x in (0, 256, 344)]  # 556 x 856 padded, flush last windows
    assert patch_starts(556, 512, 256) == [0, 44]


def test_patch_subsets_are_seeded_shares_of_the_patches() -> None:
    a, b = choose_patches(40, 0.25, seed=0), choose_patches(40, 0.25, seed=1)
    assert len(a) == len(b) == 10 and a == sorted(set(a)) and a != b
    assert a == choose_patches(40, 0.25, seed=0)
    assert choose_patches(40, 0.001, seed=0) and len(choose_patches(40, 1.0, seed=3)) == 40


def test_window_pixels_and_aligned_augmentation(tmp_path: Path) -> None:
    data = make_segmentation_set(tmp_path / "d", splits={"train": 2}, size=(96, 120))
    ds = PatchDataset(data, "train", ["img0", "img1"], size=128, stride=64, crop=64, mean=(0, 0, 0), std=(1, 1, 1))
    assert ds.total_windows == 2 * 2 * 2 and len(ds) == 8  # 160 x 184 padded: rows {0, 32}, columns {0, 56}
    image, mask = read_rgb(data / "train" / "images" / "img1.png"), read_mask(data / "train" / "masks" / "img1.png")
    i, y, x = ds.windows[7]
    assert (ds.ids[i], y, x) == ("img1", 32, 56)
    want = np.pad(image, ((32, 32), (32, 32), (0, 0)), mode="reflect")[y : y + 128, x : x + 128]
    got_image, got_mask = ds.window(7)
    assert np.array_equal(got_image, want)
    assert np.array_equal(got_mask, np.pad(mask, 32, mode="reflect")[y : y + 128, x : x + 128])
    # image painted from its mask (class 0 dark, others bright): after the joint augmentation they still agree
    ds.window = lambda j: (np.where((got_mask == 0)[..., None], 20, 235).astype(np.uint8), got_mask)  # type: ignore
    torch.manual_seed(0)
    for _ in range(4):
        x_t, m_t = ds[0]
        assert x_t.shape == (3, 64, 64) and m_t.shape == (64, 64) and m_t.dtype == torch.long
        labelled = m_t != 255
        agree = ((x_t.mean(0) > 0.5) == (m_t != 0))[labelled].float().mean()
        assert agree > 0.97


def _steps(csv_path: Path) -> int:
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert any(r.get("train_loss_epoch") for r in rows)  # the value ReduceLROnPlateau watches
    return max(int(r["step"]) for r in rows if r.get("train_loss")) + 1


def test_paper_protocol_end_to_end_and_legacy_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_segmentation_set(tmp_path / "d", splits={"train": 4, "val": 1, "testA": 2}, size=(96, 120))
    out = tmp_path / "run"
    code = main(["finetune", "--config", str(CONFIG), "--data", str(data), "--out", str(out), "--seeds", "0",
                 "--label-fraction", "0.5", "--crop-size", "64", "--val-split", "val", "patches.size=128",
                 "patches.stride=64", "trainer.max_epochs=2", "trainer.batch_size=2", "trainer.num_workers=0",
                 "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "inference.num_examples=1"])
    assert code == 0, capsys.readouterr().err
    seed = json.loads((out / "seed_0" / "metrics.json").read_text())
    assert seed["num_train_patches"] == 8  # half of 4 images x 4 windows
    assert _steps(out / "seed_0" / "logs" / "metrics.csv") == 2 * 8 // 2  # an epoch is one pass over the patches
    assert json.loads((out / "seed_0" / "model.json").read_text())["decoder"] == "url_unet"
    assert seed["legacy_per_batch_miou"] is not None and seed["miou"] is not None
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", "testA"]) == 0
    plain = json.loads((out / "eval_synth_testA.json").read_text())
    assert "legacy_per_batch_miou" not in plain and "legacy_per_batch_miou" not in capsys.readouterr().out
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", "testA", "--legacy-metrics"]) == 0
    assert "legacy_per_batch_miou=" in capsys.readouterr().out
    both = json.loads((out / "eval_synth_testA.json").read_text())
    assert both["miou"] == pytest.approx(plain["miou"]) and both["legacy_per_batch_miou"] == pytest.approx(
        seed["legacy_per_batch_miou"], abs=1e-6)


def test_plateau_module_watches_the_epoch_loss() -> None:
    from pathseg.models import create_segmentation_model
    from pathseg.tasks.module import SegmentationModule

    model = create_segmentation_model("url_unet", "resnet18", 3)
    module = SegmentationModule(model, 3, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="plateau", patience=10)
    conf = module.configure_optimizers()
    sched = conf["lr_scheduler"]
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched["monitor"] == "train_loss_epoch" and sched["interval"] == "epoch"
    assert sched["scheduler"].patience == 10 and sched["scheduler"].factor == pytest.approx(0.1)
    assert isinstance(conf["optimizer"], torch.optim.Adam) and conf["optimizer"].defaults["weight_decay"] == 0.0
