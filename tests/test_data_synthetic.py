"""The synthetic dataset: LSP format, plausible figures, determinism, the same reader and prepare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from tiny_datasets import write_params

from deeppose import cli
from deeppose.data import synthetic
from deeppose.data.dataset import load_prepared
from deeppose.data.lsp import read_lsp
from deeppose.data.synthetic import render_sample, synthesize
from deeppose.records import paths


def files(folder):
    paths_ = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths_}


def test_lsp_on_disk_format(tmp_path):
    synthesize(tmp_path / "s", 5, seed=1)
    assert sorted(files(tmp_path / "s")) == [f"images/im{i:04d}.jpg" for i in range(1, 6)] + ["joints.mat"]
    raw = scipy.io.loadmat(tmp_path / "s" / "joints.mat")["joints"]
    assert raw.shape == (3, 14, 5) and raw.dtype == np.float64
    assert set(np.unique(raw[2])) <= {0.0, 1.0}
    with read_lsp(tmp_path / "s") as data:
        np.testing.assert_array_equal(data.joints, raw[:2].transpose(2, 1, 0))
        np.testing.assert_array_equal(data.visible, raw[2].T == 0)
        assert data.annotated.all()  # occluded joints keep their position: annotated, as in LSP
        for i in range(5):
            width, height = data.image_size(i)
            assert 150 <= max(width, height) <= 280
            assert (data.joints[i] >= 0).all() and (data.joints[i] < [width, height]).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    synthesize(tmp_path / "a", 4, seed=7)
    synthesize(tmp_path / "b", 4, seed=7)
    synthesize(tmp_path / "c", 4, seed=8)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert all(a[name] != c[name] for name in a)
    # images do not depend on how many are drawn
    synthesize(tmp_path / "d", 2, seed=7)
    d = files(tmp_path / "d")
    assert d["images/im0002.jpg"] == a["images/im0002.jpg"]


def test_figures_are_articulated_and_plausible():
    rng = np.random.default_rng(0)
    ratios, hidden, thigh_shin = [], [], []
    for _ in range(150):
        image, joints, visible = render_sample(rng)
        torso = np.linalg.norm((joints[8] + joints[9]) / 2 - (joints[2] + joints[3]) / 2)
        limbs = {
            "upper arm": [(8, 7), (9, 10)], "forearm": [(7, 6), (10, 11)],
            "thigh": [(2, 1), (3, 4)], "shin": [(1, 0), (4, 5)], "head": [(12, 13)],
        }  # fmt: skip
        for name, pairs in limbs.items():
            for a, b in pairs:
                ratios.append((name, np.linalg.norm(joints[a] - joints[b]) / torso))
        thigh_shin.append(np.linalg.norm(joints[2] - joints[1]) / np.linalg.norm(joints[1] - joints[0]))
        hidden.append(14 - visible.sum())
        assert image.mode == "RGB"
    for name in ("upper arm", "forearm", "thigh", "shin", "head"):
        values = np.array([r for n, r in ratios if n == name])
        assert 0.25 < values.min() and values.max() < 1.3, name  # human proportions, foreshortened
    assert 0.5 < np.median(thigh_shin) < 1.6
    hidden = np.array(hidden)
    assert 0.15 < (hidden > 0).mean() < 0.6  # occluders hide joints in some images
    assert hidden.max() < 14


def test_same_reader_and_prepare_path_and_deterministic_hash(tmp_path, monkeypatch, capsys):
    hashes = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        work = tmp_path / name
        work.mkdir()
        monkeypatch.chdir(work)
        data = {"source": "synthetic", "synthetic": {"images": 12, "test": 4}}
        params = write_params(work / "p.yaml", data, seed)
        assert cli.main(["synthesize", "--params", str(params)]) == 0
        assert cli.main(["prepare", "--params", str(params)]) == 0
        summary = json.loads(paths.prepared_summary().read_text())
        assert summary["source"] == "synthetic" and summary["seed"] == seed
        assert summary["inputs"] == [{"name": "synthetic", "path": "data/synthetic", "images": 12,
                                      "train": 8, "test": 4}]  # fmt: skip
        kept = summary["kept"]
        assert kept["train"] + kept["test"] + summary["dropped"]["total"] == 12
        assert kept["test"] >= 3 and kept["train"] >= 6
        test = load_prepared(paths.PREPARED, "test")
        assert len(test) == kept["test"] == 4  # the test split unfiltered: every image has a visible joint
        assert test.annotated.all()
        hashes[name] = (summary["sha256"], files(work / "data"), paths.preview_image().read_bytes())
    out = capsys.readouterr().out
    assert "synthesize: wrote 12 images" in out and "prepare: synthetic source" in out
    assert hashes["a"] == hashes["b"]  # same seed: same prepared hash, same files, same preview
    assert hashes["a"][0] != hashes["c"][0]


def test_prepare_refuses_a_stale_synthetic_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "p.yaml", {"source": "synthetic", "synthetic": {"images": 6, "test": 2}})
    assert cli.main(["prepare", "--params", str(params)]) == 2
    assert "data/synthetic: not found; run `python -m deeppose synthesize` first" in capsys.readouterr().err
    synthesize(paths.SYNTHETIC, 5, seed=0)
    assert cli.main(["prepare", "--params", str(params)]) == 2
    assert "data/synthetic/joints.mat: holds 5 images" in capsys.readouterr().err
    assert not paths.PREPARED.exists()


@pytest.mark.parametrize("seed", [0, 1])
def test_render_is_a_function_of_the_generator(seed):
    a = render_sample(np.random.default_rng(seed))
    b = render_sample(np.random.default_rng(seed))
    assert a[0].tobytes() == b[0].tobytes()
    np.testing.assert_array_equal(a[1], b[1])
    assert synthetic.JPEG_QUALITY == 90
