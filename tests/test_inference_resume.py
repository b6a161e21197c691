"""Whole-slide inference: a run killed (SIGKILL) mid-slide resumes to identical outputs; peak RSS is flat."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from inference_helpers import tiny_model, write_slide
from pathseg.inference.config import PredictConfig
from pathseg.inference.run import predict_slides

TESTS = Path(__file__).resolve().parent
CELL = "1024"  # tile-block width of the RSS tests (model pixels)

SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from inference_helpers import tiny_model
    from pathseg.inference.config import PredictConfig
    from pathseg.inference.run import predict_slides

    kill_at = int(sys.argv[3])
    def on_band(sid, r, n):
        if r == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    cfg = PredictConfig(slides=[sys.argv[1]], model="-", out=sys.argv[2], workers=int(sys.argv[4]),
                        probabilities=True, objects="components", min_tissue=float(sys.argv[5]),
                        cell=int(sys.argv[7]))
    predict_slides(cfg, model=tiny_model(Path(sys.argv[2]) / "m", window=int(sys.argv[6])), on_band=on_band)
    # VmHWM: this process's own peak; ru_maxrss would carry the parent's peak over fork + exec
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
    print("maxrss_kb", hwm[0].split()[1] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _run_script(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "run.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "done.json"}


def test_kill_and_resume_give_identical_outputs(tmp_path: Path) -> None:
    slide = tmp_path / "s.tiff"
    write_slide(slide, 900, 700, [(300, 300, 250), (650, 420, 200)])
    killed = tmp_path / "killed"
    proc = _run_script(tmp_path, str(slide), str(killed), "4", "1", "0", "128", "256")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "s").exists()  # no partial slide folder
    bands = sorted(p.name for p in (killed / ".work" / "s").glob("band_*.npz"))
    assert bands == [f"band_{r:05d}_{j:04d}.npz" for r in range(5) for j in range(3)]  # bands 0..4 saved

    cfg = PredictConfig(slides=[str(slide)], model="-", out=str(killed), workers=0, probabilities=True,
                        objects="components", cell=256)
    started: list[int] = []
    (res,) = predict_slides(cfg, model=tiny_model(killed / "m"), on_band=lambda s, r, n: started.append(r))
    assert res.status == "done"
    assert started[0] == 5 and started[-1] == len(started) + 4  # resumed at the first missing band
    assert not (killed / ".work" / "s").exists()

    fresh = tmp_path / "fresh"
    cfg = PredictConfig(slides=[str(slide)], model="-", out=str(fresh), workers=0, probabilities=True,
                        objects="components", cell=256)
    predict_slides(cfg, model=tiny_model(fresh / "m"))
    a, b = _files(killed / "s"), _files(fresh / "s")
    assert sorted(a) == sorted(b) and len(a) >= 9
    for name in a:
        assert a[name] == b[name], name
    done = json.loads((killed / "s" / "done.json").read_text())
    assert done["num_bands"] == len(started) + 5


@pytest.mark.slow
def test_peak_rss_is_flat_in_slide_size(tmp_path: Path) -> None:
    """Every window of a 1536 x 1536 and a 6144 x 1536 slide (4x the pixels, same width): peak RSS within 30 MB.
    A whole-slide float32 probability array and its normaliser would add about 110 MB; the band held in memory is
    proportional to the width only (docs/inference.md)."""
    rss = {}
    for height in (1536, 6144):
        slide = tmp_path / f"s{height}.tiff"
        write_slide(slide, height, 1536, [(700, 700, 300)])
        proc = _run_script(tmp_path, str(slide), str(tmp_path / f"o{height}"), "-1", "0", "-1", "192", "2048")
        assert proc.returncode == 0, proc.stderr[-2000:]
        rss[height] = int(proc.stdout.split("maxrss_kb")[1].split()[0]) / 1024
        assert (tmp_path / f"o{height}" / f"s{height}" / "classes.tif").is_file()
    assert rss[6144] - rss[1536] < 30, rss


def test_peak_rss_is_flat_in_slide_width(tmp_path: Path) -> None:
    """Every window of a 512-px-high slide, 1024 and 6144 px wide (6x the pixels, all of the growth in width):
    peak RSS within 25 MB. Blending full-width rows (one cell as wide as the slide, as before tile blocks) adds
    about 3 bytes per pixel of the band for each class and glibc's heap kept the freed band arrays, which made
    the wide slide's peak grow by ~100 MB (docs/inference.md)."""
    rss = {}
    for width in (1024, 6144):
        slide = tmp_path / f"w{width}.tiff"
        write_slide(slide, 512, width, [(256, 500, 200)])
        proc = _run_script(tmp_path, str(slide), str(tmp_path / f"o{width}"), "-1", "0", "-1", "192", CELL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rss[width] = int(proc.stdout.split("maxrss_kb")[1].split()[0]) / 1024
    assert rss[6144] - rss[1024] < 25, rss


def test_cell_files_round_trip_and_old_formats_are_discarded(tmp_path: Path) -> None:
    from pathseg.inference import progress

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, (37, 53), dtype=np.uint8)
    probs = rng.integers(0, 256, (3, 37, 53), dtype=np.uint8)
    work = progress.open_work(tmp_path / "w", {"slide": "a"})
    progress.save_cell(work, 2, 1, classes, probs)
    got_c, got_p = progress.load_cell(work, 2, 1)
    assert got_c.tobytes() == classes.tobytes() and got_c.shape == classes.shape
    assert got_p is not None and got_p.tobytes() == probs.tobytes() and got_p.shape == probs.shape
    assert progress.load_cell(work, 2, 1, probs=False)[1] is None
    assert progress.first_missing(work, 3, 2) == 0
    # the same key keeps the cell; a folder of the zlib cell format (its meta.json had no cell_format) starts again
    assert progress.cell_path(progress.open_work(tmp_path / "w", {"slide": "a"}), 2, 1).exists()
    (work / "meta.json").write_text(json.dumps({"slide": "a"}))
    assert not progress.cell_path(progress.open_work(tmp_path / "w", {"slide": "a"}), 2, 1).exists()
