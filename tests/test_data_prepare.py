"""`prepare`: padding, the 256 crop, drop rules, splits, zip input, outputs, errors via the CLI."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from tiny_datasets import MARK, write_lsp_folder, write_params, zip_folder

from deeppose import cli
from deeppose.data.dataset import load_prepared
from deeppose.data.prepare import ARRAYS, content_hash, crop_image, crop_origin
from deeppose.records import paths
from deeppose.records.data import PrepareSummary
from deeppose.records.results import SCHEMA_VERSION


def grid(x0: float, y0: float, step: float) -> np.ndarray:
    k = np.arange(14)
    return np.stack([x0 + (k % 4) * step, y0 + (k // 4) * step], axis=1).astype(np.float64)


def lsp_samples():
    """7 LSP images; lsp_train = 3. Kept: 0, 1 (train), 3, 4, 5, 6 (test: 3 and 4 break the training
    rules); dropped: 2."""
    joints, visible, sizes = [], [], []

    def add(j, size, invisible=()):
        v = np.ones(14, dtype=bool)
        v[list(invisible)] = False
        joints.append(j), visible.append(v), sizes.append(size)

    add(grid(15, 15, 25), (120, 100))  # 0: small, padded
    add(grid(250, 150, 40), (400, 300))  # 1: large, crop clamped at the right/bottom edges
    add(grid(20, 20, 20), (120, 120), invisible=range(14))  # 2: no visible joint
    add(grid(10, 10, 78), (250, 250))  # 3: spans 234 px
    j = grid(10, 10, 20)
    j[0] = (-100, 50)  # 4: a visible joint far outside the image
    add(j, (100, 100))
    add(grid(20, 20, 30), (200, 150), invisible=[5, 11])  # 5: two invisible joints
    add(grid(60, 60, 40), (256, 256))  # 6: exactly 256
    return np.stack(joints), np.stack(visible), sizes


def lspet_samples():
    """3 LSPET images, all train. Kept: 0, 1; dropped: 2 (nothing annotated). Joint 4 of image 0 is
    occluded (annotated), joint 9 unannotated."""
    joints = np.stack([grid(20, 30, 35), grid(30, 20, 25), np.full((14, 2), -1.0)])
    flags = np.ones((3, 14))
    flags[0, 4] = 0  # not visible
    joints[0, 9] = (0.0, 0.0)  # unannotated
    return joints, flags, [(180, 200), (150, 220), (90, 90)]


@pytest.fixture
def sources(tmp_path):
    joints, visible, sizes = lsp_samples()
    lsp = write_lsp_folder(tmp_path / "in" / "lsp", joints, visible, sizes)
    ej, flags, esizes = lspet_samples()
    lspet = write_lsp_folder(tmp_path / "in" / "lspet", ej, None, esizes, "lspet", flags=flags)
    return lsp, lspet


def run_prepare(tmp_path, lsp, lspet, monkeypatch, capsys=None):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {
        "source": "lsp", "lsp": {"lsp": str(lsp), "lspet": str(lspet) if lspet else None, "lsp_train": 3}
    })  # fmt: skip
    return cli.main(["prepare", "--params", str(params)])


def marks_at(image: np.ndarray, joints: np.ndarray, visible: np.ndarray) -> None:
    """Each visible joint's mark is centred on its prepared coordinates (to half a pixel)."""
    half = MARK // 2 + 2
    for (x, y), v in zip(joints, visible):
        if not v:
            continue
        xi, yi = int(round(x)), int(round(y))
        window = image[:, yi - half : yi + half + 1, xi - half : xi + half + 1].mean(axis=0)
        assert window[half, half] > 200, (x, y)
        ys, xs = np.nonzero(window > 128)
        assert abs(xs.mean() - half - (x - xi)) <= 0.5 and abs(ys.mean() - half - (y - yi)) <= 0.5


def test_crop_origin_by_hand():
    visible = np.ones(14, dtype=bool)
    # small image: padded evenly to 256, window = the padded image
    origin, reason = crop_origin((120, 100), grid(15, 15, 25), visible)
    assert reason is None and origin.tolist() == [-68, -78]
    # large image: window centred on the joints (310, 210), clamped to 400-256, 300-256
    origin, reason = crop_origin((400, 300), grid(250, 150, 40), visible)
    assert reason is None and origin.tolist() == [144, 44]
    origin, reason = crop_origin((600, 600), grid(250, 150, 40), visible)
    assert reason is None and origin.tolist() == [310 - 128, 210 - 128]
    assert crop_origin((100, 100), grid(0, 0, 1), np.zeros(14, bool))[1] == "no visible joint"
    assert crop_origin((600, 600), grid(0, 0, 90), visible)[1] == "joints do not fit in 256 crop"
    assert crop_origin((250, 250), grid(10, 10, 78), visible)[1] == "span >= 227"
    assert crop_origin((250, 250), grid(10, 10, 75.6), visible)[1] is None  # span 226.8


