"""`pathseg tile`: exact tile selection on a synthetic slide, µm/px refusal, bad slides, resume without duplicates."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pathseg.cli.main import main
from pathseg.slides import tiling
from pathseg.slides.commands import assign_ids
from slides_helpers import write_synthetic

TCGA = "tcga-cr-7395-01a-01-ts1.svs"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiles_are_exactly_those_over_the_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = write_synthetic(tmp_path / "syn.tiff", mpp=0.5)  # 2560 x 2048 px
    out = tmp_path / "tiles"
    code = main(["tile", str(tmp_path / "syn.tiff"), "--out", str(out), "--mpp", "1.0", "--size", "128",
                 "--min-tissue", "0.5", "--tissue-mpp", "4"])
    assert code == 0
    rows = _rows(out / "tiles.csv")
    kept = {(int(r["row"]), int(r["col"])) for r in rows}
    assert all(r["size0"] == "256" and r["mpp"] == "1.0" and r["slide_mpp"] == "0.5" for r in rows)
    assert rows[0]["mpp_source"] == "tiff resolution tags"
    # truth: each 256 x 256 level-0 tile of the 10 x 8 grid, fraction from the known mask. Tolerance: tiles whose
    # true fraction lies within 0.1 of the threshold may go either way; all others must match exactly.
    checked = 0
    for r in range(8):
        for c in range(10):
            frac = mask[r * 256 : (r + 1) * 256, c * 256 : (c + 1) * 256].mean()
            if abs(frac - 0.5) > 0.1:
                checked += 1
                assert ((r, c) in kept) == (frac >= 0.5), (r, c, frac)
    assert checked >= 60
    for row in rows:
        x, y = int(row["x"]), int(row["y"])
        assert abs(float(row["tissue_fraction"]) - mask[y : y + 256, x : x + 256].mean()) < 0.1
    slide_dir = out / "syn"
    assert {p.name for p in slide_dir.iterdir()} == {"tiles.csv", "tissue.png", "thumbnail_grid.png", "done.json"}
    assert json.loads((slide_dir / "done.json").read_text())["n_tiles"] == len(rows)


def test_slide_without_mpp_is_refused_then_tiled_with_override(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = shared_data / "slides" / TCGA
    out = tmp_path / "t"
    assert main(["tile", str(slide), "--out", str(out), "--mpp", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and TCGA in err[0] and "--slide-mpp" in err[0]
    assert not out.exists() or not any(out.iterdir())
    assert main(["tile", str(slide), "--out", str(out), "--mpp", "0.5", "--slide-mpp", "0.5"]) == 0
    rows = _rows(out / "tiles.csv")
    assert len(rows) > 50 and {r["mpp_source"] for r in rows} == {"user (--slide-mpp)"}
    csv_file = tmp_path / "mpp.csv"
    csv_file.write_text(f"slide,mpp\n{TCGA},0.25\n")
    assert main(["tile", str(slide), "--out", str(tmp_path / "t2"), "--mpp-csv", str(csv_file)]) == 0
    assert _rows(tmp_path / "t2" / "tiles.csv")[0]["size0"] == "512"


def test_bad_slides_are_reported_and_others_tiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic(tmp_path / "good.tiff", h=1024, w=1280)
    write_synthetic(tmp_path / "empty.tiff", h=768, w=768, tissue=False)
    (tmp_path / "broken.tiff").write_bytes((tmp_path / "good.tiff").read_bytes()[:5000])
    (tmp_path / "notes.svs").write_text("this is not a slide\n")
    out = tmp_path / "out"
    code = main(["tile", str(tmp_path), "--out", str(out), "--size", "128", "--mpp", "1.0", "--workers", "2"])
    assert code == 2  # per-slide failures: exit 2, as the README promises
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(("error:", "warning:"))]
    assert any("broken.tiff" in ln and ln.startswith("error:") for ln in lines)
    assert any("notes.svs" in ln and ln.startswith("error:") for ln in lines)
    assert any("empty.tiff" in ln and ln.startswith("warning:") and "no tissue" in ln for ln in lines)
    rows = _rows(out / "tiles.csv")
    assert {r["slide_id"] for r in rows} == {"good"} and len(rows) > 5
    assert json.loads((out / "empty" / "done.json").read_text())["n_tiles"] == 0


def test_resume_after_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        write_synthetic(tmp_path / f"{name}.tiff", h=768, w=1024, seed=ord(name))
    slides = [str(tmp_path / f"{n}.tiff") for n in ("a", "b", "c")]
    out = tmp_path / "out"
    real = tiling.tile_one
    calls: list[str] = []

    def killed_after_first(job: tiling.SlideJob) -> tiling.SlideResult:
        if calls:
            raise KeyboardInterrupt  # the process dies while tiling the second slide
        calls.append(job.slide_id)
        return real(job)

    monkeypatch.setattr(tiling, "tile_one", killed_after_first)
    assert main(["tile", *slides, "--out", str(out), "--size", "128"]) == 130
    assert calls == ["a"] and (out / "a" / "done.json").is_file()

    redone: list[str] = []

    def counting(job: tiling.SlideJob) -> tiling.SlideResult:
        redone.append(job.slide_id)
        return real(job)

    monkeypatch.setattr(tiling, "tile_one", counting)
    assert main(["tile", *slides, "--out", str(out), "--size", "128"]) == 0
    assert redone == ["b", "c"]
    assert main(["tile", *slides, "--out", str(out), "--size", "128"]) == 0
    assert redone == ["b", "c"]
    rows = _rows(out / "tiles.csv")
    keys = [(r["slide_id"], r["row"], r["col"]) for r in rows]
    assert len(keys) == len(set(keys)) and {k[0] for k in keys} == {"a", "b", "c"}
    assert main(["tile", *slides, "--out", str(out), "--size", "64"]) == 2  # other parameters: refused


def test_killed_process_resumes_without_duplicates(tmp_path: Path) -> None:
    for i in range(4):
        write_synthetic(tmp_path / f"s{i}.tiff", h=1024, w=1024, seed=i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pathseg.cli.main", "tile", str(tmp_path), "--out", str(out), "--size", "128"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out / "s0" / "done.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/done.json")}
    assert "s0" in done_before
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    for sid, mtime in done_before.items():
        assert (out / sid / "done.json").stat().st_mtime_ns == mtime  # not redone
    rows = _rows(out / "tiles.csv")
    keys = [(r["slide_id"], r["row"], r["col"]) for r in rows]
    assert len(keys) == len(set(keys)) and {k[0] for k in keys} == {f"s{i}" for i in range(4)}


def test_slide_ids_are_unique_and_stable(tmp_path: Path) -> None:
    a, b, c = tmp_path / "x" / "s.svs", tmp_path / "y" / "s.svs", tmp_path / "t.svs"
    ids = assign_ids([a, b, c], known={})
    assert ids[str(c.resolve())] == "t"
    assert ids[str(a.resolve())] != ids[str(b.resolve())] and ids[str(a.resolve())].startswith("s-")
    again = assign_ids([a, b, c], known={})
    assert again == ids
    known = {str(a.resolve()): "s"}  # recorded by an earlier run: keeps its id, the newcomer gets a suffix
    ids2 = assign_ids([a, b], known)
    assert ids2[str(a.resolve())] == "s" and ids2[str(b.resolve())].startswith("s-")


def test_tiles_in_csv_cover_grid_of_real_slide(shared_data: Path, tmp_path: Path) -> None:
    slide = shared_data / "slides" / "cmu-1-small-region.svs"
    assert main(["tile", str(slide), "--out", str(tmp_path / "o"), "--mpp", "0.5"]) == 0
    rows = _rows(tmp_path / "o" / "tiles.csv")
    assert rows and all(r["mpp_source"] == "metadata (openslide.mpp-x)" for r in rows)
    xs = np.array([int(r["x"]) for r in rows])
    assert (xs + 257 <= 2220).all()
