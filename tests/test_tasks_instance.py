"""Instance task: targets, watershed post-processing, section defaults, data set (synthetic; real data skips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathseg.errors import ConfigError, DataError
from pathseg.metrics import instance_metrics
from pathseg.tasks.instance.config import InstanceSection, object_kind
from pathseg.tasks.instance.postprocess import contour_watershed, hover_watershed
from pathseg.tasks.instance.targets import contour_classes, detection_targets, hover_maps


def discs(size: int, centres: list[tuple[int, int]], radius: int, first_id: int = 10) -> np.ndarray:
    """Discs painted in order (earlier ones keep shared pixels), ids ``first_id + 3k`` (non-contiguous)."""
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.int32)
    for k, (cy, cx) in enumerate(centres):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius * radius
        lab[inside & (lab == 0)] = first_id + 3 * k
    return lab


def make_instance_set(root: Path, n: int = 3, size: int = 64, seed: int = 0) -> Path:
    """A tiny canonical instance data set: discs of one colour on another, TIFF instance maps."""
    from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
    from pathseg.io import write_png
    from pathseg.tasks.instance.evaluation import write_instance_map

    rng = np.random.default_rng(seed)
    write_dataset_info(root, DatasetInfo(name="synth-nuclei", task="instance",
                                         classes=[ClassInfo("background", 0), ClassInfo("nucleus", 1)]))
    for split in ("train", "val"):
        for i in range(n):
            centres = [(int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10))) for _ in range(4)]
            inst = discs(size, centres, 7)
            image = np.where(inst[..., None] > 0, [90, 40, 140], [230, 200, 220]) + rng.normal(0, 5, (size, size, 3))
            write_png(root / split / "images" / f"im{i}.png", image.clip(0, 255).astype(np.uint8))
            write_instance_map(root / split / "instances" / f"im{i}.tif", inst)
    return root


def test_hover_maps_against_explicit_loop() -> None:
    lab = discs(40, [(12, 12), (12, 22), (28, 20)], 6)
    lab[32:36, 3:7] = 50  # centre of mass (33.5, 4.5): rounds half up
    hv = hover_maps(lab)
    for obj in np.unique(lab)[1:]:
        ys, xs = np.nonzero(lab == obj)
        cy, cx = int(ys.mean() + 0.5), int(xs.mean() + 0.5)
        for axis, off in ((0, xs - cx), (1, ys - cy)):
            expected = np.array([o / -off.min() if o < 0 else (o / off.max() if o > 0 else 0.0) for o in off])
            np.testing.assert_allclose(hv[axis][ys, xs], expected, rtol=1e-6)
    assert np.all(hv[:, lab == 0] == 0)


def test_contour_classes_by_hand() -> None:
    lab = np.zeros((5, 8), int)
    lab[:, 0:4], lab[:, 4:8] = 2, 9  # two touching objects filling the map
    lab[0, 7] = 0
    expected = np.ones((5, 8), int)
    expected[:, 3:5] = 2  # the shared boundary
    expected[0:2, 6:8] = 2  # around the background pixel
    expected[0, 7] = 0
    np.testing.assert_array_equal(contour_classes(lab, width=1), expected)
    expected[:, 2:6] = 2  # two pixels each side
    expected[0:3, 5:8] = 2
    expected[0, 7] = 0
    np.testing.assert_array_equal(contour_classes(lab, width=2), expected)


def test_hover_watershed_recovers_touching_nuclei() -> None:
    lab = discs(72, [(20, 20), (20, 33), (45, 40), (44, 27), (60, 60)], 8)
    pred = hover_watershed((lab > 0).astype(np.float32), hover_maps(lab))
    m = instance_metrics(pred, lab)
    assert len(np.unique(pred)) == len(np.unique(lab))
    assert m["aji"] == pytest.approx(1.0) and m["pq"] == pytest.approx(1.0)
    # without the distance maps' boundaries the touching nuclei merge: the energy is what separates them
    merged = hover_watershed((lab > 0).astype(np.float32), np.zeros((2, *lab.shape), np.float32))
    assert len(np.unique(merged)) < len(np.unique(lab))


def test_contour_watershed_recovers_touching_glands() -> None:
    lab = discs(200, [(50, 50), (50, 110), (140, 100), (130, 45)], 32)
    classes = contour_classes(lab, 3)
    probs = np.stack([(classes == k).astype(np.float32) for k in range(3)])
    pred = contour_watershed(probs)
    m = instance_metrics(pred, lab)
    assert len(np.unique(pred)) == len(np.unique(lab))
    assert m["aji"] > 0.99 and m["object_f1"] == 1.0
    assert contour_watershed(np.stack([np.ones((20, 20)), np.zeros((20, 20)), np.zeros((20, 20))])).max() == 0


def test_detection_targets_boxes_and_masks() -> None:
    lab = np.zeros((10, 12), int)
    lab[2:5, 3:9] = 4
    lab[7, 0] = 6  # a 1-pixel object is dropped (box narrower than 2 px)
    boxes, masks = detection_targets(lab)
    np.testing.assert_array_equal(boxes, [[3, 2, 9, 5]])
    np.testing.assert_array_equal(masks[0], (lab == 4).astype(np.uint8))


def test_section_defaults_and_kinds() -> None:
    nuclei = InstanceSection(model="maskrcnn").resolved("nuclei")
    assert nuclei.anchor_sizes == [8, 16, 32, 64, 128] and nuclei.detections_per_img == 1000
    glands = InstanceSection(model="contour", min_size=20).resolved("glands")
    assert glands.anchor_sizes == [32, 64, 128, 256, 512] and glands.min_size == 20 and glands.monitor == "object_dice"
    assert glands.postprocess_args() == {"fg_threshold": 0.5, "marker_open_radius": 1, "min_size": 20,
                                         "interior_threshold": 0.5, "contour_threshold": 0.5}
    assert object_kind("monuseg", ["background", "nucleus"]) == "nuclei"
    assert object_kind("glas", ["background", "gland"]) == "glands"
    with pytest.raises(ConfigError, match="nuclei or glands"):
        object_kind("tissue", ["a", "b"])
    with pytest.raises(ConfigError, match="anchor_sizes"):
        InstanceSection(anchor_sizes=[8, 16]).validate()


def test_dataset_targets_follow_the_augmentation(tmp_path: Path) -> None:
    from pathseg.tasks.instance.dataset import InstanceDataset, collate_instances

    root = make_instance_set(tmp_path / "ds")
    ds = InstanceDataset(root, "train", targets="hover", crop_size=48, train=True, mean=(0, 0, 0), std=(1, 1, 1))
    x, t = ds[0]
    inst = t["instances"].numpy()
    assert x.shape == (3, 48, 48) and inst.shape == (48, 48)
    # the image colour follows the (cropped, flipped, rotated) instance map
    dark = x[0].numpy() < 0.6
    assert np.mean(dark == (inst > 0)) > 0.98
    np.testing.assert_allclose(t["hv"].numpy(), hover_maps(inst))
    images, targets = collate_instances([ds[0], ds[1]])
    assert images.shape == (2, 3, 48, 48) and len(targets) == 2
    det = InstanceDataset(root, "val", targets="maskrcnn")[0][1]
    boxes, _ = detection_targets(det["instances"].numpy())
    np.testing.assert_array_equal(det["boxes"].numpy(), boxes)
    (root / "val" / "instances" / "im1.tif").unlink()
    with pytest.raises(DataError, match="no instance map"):
        InstanceDataset(root, "val")


def test_real_monuseg_nuclei_are_recovered_from_their_distance_maps(shared_data: Path) -> None:
    from pathseg.data.convert.monuseg import polygons_to_instances, read_aperio_polygons

    xml = sorted((shared_data / "monuseg" / "train" / "annotations").glob("*.xml"))[0]
    inst = polygons_to_instances(read_aperio_polygons(xml), (1000, 1000))[:300, :300]
    pred = hover_watershed((inst > 0).astype(np.float32), hover_maps(inst))
    m = instance_metrics(pred, inst)
    assert m["aji"] > 0.9 and m["dq"] > 0.9


def test_real_glas_glands_are_recovered_from_their_contour_classes(shared_data: Path) -> None:
    from skimage.measure import label

    from pathseg.io import read_mask

    mask = read_mask(sorted((shared_data / "glas" / "train" / "masks").glob("*.png"))[0])
    inst = label(mask > 0, connectivity=2)
    classes = contour_classes(inst, 3)
    pred = contour_watershed(np.stack([(classes == k).astype(np.float32) for k in range(3)]))
    m = instance_metrics(pred, inst)
    big = [i for i in np.unique(inst)[1:] if (inst == i).sum() >= 50]  # post-processing drops objects < 50 px
    assert len(np.unique(pred)) - 1 == len(big)
    assert m["object_dice"] > 0.95 and m["aji"] > 0.9