def test_crop_image_places_the_window():
    image = np.arange(50 * 40 * 3, dtype=np.int64).reshape(50, 40, 3).astype(np.uint8)
    out = crop_image(image, np.array([-10, -20]))
    assert out.shape == (3, 256, 256)
    np.testing.assert_array_equal(out[:, 20:70, 10:50], image.transpose(2, 0, 1))
    assert out[:, :20].max() == 0 and out[:, :, :10].max() == 0 and out[:, 70:].max() == 0
    out = crop_image(np.full((300, 300, 3), 7, np.uint8), np.array([100, 250]))
    assert out[:, :50, :200].min() == 7 and out[:, 50:].max() == 0 and out[:, :, 200:].max() == 0


def test_prepare_lsp_and_lspet(tmp_path, sources, monkeypatch, capsys):
    lsp, lspet = sources
    assert run_prepare(tmp_path, lsp, lspet, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "Kept 4 train and 4 test samples of 10; dropped 2" in out
    assert "the test split is filtered only by: no visible joint." in out

    train, test = load_prepared(paths.PREPARED, "train"), load_prepared(paths.PREPARED, "test")
    assert len(train) == 4 and len(test) == 4
    assert train.images.shape == (4, 3, 256, 256) and train.images.dtype == np.uint8
    assert train.joints.dtype == np.float32 and train.visible.dtype == np.float32
    assert train.annotated.dtype == np.float32 and test.annotated.shape == (4, 14)

    lj, lv, _ = lsp_samples()
    ej, eflags, _ = lspet_samples()
    ev = (eflags == 1) & (ej > 0).all(axis=2)
    # hand-computed windows: [-68, -78] and [144, 44] (see test_crop_origin_by_hand)
    np.testing.assert_allclose(train.joints[0], lj[0] + [68, 78])
    np.testing.assert_allclose(train.joints[1], lj[1] - [144, 44])
    np.testing.assert_array_equal(train.visible, np.stack([lv[0], lv[1], ev[0], ev[1]]).astype(np.float32))
    np.testing.assert_array_equal(test.visible, lv[3:].astype(np.float32))
    assert test.visible[2].sum() == 12 and train.visible[2].sum() == 12
    # annotated: every LSP joint (occluded ones too); LSPET image 0 lacks joint 9 only
    assert test.annotated.all() and train.annotated[[0, 1, 3]].all()
    assert np.flatnonzero(train.annotated[2] == 0).tolist() == [9] and train.visible[2, 4] == 0
    assert test.joints[1, 0, 0] < 0  # test image 4: its far joint kept, outside the crop, scored
    for data in (train, test):
        for i in range(len(data)):
            inside = ((data.joints[i] >= 0) & (data.joints[i] < 256)).all(axis=1)
            marks_at(np.asarray(data.images[i]), data.joints[i], data.visible[i] * inside)

    summary = json.loads((paths.PREPARED / "summary.json").read_text())
    record = PrepareSummary.read(paths.prepared_summary()).to_dict()
    assert record.pop("kind") == "prepare" and record.pop("provenance")["stage"] == "prepare"
    assert record.pop("schema_version") == SCHEMA_VERSION and record == summary
    assert summary["source"] == "lsp" and summary["kept"] == {"train": 4, "test": 4}
    assert [(d["input"], d["index"], d["split"], d["reason"]) for d in summary["dropped"]["samples"]] == [
        ("lsp", 2, "train", "no visible joint"),
        ("lspet", 2, "train", "no visible joint"),
    ]
    assert summary["dropped"]["by_reason"] == {
        "no visible joint": 2, "joints do not fit in 256 crop": 0, "span >= 227": 0,
    }  # fmt: skip
    assert summary["dropped"]["total"] == 2
    assert summary["filtering"] == {
        "train": {"drop_rules": ["no visible joint", "joints do not fit in 256 crop", "span >= 227"], "dropped": 2},
        "test": {"drop_rules": ["no visible joint"], "dropped": 0,
                 "kept_breaking_train_rules": {"joints do not fit in 256 crop": 1, "span >= 227": 1},
                 "kept_with_joint_outside_centre_crop": 2},  # images 3 (span 234) and 4
    }  # fmt: skip
    assert "train_annotated" in summary["arrays"] and "test_annotated" in summary["arrays"]
    arrays = {f"{s}_{n}": np.load(paths.PREPARED / f"{s}_{n}.npy") for s in ("train", "test")
              for n in ARRAYS}  # fmt: skip
    assert summary["sha256"] == content_hash(arrays)
    assert paths.preview_image().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_zip_inputs_give_the_same_arrays(tmp_path, sources, monkeypatch):
    lsp, lspet = sources
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert run_prepare(tmp_path / "a", lsp, lspet, monkeypatch) == 0
    lsp_zip = zip_folder(lsp, tmp_path / "lsp_dataset.zip", top="lsp_dataset")
    lspet_zip = zip_folder(lspet, tmp_path / "lspet_dataset.zip")
    assert run_prepare(tmp_path / "b", lsp_zip, lspet_zip, monkeypatch) == 0
    a = json.loads((tmp_path / "a" / paths.prepared_summary()).read_text())
    b = json.loads((tmp_path / "b" / paths.prepared_summary()).read_text())
    assert a["sha256"] == b["sha256"] and a["dropped"] == b["dropped"] and a["kept"] == b["kept"]
    for name in (
        "train_images.npy",
        "train_joints.npy",
        "test_images.npy",
        "test_visible.npy",
        "train_annotated.npy",
    ):
        assert (tmp_path / "a" / paths.PREPARED / name).read_bytes() == (
            tmp_path / "b" / paths.PREPARED / name
        ).read_bytes()


def _break(case: str, lsp, tmp_path):
    """Damage the LSP input as `case` says; return (path for params, text the message must name)."""
    images = lsp / "images"
    if case == "missing folder":
        return tmp_path / "no_such_lsp", "no_such_lsp"
    if case == "missing joints.mat":
        (lsp / "joints.mat").unlink()
        return lsp, "joints.mat"
    if case == "unreadable joints.mat":
        (lsp / "joints.mat").write_bytes(b"\x00" * 200)
        return lsp, "joints.mat"
    if case == "wrong shape":
        (lsp / "joints.mat").write_bytes((tmp_path / "in" / "lspet" / "joints.mat").read_bytes())
        return lsp, "joints.mat"
    if case == "missing image":
        (images / "im0006.jpg").unlink()
        return lsp, "im0006.jpg"
    if case == "undecodable image":
        (images / "im0002.jpg").write_bytes(b"this is not a jpeg")
        return lsp, "im0002.jpg"
    if case == "truncated image":  # the header decodes, the pixels do not: fails in pass 2
        data = (images / "im0006.jpg").read_bytes()
        (images / "im0006.jpg").write_bytes(data[: len(data) // 3])
        return lsp, "im0006.jpg"
    if case == "zip member outside":
        archive = zip_folder(lsp, tmp_path / "lsp_dataset.zip", top="lsp_dataset")
        with zipfile.ZipFile(archive, "a") as handle:
            handle.writestr("lsp_dataset/../../outside.txt", b"x")
        return archive, "lsp_dataset.zip"
    raise AssertionError(case)


CASES = ["missing folder", "missing joints.mat", "unreadable joints.mat", "wrong shape", "missing image",
         "undecodable image", "truncated image", "zip member outside"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_naming_the_file_and_leaves_nothing(
    tmp_path, sources, monkeypatch, capsys, case
):
    lsp, lspet = sources
    path, name = _break(case, lsp, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    assert run_prepare(work, path, lspet, monkeypatch) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deeppose prepare: error: "), captured.err
    assert name in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (work / "data").exists() or list((work / "data").iterdir()) == []
    assert not (work / "results").exists() and not (work / "reports").exists()


def test_failed_run_keeps_the_previous_output(tmp_path, sources, monkeypatch, capsys):
    lsp, lspet = sources
    assert run_prepare(tmp_path, lsp, lspet, monkeypatch) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / paths.PREPARED).iterdir()}
    data = (lsp / "images" / "im0007.jpg").read_bytes()
    (lsp / "images" / "im0007.jpg").write_bytes(data[:200])
    assert run_prepare(tmp_path, lsp, lspet, monkeypatch) == 2
    assert "im0007.jpg" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in (tmp_path / paths.PREPARED).iterdir()}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"]


def test_lsp_train_must_leave_a_test_image(tmp_path, sources, monkeypatch, capsys):
    lsp, _ = sources
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "p.yaml", {"source": "lsp", "lsp": {"lsp": str(lsp), "lsp_train": 7}})
    assert cli.main(["prepare", "--params", str(params)]) == 2
    assert "data.lsp.lsp_train: 7 leaves no test image" in capsys.readouterr().err


def test_a_summary_that_cannot_be_written_leaves_the_prepared_data_as_it_was(tmp_path):
    """results/ not writable: one line naming the file, and data/prepared/ untouched, so the data
    and its summary never get out of step (before: data/prepared/ replaced, then a traceback)."""
    from test_atomic import as_a_user_who_cannot_write, deeppose

    write_params(tmp_path / "params.yaml", {"source": "synthetic", "synthetic": {"images": 24, "test": 8}})
    assert deeppose(tmp_path, [], "synthesize").returncode == 0
    (tmp_path / "results" / "data").mkdir(parents=True)
    prefix = as_a_user_who_cannot_write(tmp_path / "results" / "data")
    done = deeppose(tmp_path, prefix, "prepare")
    assert done.returncode == 2
    assert (
        done.stderr == "deeppose prepare: error: results/data/prepare.json: cannot write: Permission denied\n"
    )
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["synthetic"]
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").rglob("*"))
