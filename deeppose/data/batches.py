"""Framework-neutral, seeded batches: every framework gets the same batches in the same order.

    for iteration, indices in enumerate(epoch_order(len(data), batch_size, seed, epoch)):
        rng = batch_rng(seed, epoch, iteration) if augment else None
        batch = make_batch(data, indices, "random" if augment else "center", rng)
        # batch.images (B, 3, 227, 227) float32, batch.targets (B, 28), batch.visible (B, 14)
    for batch in iterate_batches(test, batch_size):   # evaluation: whole split, in order
        ...

Order: each epoch is a permutation drawn from a generator seeded by (seed, epoch) alone, so a run
resumed at epoch k sees the same batches as an uninterrupted one without replaying earlier epochs.
Training batches **drop the last partial batch** (every iteration has the same batch size, which
keeps per-iteration times comparable), except that a split smaller than one batch gives one batch
of all its samples; `iterate_batches` (evaluation) keeps every sample.

Input, as in the study: a 227x227 crop of the 256x256 prepared image (the centre one, offset 14,
or a random offset in [0, 29] per sample and axis), pixels / 255 (no mean subtraction), targets =
crop coordinates / 227 flattened as x0, y0, x1, y1, ... A visible joint that falls outside the
227 crop (0 <= x, y < 227) counts as invisible in that batch: the loss trains on what is seen.
Scoring (`centre_targets`) counts every annotated joint, inside the crop or not: a joint outside it
has a target outside [0, 1], which the network's unconstrained regression can still reach.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from deeppose.data.dataset import PreparedSet

INPUT = 227  # the network's input size
PREPARED = 256  # the prepared images' size
MAX_OFFSET = PREPARED - INPUT  # 29: random crops start at 0..29
CENTER = MAX_OFFSET // 2  # 14: the centre crop's offset
ORDER_STREAM, CROP_STREAM = 0xB0, 0xC0  # keep these streams apart from other users of the seed


@dataclass(frozen=True, eq=False)
class Batch:
    """images (B, 3, 227, 227) float32 in [0, 1]; targets (B, 28) float32 (x, y per joint) / 227;
    visible (B, 14) float32, 1 = visible; indices (B,) the samples; offsets (B, 2) int the crop
    origin (x, y) in the 256 image."""

    images: np.ndarray
    targets: np.ndarray
    visible: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The index batches (int64 arrays) of one training epoch; see the module docstring."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < 1:
        return []
    order = np.random.default_rng([seed, ORDER_STREAM, epoch]).permutation(n).astype(np.int64)
    if n < batch_size:
        return [order]
    return [order[start : start + batch_size] for start in range(0, n - batch_size + 1, batch_size)]


def iterations_per_epoch(n: int, batch_size: int) -> int:
    """len(epoch_order(n, batch_size, ...)) without drawing it."""
    return 0 if n < 1 else max(1, n // batch_size)


def batch_rng(seed: int, epoch: int, iteration: int) -> np.random.Generator:
    """The generator of one training iteration's random crops."""
    return np.random.default_rng([seed, CROP_STREAM, epoch, iteration])


def make_batch(
    data: PreparedSet, indices: np.ndarray, crop: str, rng: np.random.Generator | None = None
) -> Batch:
    """Cut the 227 crops of samples `indices`: `crop` "center", or "random" with offsets from `rng`."""
    indices = np.asarray(indices, dtype=np.int64)
    b = len(indices)
    if crop == "center":
        offsets = np.full((b, 2), CENTER, dtype=np.int64)
    elif crop == "random":
        if rng is None:
            raise ValueError("make_batch: crop='random' needs an rng (see batch_rng)")
        offsets = rng.integers(0, MAX_OFFSET + 1, size=(b, 2), dtype=np.int64)
    else:
        raise ValueError(f"make_batch: crop must be 'center' or 'random', got {crop!r}")
    images = np.empty((b, 3, INPUT, INPUT), dtype=np.float32)
    for k, (index, (x, y)) in enumerate(zip(indices, offsets)):
        np.divide(data.images[index, :, y : y + INPUT, x : x + INPUT], 255, out=images[k], dtype=np.float32)
    targets, visible = crop_targets(data, indices, offsets)
    return Batch(images=images, targets=targets, visible=visible, indices=indices, offsets=offsets)


def crop_targets(
    data: PreparedSet, indices: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Targets (B, 28) and visibility (B, 14), float32, of samples `indices` cropped at `offsets`."""
    joints = data.joints[indices] - offsets[:, None, :].astype(np.float32)  # (B, 14, 2)
    inside = ((joints >= 0) & (joints < INPUT)).all(axis=2)
    visible = (data.visible[indices] * inside).astype(np.float32)
    targets = (joints / np.float32(INPUT)).reshape(len(indices), -1).astype(np.float32)
    return targets, visible


def centre_targets(data: PreparedSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centre-crop targets (N, 28), visibility (N, 14) and annotation (N, 14), float32, of a
    whole split, without cutting any image. Annotation is not limited to the crop: it says which
    joints are scored."""
    indices = np.arange(len(data), dtype=np.int64)
    targets, visible = crop_targets(data, indices, np.full((len(data), 2), CENTER, dtype=np.int64))
    return targets, visible, np.asarray(data.annotated, dtype=np.float32)


def iterate_batches(data: PreparedSet, batch_size: int) -> Iterator[Batch]:
    """Centre-crop batches over the whole split, in order, the last one possibly smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(data), batch_size):
        yield make_batch(data, np.arange(start, min(start + batch_size, len(data))), "center")
