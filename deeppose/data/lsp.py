"""Readers for the Leeds Sports Pose datasets: LSP and LSP-extended (LSPET), folder or zip.

LSP (Johnson & Everingham 2010): `joints.mat` holds `joints`, 3x14xN (rows x, y, flag), flag
**0 = visible**; images `images/im0001.jpg`... LSPET (Johnson & Everingham 2011): `joints.mat`
holds `joints`, 14x3xN (columns x, y, flag), flag **1 = visible**; images `images/im00001.jpg`...;
some joints are unannotated, with coordinates <= 0: they count as invisible. The embedded synthetic
dataset is written in LSP's format and read by `read_lsp` like the real one.

Both readers return a `PoseDataset` in one internal convention: `joints` (N, 14, 2) float64 (x, y)
pixel coordinates, 0-based as stored in the file (the study used them as they are), `visible`
(N, 14) bool, True = visible, and `annotated` (N, 14) bool, True = the joint has a position to
score against. LSP annotates every joint, occluded ones with an estimated position, so there
annotated = finite coordinates; LSPET's joints with coordinates <= 0 are unannotated. Visible
implies annotated. The standard LSP evaluation scores every annotated joint. Joint order is LSP's
(`JOINT_NAMES`). Images are decoded lazily to (H, W, 3) uint8 RGB.

A dataset is an unpacked folder holding `joints.mat` and `images/` (directly or in one subfolder),
or the original zip file with those inside, whatever its top folder. Every problem a user can fix
(missing folder, missing or unreadable `joints.mat`, wrong array shape, missing or undecodable
image, a zip member path leaving the dataset folder) raises `DeepPoseError` naming the file.
"""

from __future__ import annotations

import io
import os
import posixpath
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from deeppose.errors import DeepPoseError

JOINT_NAMES: tuple[str, ...] = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
    "right wrist", "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist",
    "neck", "head top",
)  # fmt: skip
N_JOINTS = len(JOINT_NAMES)

# Bones to draw a skeleton: (joint, joint, side) with side "right", "left" or "centre".
SKELETON: tuple[tuple[int, int, str], ...] = (
    (0, 1, "right"), (1, 2, "right"), (6, 7, "right"), (7, 8, "right"), (8, 12, "right"),
    (5, 4, "left"), (4, 3, "left"), (11, 10, "left"), (10, 9, "left"), (9, 12, "left"),
    (2, 3, "centre"), (12, 13, "centre"), (2, 8, "right"), (3, 9, "left"),
)  # fmt: skip

