"""Seeded batch order, 227 crops, target scaling, visibility after cropping; loading prepared data."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_datasets import write_tiny_prepared

from deeppose.data.batches import (
    CENTER,
    INPUT,
    batch_rng,
    centre_targets,
    epoch_order,
    iterate_batches,
    iterations_per_epoch,
    make_batch,
)
from deeppose.data.dataset import PreparedSet, load_prepared
from deeppose.errors import DeepPoseError


def hand_made(n: int = 5) -> PreparedSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, 256, 256), dtype=np.uint8)
    joints = np.tile(np.array([[14 + 100.0, 14 + 50.0]], dtype=np.float32), (n, 14, 1))
    joints[:, 1] = (14.0, 14.0)  # the centre crop's top-left pixel
    joints[:, 2] = (5.0, 128.0)  # left of the centre crop
    joints[:, 3] = (14 + 227.0, 100.0)  # just right of the centre crop
    joints[:, 4] = (255.0, 255.0)  # inside only for offsets >= 29
    visible = np.ones((n, 14), dtype=np.float32)
    visible[:, 5] = 0  # occluded: annotated, not visible
    annotated = np.ones((n, 14), dtype=np.float32)
    annotated[:, 6] = visible[:, 6] = 0  # unannotated
    return PreparedSet("train", images, joints, visible, annotated)


def test_epoch_order_is_seeded_by_seed_and_epoch():
    a = epoch_order(100, 16, seed=0, epoch=3)
    assert [len(b) for b in a] == [16] * 6  # drop_last
    assert len(set(np.concatenate(a).tolist())) == 96 and np.concatenate(a).max() < 100
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_order(100, 16, seed=0, epoch=3)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(epoch_order(100, 16, seed=0, epoch=4)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(epoch_order(100, 16, seed=1, epoch=3)))
    assert a[0].dtype == np.int64
    assert iterations_per_epoch(100, 16) == 6


def test_epoch_order_small_and_edge_cases():
    small = epoch_order(5, 16, seed=0, epoch=0)
    assert len(small) == 1 and sorted(small[0].tolist()) == [0, 1, 2, 3, 4]
    assert iterations_per_epoch(5, 16) == 1
    exact = epoch_order(32, 16, seed=0, epoch=0)
    assert len(exact) == 2 and sorted(np.concatenate(exact).tolist()) == list(range(32))
    assert epoch_order(0, 4, seed=0, epoch=0) == [] and iterations_per_epoch(0, 4) == 0
    with pytest.raises(ValueError):
        epoch_order(10, 0, seed=0, epoch=0)


def test_center_crop_and_targets():
    data = hand_made()
    batch = make_batch(data, np.array([3, 1]), "center")
    assert batch.images.shape == (2, 3, INPUT, INPUT) and batch.images.dtype == np.float32
    assert batch.targets.shape == (2, 28) and batch.targets.dtype == np.float32
    assert batch.visible.shape == (2, 14) and batch.visible.dtype == np.float32
    expected = data.images[3, :, CENTER : CENTER + INPUT, CENTER : CENTER + INPUT].astype(np.float32) / 255
    np.testing.assert_array_equal(batch.images[0], expected)
    np.testing.assert_allclose(batch.targets[0, 0:2], [100 / 227, 50 / 227], rtol=1e-6)
    np.testing.assert_allclose(batch.targets[0, 2:4], [0.0, 0.0])
    np.testing.assert_allclose(batch.targets[0].reshape(14, 2), (data.joints[3] - CENTER) / 227, rtol=1e-6)
    assert batch.visible[0, [0, 1]].tolist() == [1, 1]
    assert batch.visible[0, [2, 3, 4, 5]].tolist() == [0, 0, 0, 0]  # outside the crop / flagged
    assert batch.indices.tolist() == [3, 1] and batch.offsets.tolist() == [[14, 14], [14, 14]]
    assert data.visible[3, 2] == 1  # the data itself is untouched


def test_centre_targets_score_annotated_joints_outside_the_crop():
    data = hand_made(n=3)
    targets, visible, annotated = centre_targets(data)
    batch = make_batch(data, np.arange(3), "center")
    np.testing.assert_array_equal(targets, batch.targets)
    np.testing.assert_array_equal(visible, batch.visible)  # the loss's mask: visible inside the crop
    assert annotated.dtype == np.float32 and annotated.shape == (3, 14)
    assert annotated[0].tolist() == [1] * 6 + [0] + [1] * 7  # occluded (5) and outside (2, 3, 4) scored
    np.testing.assert_allclose(targets[0, 4:6], [(5 - CENTER) / 227, (128 - CENTER) / 227], rtol=1e-6)
    assert targets[0, 4] < 0 and targets[0, 6] == 1  # joints 2 and 3: just outside the crop [0, 1)


def test_random_crop_offsets_and_visibility():
    data = hand_made(n=5)
    indices = np.arange(5).repeat(40)  # 200 crops
    batch = make_batch(data, indices, "random", batch_rng(0, 0, 0))
    assert batch.offsets.min() == 0 and batch.offsets.max() == 29
    for k in (0, 57, 199):
        x, y = batch.offsets[k]
        np.testing.assert_array_equal(
            batch.images[k], data.images[indices[k], :, y : y + INPUT, x : x + INPUT] / np.float32(255)
        )
        np.testing.assert_allclose(batch.targets[k].reshape(14, 2), (data.joints[indices[k]] - [x, y]) / 227,
                                   rtol=1e-6)  # fmt: skip
    corner = batch.visible[:, 4] == 1  # (255, 255) is inside only when both offsets are 29
    np.testing.assert_array_equal(corner, (batch.offsets == 29).all(axis=1))
    left = batch.visible[:, 2] == 1  # x = 5 is inside when the x offset <= 5
    np.testing.assert_array_equal(left, batch.offsets[:, 0] <= 5)
    assert batch.visible[:, 5].max() == 0


def test_batch_rng_is_deterministic_per_iteration():
    data = hand_made()
    a = make_batch(data, np.arange(5), "random", batch_rng(1, 2, 3))
    b = make_batch(data, np.arange(5), "random", batch_rng(1, 2, 3))
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.images, b.images)
    c = batch_rng(1, 2, 4).integers(0, 1 << 30, size=8)
    assert not np.array_equal(batch_rng(1, 2, 3).integers(0, 1 << 30, size=8), c)
    with pytest.raises(ValueError, match="rng"):
        make_batch(data, np.arange(2), "random")
    with pytest.raises(ValueError, match="crop"):
        make_batch(data, np.arange(2), "middle")


def test_iterate_batches_covers_the_split_in_order():
    data = hand_made(n=5)
    batches = list(iterate_batches(data, 2))
    assert [b.indices.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert all((b.offsets == CENTER).all() for b in batches)


def test_load_prepared(tmp_path):
    with pytest.raises(DeepPoseError, match=r"train_images\.npy: not found; run `python -m deeppose prepare"):
        load_prepared(tmp_path / "prepared", "train")
    write_tiny_prepared(tmp_path / "prepared", n_train=6, n_test=3)
    train = load_prepared(tmp_path / "prepared", "train")
    test = load_prepared(tmp_path / "prepared", split="test")
    assert len(train) == 6 and len(test) == 3
    assert isinstance(train.images, np.memmap) and not train.images.flags.writeable
    assert train.joints.shape == (6, 14, 2) and test.visible.shape == (3, 14)
    assert test.annotated.shape == (3, 14) and test.annotated.dtype == np.float32
    batch = make_batch(train, epoch_order(len(train), 4, 0, 0)[0], "center")
    assert batch.images.shape == (4, 3, 227, 227)
    with pytest.raises(ValueError, match="split"):
        load_prepared(tmp_path / "prepared", "validation")
    np.save(tmp_path / "prepared" / "test_joints.npy", np.zeros((2, 14, 2), np.float32))
    with pytest.raises(DeepPoseError, match=r"test_joints\.npy: shape \(2, 14, 2\)"):
        load_prepared(tmp_path / "prepared", "test")
