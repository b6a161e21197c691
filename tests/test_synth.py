"""Synthetic H&E generator: determinism, ground-truth consistency, colour statistics, nucleus sizes."""

from __future__ import annotations

import numpy as np
import pytest

from pathseg.synth import TISSUE_CLASSES, SynthSample, generate_sample
from pathseg.synth.classes import BACKGROUND, LYMPHOCYTES, STROMA, TUMOUR
from pathseg.synth.config import parse_splits, split_counts
from pathseg.synth.nuclei import N_HARMONICS, reject_overlaps, sample_ellipses
from pathseg.synth.stain import RUIFROK_HE, od_to_rgb, unmix

MPP = 0.5


@pytest.fixture(scope="module")
def samples() -> list[SynthSample]:
    return [generate_sample(seed=7, index=i, size=192) for i in range(6)]


def test_same_seed_identical_different_seed_differs() -> None:
    a, b = generate_sample(3, 0, 96), generate_sample(3, 0, 96)
    for x, y in ((a.image, b.image), (a.mask, b.mask), (a.instances, b.instances)):
        assert x.tobytes() == y.tobytes()
    assert a.instance_classes == b.instance_classes
    c = generate_sample(4, 0, 96)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(generate_sample(3, 1, 96).image, a.image)


def test_shapes_and_types(samples: list[SynthSample]) -> None:
    for s in samples:
        assert s.image.shape == (192, 192, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (192, 192) and s.mask.dtype == np.uint8
        assert set(np.unique(s.mask)) <= {c.index for c in TISSUE_CLASSES}
    present = set().union(*(set(np.unique(s.mask).tolist()) for s in samples))
    assert len(present) >= 4


def test_instance_ids_unique_consecutive_and_inside_their_class(samples: list[SynthSample]) -> None:
    for s in samples:
        ids = np.unique(s.instances)
        ids = ids[ids > 0]
        assert ids.tolist() == list(range(1, len(ids) + 1))
        assert set(s.instance_classes) == set(ids.tolist())
        for i in ids.tolist():
            pix = s.mask[s.instances == i]
            assert pix.size > 0
            assert np.all(pix == s.instance_classes[i]), f"nucleus {i} leaves its class region"
            assert TISSUE_CLASSES[s.instance_classes[i]].nuclei is not None
        # no nuclei in background
        assert not np.any(s.instances[s.mask == BACKGROUND])


def _equivalent_radii(s: SynthSample, cls: int) -> list[float]:
    radii = []
    h, w = s.instances.shape
    for i, c in s.instance_classes.items():
        if c != cls:
            continue
        ys, xs = np.nonzero(s.instances == i)
        if ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
            continue  # cut by the image border
        radii.append(float(np.sqrt(len(ys) / np.pi)))
    return radii


@pytest.mark.parametrize("cls", [TUMOUR, STROMA, LYMPHOCYTES])
def test_nucleus_sizes_in_documented_range(samples: list[SynthSample], cls: int) -> None:
    spec = TISSUE_CLASSES[cls].nuclei
    assert spec is not None
    radii = [r for s in samples for r in _equivalent_radii(s, cls)]
    assert len(radii) >= 3
    a_lo, a_hi = spec.semi_major_um[0] / MPP, spec.semi_major_um[1] / MPP
    lo = a_lo * np.sqrt(spec.aspect[0]) * (1 - N_HARMONICS * spec.boundary_jitter)
    hi = a_hi * np.sqrt(spec.aspect[1]) * (1 + N_HARMONICS * spec.boundary_jitter) + 1.0
    med = float(np.median(radii))
    assert lo <= med <= hi, (med, lo, hi)
    assert max(radii) <= hi
    if cls == LYMPHOCYTES:
        assert 5.5 <= med <= 8.5  # documented: lymphocyte nucleus radius 6-8 px at 0.5 µm/px


def test_nuclei_density_order(samples: list[SynthSample]) -> None:
    def per_area(cls: int) -> float:
        n = sum(sum(1 for c in s.instance_classes.values() if c == cls) for s in samples)
        area = sum(int((s.mask == cls).sum()) for s in samples)
        return n / max(area, 1)

    assert per_area(LYMPHOCYTES) > per_area(TUMOUR) > per_area(STROMA) > 0


def test_colour_statistics_plausible_for_he(samples: list[SynthSample]) -> None:
    h_nuc, h_str, e_str, e_bg, bg_rgb = [], [], [], [], []
    for s in samples:
        hed = unmix(s.image, RUIFROK_HE)
        nuc = s.instances > 0
        stroma = (s.mask == STROMA) & ~nuc
        bg = s.mask == BACKGROUND
        h_nuc.append(hed[..., 0][nuc])
        h_str.append(hed[..., 0][stroma])
        e_str.append(hed[..., 1][stroma])
        e_bg.append(hed[..., 1][bg])
        bg_rgb.append(s.image[bg])
    h_nuc_m, h_str_m = np.concatenate(h_nuc).mean(), np.concatenate(h_str).mean()
    assert h_nuc_m > 3 * h_str_m  # nuclei are haematoxylin-rich
    assert np.concatenate(e_str).mean() > 3 * np.concatenate(e_bg).mean()  # stroma is eosin-rich
    bg = np.concatenate(bg_rgb).astype(float)
    assert bg.mean() > 225 and bg.min(axis=1).mean() > 215  # background (glass) is near white
    for s in samples:  # nuclei look blue-purple: blue above red and green
        px = s.image[s.instances > 0].astype(float).mean(axis=0)
        if np.isfinite(px).all() and (s.instances > 0).any():
            assert px[2] > px[0] and px[2] > px[1]


def test_od_to_rgb_follows_beer_lambert() -> None:
    h = np.array([[0.0, 1.0]], dtype=np.float32)
    e = np.array([[0.0, 0.0]], dtype=np.float32)
    rgb = od_to_rgb(h, e, RUIFROK_HE, i0=255.0)
    assert np.allclose(rgb[0, 0], 255.0)
    v = RUIFROK_HE[0] / np.linalg.norm(RUIFROK_HE[0])
    assert np.allclose(rgb[0, 1], [255.0 * 10 ** (-x) for x in v], rtol=1e-5)
    back = unmix(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), RUIFROK_HE)
    assert abs(back[0, 1, 0] - 1.0) < 0.02 and abs(back[0, 1, 1]) < 0.02


def test_reject_overlaps_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    region = np.ones((80, 80), dtype=bool)
    nuc = sample_ellipses(rng, region, 300, (3.0, 6.0), (0.6, 1.0), 0.05)
    kept = reject_overlaps(nuc, gap=1.0)
    ext = nuc.extent()
    expected = []  # explicit sequential loop
    for i in range(len(nuc)):
        if all(np.hypot(nuc.cy[i] - nuc.cy[j], nuc.cx[i] - nuc.cx[j]) >= ext[i] + ext[j] + 1.0 for j in expected):
            expected.append(i)
    assert len(kept) == len(expected)
    assert np.allclose(kept.cy, nuc.cy[expected])


def test_split_counts() -> None:
    assert split_counts(100, parse_splits(["train:0.7", "val:0.15", "test:0.15"])) == [
        ("train", 70), ("val", 15), ("test", 15)]
    assert split_counts(3, parse_splits(["train:0.7", "val:0.15", "test:0.15"])) == [
        ("train", 1), ("val", 1), ("test", 1)]
    assert split_counts(10, parse_splits(["train:8", "test:2"])) == [("train", 8), ("test", 2)]
