"""Prepare the training and test arrays: the study's padding, 256x256 crop and drop rules.

    python -m deeppose prepare --params params.yaml

Sources (`data.source` in params.yaml):
  synthetic  `data/synthetic/` (run `python -m deeppose synthesize` first): the last
             `data.synthetic.test` images are the test split
  lsp        LSP (`data.lsp.lsp`, folder or lsp_dataset.zip): the first `data.lsp.lsp_train`
             images train, the rest test (the standard split is 1000/1000; the study's code put
             image 1000 in train by an off-by-one); LSP-extended (`data.lsp.lspet`, optional): all train

Per sample, as the study's code did: zero-pad the image to at least 256x256 (the padding split
evenly, the odd pixel after), take the 256x256 window whose centre is the centre of the visible
joints' bounding box (floored to a pixel, clamped inside the padded image), and drop a training
sample unless it has a visible joint, every visible joint lies inside the window (0 <= x, y < 256)
and the visible joints span less than 227 px in x and in y (so a 227 crop can hold them). The
reason of every drop is recorded.

The test split is kept unfiltered as far as the data allow (`DROP_RULES`): the standard LSP
evaluation scores every annotated joint of every test image, and a joint outside the crop can
still be scored, since the network regresses unconstrained crop coordinates (its target merely
lies outside [0, 1]). Only a test sample without any visible joint is dropped: nothing places its
crop the way training crops were placed. summary.json's `filtering` says, per split, which rules
dropped samples and how many, and how many test samples were kept although they break a training
rule or have an annotated joint outside the 227 centre crop.

Writes, as one folder replaced atomically, `data/prepared/`:
  {train,test}_images.npy     uint8 (N, 3, 256, 256), CHW RGB
  {train,test}_joints.npy     float32 (N, 14, 2), (x, y) in the 256 crop's pixel coordinates
  {train,test}_visible.npy    float32 (N, 14), 1 = visible (the joints trained on)
  {train,test}_annotated.npy  float32 (N, 14), 1 = annotated, occluded joints too (the ones scored)
  summary.json                source, counts, dropped samples and reasons, filtering per split,
                              content hash, seed
and the same summary to `results/data/prepare.json` (committed to git; the arrays go to DVC), and
`reports/figures/prepared_samples.png`, a few prepared samples with their labels.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeppose import provenance
from deeppose.config import Params, load_params
from deeppose.data.batches import CENTER, INPUT
from deeppose.data.lsp import N_JOINTS, PoseDataset, read_lsp, read_lspet
from deeppose.errors import DeepPoseError
from deeppose.records import paths
from deeppose.records.atomic import atomic_dir, atomic_path, json_text, write_json
from deeppose.records.data import PrepareSummary
from deeppose.records.results import Provenance

SIZE = 256  # padded image minimum and crop size (the study's)
MAX_SPAN = 227  # visible joints must span less than the network's input
SPLITS = ("train", "test")
ARRAYS = ("images", "joints", "visible", "annotated")  # per split, in the order the content hash reads them
REASONS = ("no visible joint", "joints do not fit in 256 crop", "span >= 227")
DROP_RULES = {"train": REASONS, "test": REASONS[:1]}  # the test split: unfiltered where the data allow


@dataclass(frozen=True)
class Source:
    """One input dataset and the split of each of its samples ("train" or "test")."""

    name: str  # "synthetic", "lsp" or "lspet"
    dataset: PoseDataset
    splits: tuple[str, ...]
    path: str  # as given in params.yaml


def crop_origin(
    size: tuple[int, int], joints: np.ndarray, visible: np.ndarray
) -> tuple[np.ndarray, str | None]:
    """Where the 256 window starts, in the image's coordinates, and why the sample is dropped.

    `size` is (width, height); joints (14, 2); visible (14,) bool. The origin (x, y) may be
    negative (the window reaches into the padding). Crop coordinates = joints - origin. The reason
    is None when the sample is kept, else one of `REASONS`.
    """
    if not visible.any():
        return np.zeros(2, dtype=np.int64), REASONS[0]
    shown = joints[visible]
    centre = (shown.min(axis=0) + shown.max(axis=0)) / 2
    origin = np.zeros(2, dtype=np.int64)
    for axis in range(2):
        padded = max(SIZE, size[axis])
        before = (padded - size[axis]) // 2
        start = math.floor(centre[axis] + before - SIZE / 2)
        start = min(max(start, 0), padded - SIZE)
        origin[axis] = start - before
    inside = shown - origin
    if not ((inside >= 0) & (inside < SIZE)).all():
        return origin, REASONS[1]
    if ((shown.max(axis=0) - shown.min(axis=0)) >= MAX_SPAN).any():
        return origin, REASONS[2]
    return origin, None


def crop_image(image: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The 256x256 window at `origin` of an (H, W, 3) image, zero outside it, as (3, 256, 256)."""
    height, width = image.shape[:2]
    out = np.zeros((3, SIZE, SIZE), dtype=np.uint8)
    x0, y0 = int(origin[0]), int(origin[1])
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + SIZE, width), min(y0 + SIZE, height)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1].transpose(2, 0, 1)
    return out


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over `{split}_{name}` arrays in the order SPLITS x ARRAYS: key, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for name in ARRAYS:
            key = f"{split}_{name}"
            array = arrays[key]
            digest.update(f"{key} {array.dtype.str} {tuple(array.shape)}\n".encode())
            step = 256
            for start in range(0, len(array), step):  # in slices: images may be a memmap
                digest.update(np.ascontiguousarray(array[start : start + step]).tobytes())
    return digest.hexdigest()


