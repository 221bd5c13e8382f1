"""The prepared arrays of one split, as written by `python -m deeppose prepare`.

data = load_prepared(paths.PREPARED, "train")
len(data), data.images.shape   # N, (N, 3, 256, 256) uint8, memory-mapped
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeppose.errors import DeepPoseError
from deeppose.records import paths

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class PreparedSet:
    """One split: images (N, 3, 256, 256) uint8 CHW RGB (a read-only memmap), joints (N, 14, 2)
    float32 (x, y) in the 256 crop's pixels, visible (N, 14) float32, 1 = visible (trained on),
    annotated (N, 14) float32, 1 = annotated, occluded joints too (scored)."""

    split: str
    images: np.ndarray
    joints: np.ndarray
    visible: np.ndarray
    annotated: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def load_prepared(folder: str | Path = paths.PREPARED, split: str | None = None) -> PreparedSet:
    """Load split "train" or "test" of the prepared data in `folder`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(folder)
    arrays = {}
    for name in ("images", "joints", "visible", "annotated"):
        path = folder / f"{split}_{name}.npy"
        if not path.is_file():
            raise DeepPoseError(f"{path}: not found; run `python -m deeppose prepare` first")
        try:
            arrays[name] = np.load(path, mmap_mode="r" if name == "images" else None, allow_pickle=False)
        except (OSError, ValueError) as error:
            message = " ".join(str(error).split())
            raise DeepPoseError(
                f"{path}: not a readable .npy file ({message}); run `python -m deeppose prepare` again"
            ) from None
    n = len(arrays["images"])
    expected = {
        "images": ((n, 3, 256, 256), np.uint8),
        "joints": ((n, 14, 2), np.float32),
        "visible": ((n, 14), np.float32),
        "annotated": ((n, 14), np.float32),
    }
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise DeepPoseError(
                f"{folder / f'{split}_{name}.npy'}: shape {arrays[name].shape} {arrays[name].dtype},"
                f" expected {shape} {np.dtype(dtype)}; run `python -m deeppose prepare` again"
            )
    return PreparedSet(split=split, **arrays)
