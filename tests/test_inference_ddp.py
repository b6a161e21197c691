"""``pathseg predict ... trainer.devices=2``: two CPU processes (Lightning DDP, gloo) share the slides and give each
slide the same outputs as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ddp_helpers import free_port
from inference_helpers import write_slide
from pathseg.cli.main import main
from ssl_helpers import one_thread
from test_inference_cli import _run_folder

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.mark.slow
def test_two_processes_share_the_slides_with_single_process_outputs(tmp_path: Path) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    write_slide(slides / "a.tiff", 256, 320, [(128, 150, 110)], mpp=1.0)
    write_slide(slides / "b.tiff", 320, 256, [(150, 128, 100), (40, 40, 30)], mpp=1.0)
    run = _run_folder(tmp_path / "run")
    flags = ["--model", str(run), "--workers", "0", "--device", "cpu"]
    assert main(["predict", str(slides), "--out", str(tmp_path / "single"), *flags]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "pathseg.cli.main", "predict", str(slides), "--out",
                           str(tmp_path / "ddp"), *flags, "trainer.devices=2", "trainer.accelerator=cpu"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 slides done" in proc.stdout
    ddp = tmp_path / "ddp"
    ranks = [json.loads((ddp / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    assert [[s["slide_id"] for s in rk["slides"]] for rk in ranks] == [["a"], ["b"]]  # one slide per rank
    assert [rk["world_size"] for rk in ranks] == [2, 2]
    merged = json.loads((ddp / "summary.json").read_text())
    assert [s["slide_id"] for s in merged["slides"]] == ["a", "b"]
    for sid in ("a", "b"):
        one, two = tmp_path / "single" / sid, ddp / sid
        assert (tifffile.imread(one / "classes.tif") == tifffile.imread(two / "classes.tif")).all()
        assert len(np.unique(tifffile.imread(two / "classes.tif"))) > 1  # the comparison means something
        assert json.loads((one / "areas.json").read_text()) == json.loads((two / "areas.json").read_text())
        a, b = (json.loads((d / "annotations.geojson").read_text())["features"] for d in (one, two))
        assert [f["geometry"] for f in a] == [f["geometry"] for f in b]