def filtering(
    arrays: dict[str, np.ndarray], dropped: list[dict[str, Any]], breaking: dict[str, int]
) -> dict[str, Any]:
    """Per split, the rules that drop samples and how many they dropped; for the test split also
    how many samples were kept although they break a training rule (`breaking`, by reason) and how
    many have an annotated joint outside the 227 centre crop (scored all the same)."""
    crop = arrays["test_joints"] - CENTER
    annotated = arrays["test_annotated"] > 0.5
    outside = (((crop < 0) | (crop >= INPUT)).any(axis=2) & annotated).any(axis=1)
    rules = {
        split: {"drop_rules": list(DROP_RULES[split]), "dropped": sum(d["split"] == split for d in dropped)}
        for split in SPLITS
    }
    rules["test"] |= {
        "kept_breaking_train_rules": breaking,
        "kept_with_joint_outside_centre_crop": int(outside.sum()),
    }
    return rules


def write_prepared(folder: Path, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> None:
    """Write arrays (keys `{split}_{name}`) and summary.json into an existing folder."""
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)
    write_json(folder / "summary.json", summary)


def prepare(
    sources: Sequence[Source],
    source_name: str,
    seed: int,
    out: Path = paths.PREPARED,
    summary_path: Path | None = None,
    summary_provenance: Provenance | None = None,
    preview_path: Path | None = None,
) -> dict[str, Any]:
    """Crop every sample of `sources`, write `out` (atomically), return the summary.

    `summary_path` (with `summary_provenance`) and `preview_path`, when given, receive the summary
    as a `PrepareSummary` record and the preview figure; the three change together or not at all.
    """
    # pass 1: decide from the labels and the image headers; no pixels decoded
    kept: dict[str, list[tuple[PoseDataset, int, np.ndarray]]] = {split: [] for split in SPLITS}
    dropped = []
    breaking = {reason: 0 for reason in REASONS[1:]}  # test samples kept despite a training rule
    for source in sources:
        dataset = source.dataset
        for index in range(len(dataset)):
            size = dataset.image_size(index)
            origin, reason = crop_origin(size, dataset.joints[index], dataset.visible[index])
            split = source.splits[index]
            if reason not in DROP_RULES[split]:
                kept[split].append((dataset, index, origin))
                if reason is not None:
                    breaking[reason] += 1
            else:
                dropped.append({"input": source.name, "index": index, "image": dataset.image_names[index],
                                "split": split, "reason": reason})  # fmt: skip
    for split in SPLITS:
        if not kept[split]:
            where = ", ".join(s.path for s in sources)
            raise DeepPoseError(f"{where}: no {split} sample is left after cropping ({len(dropped)} dropped)")

    # pass 2: decode and crop the kept samples straight into the output files. The summary's and
    # the preview's temporaries join the same commit: the three are renamed only once all are
    # written, so a folder or disk that refuses a write leaves data/prepared/ and its summary in step.
    with contextlib.ExitStack() as commit:
        tmp = commit.enter_context(atomic_dir(out))
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            n = len(kept[split])
            images = np.lib.format.open_memmap(tmp / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                               shape=(n, 3, SIZE, SIZE))  # fmt: skip
            joints = np.zeros((n, N_JOINTS, 2), dtype=np.float32)
            visible = np.zeros((n, N_JOINTS), dtype=np.float32)
            annotated = np.zeros((n, N_JOINTS), dtype=np.float32)
            for k, (dataset, index, origin) in enumerate(kept[split]):
                images[k] = crop_image(dataset.image(index), origin)
                joints[k] = dataset.joints[index] - origin
                visible[k] = dataset.visible[index]
                annotated[k] = dataset.annotated[index]
            images.flush()
            arrays[f"{split}_images"] = images
            arrays[f"{split}_joints"] = joints
            arrays[f"{split}_visible"] = visible
            arrays[f"{split}_annotated"] = annotated
        for split in SPLITS:
            for name in ARRAYS[1:]:
                np.save(tmp / f"{split}_{name}.npy", arrays[f"{split}_{name}"])
        summary = {
            "source": source_name,
            "seed": seed,
            "inputs": [
                {
                    "name": s.name,
                    "path": s.path,
                    "images": len(s.dataset),
                    **{split: s.splits.count(split) for split in SPLITS},
                }
                for s in sources
            ],  # fmt: skip
            "crop": {"size": SIZE, "max_span": MAX_SPAN, "input": MAX_SPAN},
            "kept": {split: len(kept[split]) for split in SPLITS},
            "filtering": filtering(arrays, dropped, breaking),
            "dropped": {
                "total": len(dropped),
                "by_reason": {reason: sum(d["reason"] == reason for d in dropped) for reason in REASONS},
                "samples": dropped,
            },
            "arrays": {key: {"dtype": a.dtype.str, "shape": list(a.shape)} for key, a in arrays.items()},
            "sha256": content_hash(arrays),
        }
        write_json(tmp / "summary.json", summary)
        if summary_path is not None and summary_provenance is not None:
            record = PrepareSummary.create(**summary, provenance=summary_provenance)
            commit.enter_context(atomic_path(summary_path)).write_text(
                json_text(record.to_dict()), encoding="utf-8"
            )
        if preview_path is not None:
            from deeppose.data.preview import preview_png

            commit.enter_context(atomic_path(preview_path)).write_bytes(preview_png(arrays))
        del arrays, images
    return summary


