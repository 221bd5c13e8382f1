"""Tiny datasets in the real formats, for the tests of every stage that reads data.

    write_lsp_folder(tmp / "lsp", joints, visible, sizes)              # LSP: 3x14xN, flag 0 = visible
    write_lsp_folder(tmp / "lspet", joints, visible, sizes, "lspet")   # LSPET: 14x3xN, flag 1 = visible
    zip_folder(tmp / "lsp", tmp / "lsp_dataset.zip", top="lsp_dataset")
    write_tiny_prepared(tmp / "prepared", n_train=8, n_test=4, seed=0)  # what `prepare` writes

Images are black with a bright filled square (`MARK` px) centred on every joint, so a test can
find a joint's mark in the prepared image at the prepared coordinates.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from deeppose.data.lsp import N_JOINTS
from deeppose.data.synthetic import mat_bytes

MARK = 7  # side of the square drawn on each joint, px (odd: centred on the joint's pixel)
# The formats, spelled out here independently of deeppose.data.lsp so that tests check the reader:
# (flag meaning "visible", image name pattern)
LAYOUTS = {"lsp": (0, "im{:04d}.jpg"), "lspet": (1, "im{:05d}.jpg")}


def marked_image(size: tuple[int, int], joints: np.ndarray) -> Image.Image:
    """A black (width, height) RGB image with a white MARK x MARK square on each joint inside it."""
    image = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    half = MARK // 2
    for x, y in np.rint(joints).astype(int):
        draw.rectangle([x - half, y - half, x + half, y + half], fill=(255, 255, 255))
    return image


def write_lsp_folder(
    folder: str | Path,
    joints: np.ndarray,
    visible: np.ndarray,
    sizes: list[tuple[int, int]],
    layout: str = "lsp",
    flags: np.ndarray | None = None,
) -> Path:
    """Write an LSP ("lsp") or LSP-extended ("lspet") dataset: joints (N, 14, 2), visible (N, 14)
    bool, sizes [(width, height)] per image. `flags`, when given, is written as is instead of the
    flags `visible` implies."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    joints = np.asarray(joints, dtype=np.float64)
    n = len(joints)
    visible_flag, pattern = LAYOUTS[layout]
    if flags is None:
        flags = np.where(np.asarray(visible, dtype=bool), visible_flag, 1 - visible_flag).astype(np.float64)
    table = np.concatenate([joints, np.asarray(flags, dtype=np.float64)[:, :, None]], axis=2)  # (N, 14, 3)
    array = table.transpose(2, 1, 0) if layout == "lsp" else table.transpose(1, 2, 0)
    assert array.shape == ((3, N_JOINTS, n) if layout == "lsp" else (N_JOINTS, 3, n))
    (folder / "joints.mat").write_bytes(mat_bytes({"joints": array}))
    for i in range(n):
        marked_image(sizes[i], joints[i]).save(folder / "images" / pattern.format(i + 1), quality=95)
    return folder


def zip_folder(folder: str | Path, zip_path: str | Path, top: str = "") -> Path:
    """Zip `folder`'s files, under the top folder `top` ("" puts them at the zip's root)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{top}/{name}" if top else name)
    return zip_path


def write_tiny_prepared(folder: str | Path, n_train: int = 8, n_test: int = 4, seed: int = 0) -> Path:
    """A prepared folder in `prepare`'s exact format, from random pixels and plausible joints."""
    from deeppose.data.prepare import SPLITS, content_hash, write_prepared
    from deeppose.records.atomic import atomic_dir

    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(SPLITS, (n_train, n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 3, 256, 256), dtype=np.uint8)
        arrays[f"{split}_joints"] = rng.uniform(40, 216, size=(n, N_JOINTS, 2)).astype(np.float32)
        arrays[f"{split}_visible"] = (rng.random((n, N_JOINTS)) < 0.9).astype(np.float32)
        arrays[f"{split}_annotated"] = np.ones((n, N_JOINTS), dtype=np.float32)  # as in LSP
    summary = {
        "source": "tiny",
        "seed": seed,
        "kept": {"train": n_train, "test": n_test},
        "dropped": {"total": 0, "by_reason": {}, "samples": []},
        "sha256": content_hash(arrays),
    }
    with atomic_dir(folder) as tmp:
        write_prepared(tmp, arrays, summary)
    return Path(folder)


def write_params(path: str | Path, data: dict, seed: int = 0) -> Path:
    """A parameter file: the project's params.yaml with `seed` and the `data` section replaced
    (keys given in `data` override those of params.yaml's data section, one level deep)."""
    import yaml

    project = Path(__file__).resolve().parent.parent / "params.yaml"
    raw = yaml.safe_load(project.read_text())
    raw["seed"] = seed
    for key, value in data.items():
        raw["data"][key] = {**raw["data"][key], **value} if isinstance(value, dict) else value
    path = Path(path)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