# name -> (joints.mat layout, image name pattern, flag value meaning "visible")
FORMATS: dict[str, tuple[str, str, int]] = {
    "lsp": ("3x14xN", "im{:04d}.jpg", 0),
    "lspet": ("14x3xN", "im{:05d}.jpg", 1),
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class _Storage:
    """Files of a dataset, addressed by '/'-separated paths relative to the dataset folder."""

    label: str  # how messages name the dataset (the folder, or the zip file)

    def where(self, relative: str) -> str:
        raise NotImplementedError

    def read(self, relative: str) -> bytes:
        raise NotImplementedError

    def names(self, folder: str) -> set[str]:
        """File names directly inside `folder`."""
        raise NotImplementedError

    def open_image(self, relative: str) -> Image.Image:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Folder(_Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def where(self, relative: str) -> str:
        return str(self.root / relative)

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def names(self, folder: str) -> set[str]:
        path = self.root / folder
        return set(os.listdir(path)) if path.is_dir() else set()

    def open_image(self, relative: str) -> Image.Image:
        return Image.open(self.root / relative)


class _Zip(_Storage):
    def __init__(self, path: Path) -> None:
        self.label = str(path)
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DeepPoseError(f"{path}: not a readable zip file ({_one_line(error)})") from None
        members = self.zip.namelist()
        for name in members:
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                self.zip.close()
                raise DeepPoseError(
                    f"{path}: member {name!r} would leave the dataset folder (absolute path or '..')"
                )
        candidates = [
            name
            for name in members
            if posixpath.basename(name) == "joints.mat" and not name.startswith("__MACOSX/")
        ]
        if not candidates:
            self.zip.close()
            raise DeepPoseError(f"{path}: no joints.mat inside the zip file")
        depth = min(name.count("/") for name in candidates)
        shallowest = [name for name in candidates if name.count("/") == depth]
        if len(shallowest) > 1:
            self.zip.close()
            raise DeepPoseError(f"{path}: several joints.mat inside the zip file: {shallowest}")
        self.prefix = posixpath.dirname(shallowest[0])
        self.prefix = f"{self.prefix}/" if self.prefix else ""
        self.members = {name[len(self.prefix) :] for name in members if name.startswith(self.prefix)}

    def where(self, relative: str) -> str:
        return f"{self.label}:{self.prefix}{relative}"

    def read(self, relative: str) -> bytes:
        return self.zip.read(self.prefix + relative)

    def names(self, folder: str) -> set[str]:
        start = folder.rstrip("/") + "/"
        return {
            name[len(start) :]
            for name in self.members
            if name.startswith(start) and "/" not in name[len(start) :] and name != start
        }

    def open_image(self, relative: str) -> Image.Image:
        return Image.open(io.BytesIO(self.read(relative)))

    def close(self) -> None:
        self.zip.close()


def _open_storage(path: Path) -> _Storage:
    if path.is_dir():
        if (path / "joints.mat").exists():
            return _Folder(path)
        inner = sorted(p for p in path.iterdir() if (p / "joints.mat").is_file())
        if len(inner) == 1:
            return _Folder(inner[0])
        raise DeepPoseError(f"{path / 'joints.mat'}: file not found (expected joints.mat and images/)")
    if path.is_file():
        return _Zip(path)
    raise DeepPoseError(f"{path}: no such dataset folder or zip file")


class PoseDataset:
    """One LSP-format dataset: labels in memory, images decoded on demand.

    joints (N, 14, 2) float64 (x, y); visible (N, 14) bool, True = visible; annotated (N, 14)
    bool, True = has a position (occluded joints too), implied by visible; `image(i)` (H, W, 3)
    uint8 RGB. Use as a context manager (or call `close`) to release an open zip file.
    """

    def __init__(
        self, name: str, storage: _Storage, joints: np.ndarray, visible: np.ndarray, annotated: np.ndarray
    ) -> None:
        self.name = name
        self.location = storage.label
        self.joints = joints
        self.visible = visible
        self.annotated = annotated
        self._storage = storage
        pattern = FORMATS[name][1]
        self.image_names = tuple(pattern.format(i + 1) for i in range(len(joints)))

    def __len__(self) -> int:
        return len(self.joints)

    def __enter__(self) -> PoseDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._storage.close()

    def image_path(self, index: int) -> str:
        """How messages name image `index` (a file path, or `zip:member`)."""
        return self._storage.where(f"images/{self.image_names[index]}")

    def _open(self, index: int) -> Image.Image:
        try:
            return self._storage.open_image(f"images/{self.image_names[index]}")
        except FileNotFoundError:
            raise DeepPoseError(f"{self.image_path(index)}: image file not found") from None
        except UnidentifiedImageError:
            raise DeepPoseError(
                f"{self.image_path(index)}: cannot decode image (not an image format PIL reads)"
            ) from None
        except Exception as error:  # PIL raises many types for bad data
            raise DeepPoseError(
                f"{self.image_path(index)}: cannot decode image ({_one_line(error)})"
            ) from None

    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height) from the image header, without decoding the pixels."""
        with self._open(index) as image:
            return image.size

    def image(self, index: int) -> np.ndarray:
        """Image `index` as (H, W, 3) uint8 RGB."""
        with self._open(index) as image:
            try:
                return np.asarray(image.convert("RGB"))
            except Exception as error:
                raise DeepPoseError(
                    f"{self.image_path(index)}: cannot decode image ({_one_line(error)})"
                ) from None


def _load_joints(storage: _Storage, layout: str) -> np.ndarray:
    where = storage.where("joints.mat")
    try:
        data = storage.read("joints.mat")
    except (FileNotFoundError, KeyError):
        raise DeepPoseError(f"{where}: file not found") from None
    except OSError as error:
        raise DeepPoseError(f"{where}: cannot read ({_one_line(error)})") from None
    try:
        content = scipy.io.loadmat(io.BytesIO(data))
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DeepPoseError(f"{where}: not a readable MATLAB file ({_one_line(error)})") from None
    if "joints" not in content:
        found = ", ".join(sorted(k for k in content if not k.startswith("__"))) or "none"
        raise DeepPoseError(f"{where}: no variable 'joints' (variables: {found})")
    joints = content["joints"]
    expected = (3, N_JOINTS) if layout == "3x14xN" else (N_JOINTS, 3)
    if (
        joints.ndim != 3
        or joints.shape[:2] != expected
        or joints.shape[2] < 1
        or not np.issubdtype(joints.dtype, np.number)
    ):
        other = "LSP-extended (14x3xN)" if layout == "3x14xN" else "LSP (3x14xN)"
        shape = "x".join(map(str, joints.shape))
        raise DeepPoseError(
            f"{where}: 'joints' has shape {shape} ({joints.dtype}), expected {layout}"
            f" numbers; is this {other}?"
        )
    # -> (N, 14, 3): x, y, flag per joint
    return joints.transpose(2, 1, 0) if layout == "3x14xN" else joints.transpose(2, 0, 1)


def _read(path: str | os.PathLike[str], name: str) -> PoseDataset:
    layout, _, visible_flag = FORMATS[name]
    storage = _open_storage(Path(path))
    try:
        raw = _load_joints(storage, layout).astype(np.float64)
        xy = raw[:, :, :2]
        flag = raw[:, :, 2]
        finite = np.isfinite(xy).all(axis=2)
        annotated = finite & (xy > 0).all(axis=2) if name == "lspet" else finite  # LSPET: <= 0 unannotated
        visible = np.isfinite(flag) & (np.rint(flag) == visible_flag) & annotated
        joints = np.where(finite[:, :, None], xy, 0.0)
        dataset = PoseDataset(name, storage, joints, visible, annotated)
        present = storage.names("images")
        missing = [i for i, image in enumerate(dataset.image_names) if image not in present]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DeepPoseError(
                f"{dataset.image_path(missing[0])}: image file not found{more};"
                f" joints.mat describes {len(dataset)} images"
            )
    except BaseException:
        storage.close()
        raise
    return dataset


def read_lsp(path: str | os.PathLike[str]) -> PoseDataset:
    """LSP (or the synthetic set): `joints.mat` 3x14xN, flag 0 = visible, every finite joint
    annotated, `images/im%04d.jpg`."""
    return _read(path, "lsp")


def read_lspet(path: str | os.PathLike[str]) -> PoseDataset:
    """LSP-extended: `joints.mat` 14x3xN, flag 1 = visible (coordinates <= 0: unannotated),
    `images/im%05d.jpg`."""
    return _read(path, "lspet")