def sources_from_params(params: Params) -> tuple[str, list[Source]]:
    """The datasets named by params.yaml's `data` section, opened, with each sample's split."""
    data = params.data
    where = params.path
    if data.source == "synthetic":
        count, test = data.synthetic.images, data.synthetic.test
        if not paths.SYNTHETIC.exists():
            raise DeepPoseError(f"{paths.SYNTHETIC}: not found; run `python -m deeppose synthesize` first")
        dataset = read_lsp(paths.SYNTHETIC)
        if len(dataset) != count:
            dataset.close()
            raise DeepPoseError(
                f"{paths.SYNTHETIC}/joints.mat: holds {len(dataset)} images but {where} says"
                f" data.synthetic.images: {count}; run `python -m deeppose synthesize` again"
            )
        splits = tuple("train" if i < count - test else "test" for i in range(count))
        return "synthetic", [Source("synthetic", dataset, splits, str(paths.SYNTHETIC))]
    lsp_path, lspet_path = data.lsp.lsp, data.lsp.lspet
    n_train = data.lsp.lsp_train
    lsp = read_lsp(lsp_path)
    if n_train >= len(lsp):
        lsp.close()
        raise DeepPoseError(
            f"{where}: data.lsp.lsp_train: {n_train} leaves no test image ({lsp_path} holds {len(lsp)})"
        )
    splits = tuple("train" if i < n_train else "test" for i in range(len(lsp)))
    sources = [Source("lsp", lsp, splits, lsp_path)]
    if lspet_path:
        try:
            lspet = read_lspet(lspet_path)
        except BaseException:
            lsp.close()
            raise
        sources.append(Source("lspet", lspet, ("train",) * len(lspet), lspet_path))
    return "lsp", sources


def report(summary: dict[str, Any], out: Path) -> str:
    inputs = "; ".join(f"{i['name']} {i['path']} ({i['images']} images)" for i in summary["inputs"])
    kept, dropped = summary["kept"], summary["dropped"]
    reasons = ", ".join(f"{reason}: {count}" for reason, count in dropped["by_reason"].items())
    total = sum(i["images"] for i in summary["inputs"])
    return (
        f"prepare: {summary['source']} source, {inputs}. Kept {kept['train']} train and"
        f" {kept['test']} test samples of {total}; dropped {dropped['total']} ({reasons});"
        f" the test split is filtered only by: {', '.join(summary['filtering']['test']['drop_rules'])}."
        f" Wrote {out}/ (sha256 {summary['sha256'][:12]}), {paths.prepared_summary()} and"
        f" {paths.preview_image()}."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = f"Writes {paths.PREPARED}/, {paths.prepared_summary()} and {paths.preview_image()}."


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    source_name, sources = sources_from_params(params)
    try:
        summary = prepare(
            sources,
            source_name,
            params.seed,
            out=paths.PREPARED,
            summary_path=paths.prepared_summary(),
            summary_provenance=provenance.record("prepare", params),
            preview_path=paths.preview_image(),
        )
    finally:
        for source in sources:
            source.dataset.close()
    print(report(summary, paths.PREPARED))
