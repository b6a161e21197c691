"""Torch data sets over the canonical layout: shapes, augmentation consistency, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathseg.data.datasets import ClassificationDataset, SegmentationDataset, normalise, random_crop
from pathseg.errors import DataError
from tasks_helpers import make_classification_set, make_segmentation_set


def test_segmentation_eval_returns_whole_images(tmp_path):
    root = make_segmentation_set(tmp_path / "d")
    ds = SegmentationDataset(root, "test")
    x, y = ds[0]
    assert x.shape == (3, 72, 90) and x.dtype == torch.float32
    assert y.shape == (72, 90) and y.dtype == torch.int64
    assert set(np.unique(y.numpy())) <= {0, 1, 2, 255}


def test_segmentation_train_crop_and_augmentation_keep_image_and_mask_aligned(tmp_path):
    root = make_segmentation_set(tmp_path / "d")
    ds = SegmentationDataset(root, "train", crop_size=64, train=True, mean=(0, 0, 0), std=(1, 1, 1))
    # the synthetic images' red channel is a function of the class: check alignment after augmentation
    red = np.array([200, 120, 60]) / 255.0
    for i in range(6):
        x, y = ds[i % len(ds)]
        assert x.shape == (3, 64, 64) and y.shape == (64, 64)
        labelled = y != 255
        nearest = np.abs(x[0].numpy()[..., None] - red).argmin(-1)
        agreement = (nearest[labelled.numpy()] == y[labelled].numpy()).mean()
        assert agreement > 0.9


def test_random_crop_pads_small_images_with_ignore():
    rng = np.random.default_rng(0)
    image = np.full((10, 12, 3), 7, np.uint8)
    mask = np.ones((10, 12), np.uint8)
    img, msk = random_crop(image, mask, 16, rng)
    assert img.shape == (16, 16, 3) and msk.shape == (16, 16)
    assert (msk == 255).sum() == 16 * 16 - 10 * 12 and (img == 0).all(axis=2).sum() == 16 * 16 - 10 * 12


def test_normalise():
    x = normalise(np.full((2, 2, 3), 255, np.uint8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(x, torch.full((3, 2, 2), 2.0))


def test_classification_labels_by_index_or_name(tmp_path):
    root = make_classification_set(tmp_path / "c")
    ds = ClassificationDataset(root, "train", crop_size=32)
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels == [int(s[1:]) % 3 for s in ds.ids]
    assert ds[0][0].shape == (3, 32, 32)
    big = ClassificationDataset(root, "train", crop_size=64)  # larger than the tiles: kept whole
    assert big[0][0].shape == (3, 40, 40)


def test_classification_unknown_label_is_a_data_error(tmp_path):
    root = make_classification_set(tmp_path / "c")
    (root / "train" / "labels.csv").write_text("id,label\nt0,nonsense\n")
    with pytest.raises(DataError, match="unknown label"):
        ClassificationDataset(root, "train")


def test_missing_mask_is_a_data_error(tmp_path):
    root = make_segmentation_set(tmp_path / "d")
    (root / "test" / "masks" / "img0.png").unlink()
    with pytest.raises(DataError, match="no mask"):
        SegmentationDataset(root, "test")
