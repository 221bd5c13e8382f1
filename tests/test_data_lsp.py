"""LSP and LSP-extended readers: both layouts and flag conventions, folder and zip, bad inputs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from tiny_datasets import write_lsp_folder, zip_folder

from deeppose.data.lsp import read_lsp, read_lspet
from deeppose.data.synthetic import mat_bytes
from deeppose.errors import DeepPoseError


def grid(x0: float, y0: float, step: float) -> np.ndarray:
    """14 joints on a 4-column grid: (14, 2)."""
    k = np.arange(14)
    return np.stack([x0 + (k % 4) * step, y0 + (k // 4) * step], axis=1).astype(np.float64)


@pytest.fixture
def lsp_folder(tmp_path):
    joints = np.stack([grid(10, 10, 20), grid(20, 15, 15), grid(5, 5, 10)])
    visible = np.ones((3, 14), dtype=bool)
    visible[1, [2, 7]] = False
    return write_lsp_folder(tmp_path / "lsp", joints, visible, [(100, 90), (80, 120), (60, 60)])


@pytest.fixture
def lspet_folder(tmp_path):
    joints = np.stack([grid(10, 10, 20), grid(20, 15, 15)])
    flags = np.ones((2, 14))
    flags[0, 4] = 0  # annotated as not visible
    joints[0, 6] = (0.0, 30.0)  # unannotated (x <= 0) although flagged 1
    joints[1, 9] = (-1.0, -1.0)
    return write_lsp_folder(tmp_path / "lspet", joints, None, [(100, 90), (80, 120)], "lspet", flags=flags)


def test_lsp_layout_and_flag_zero_is_visible(lsp_folder):
    with read_lsp(lsp_folder) as data:
        assert len(data) == 3
        assert data.joints.shape == (3, 14, 2) and data.visible.shape == (3, 14)
        assert data.visible.dtype == bool
        np.testing.assert_allclose(data.joints[0], grid(10, 10, 20))
        assert data.visible[0].all() and data.visible[2].all()
        assert sorted(np.flatnonzero(~data.visible[1])) == [2, 7]
        assert data.annotated.dtype == bool and data.annotated.all()  # LSP: occluded joints annotated too
        assert data.image_names[0] == "im0001.jpg"
        assert data.image_size(1) == (80, 120)
        image = data.image(0)
        assert image.shape == (90, 100, 3) and image.dtype == np.uint8
        x, y = data.joints[0, 5].astype(int)
        assert image[y, x].min() > 200  # the mark drawn on the joint


def test_lspet_layout_flag_one_is_visible_and_unannotated_is_invisible(lspet_folder):
    with read_lspet(lspet_folder) as data:
        assert len(data) == 2
        assert data.image_names[1] == "im00002.jpg"
        expected = np.ones((2, 14), dtype=bool)
        expected[0, [4, 6]] = False
        expected[1, 9] = False
        np.testing.assert_array_equal(data.visible, expected)
        expected[0, 4] = True  # flagged not visible, but annotated: scored
        np.testing.assert_array_equal(data.annotated, expected)
        np.testing.assert_allclose(data.joints[1, 3], grid(20, 15, 15)[3])


def test_non_finite_coordinates_are_unannotated(tmp_path):
    folder = write_lsp_folder(
        tmp_path / "lsp", grid(10, 10, 5)[None], np.ones((1, 14), dtype=bool), [(100, 90)]
    )
    table = np.zeros((3, 14, 1))  # LSP: rows x, y, flag (0 = visible)
    table[:2, :, 0] = grid(10, 10, 5).T
    table[0, 3, 0] = np.nan
    (folder / "joints.mat").write_bytes(mat_bytes({"joints": table}))
    with read_lsp(folder) as data:
        assert not data.annotated[0, 3] and not data.visible[0, 3]
        assert data.annotated[0].sum() == 13 and not (data.visible & ~data.annotated).any()


@pytest.mark.parametrize("top", ["", "lsp_dataset", "a/b"])
def test_zip_equals_folder_whatever_the_top_folder(tmp_path, lsp_folder, top):
    archive = zip_folder(lsp_folder, tmp_path / "lsp_dataset.zip", top=top)
    with read_lsp(lsp_folder) as folder, read_lsp(archive) as zipped:
        np.testing.assert_array_equal(folder.joints, zipped.joints)
        np.testing.assert_array_equal(folder.visible, zipped.visible)
        for i in range(len(folder)):
            np.testing.assert_array_equal(folder.image(i), zipped.image(i))
        assert zipped.image_path(0).startswith(str(archive) + ":")


def test_folder_with_one_dataset_subfolder(tmp_path, lsp_folder):
    with read_lsp(tmp_path) as data:  # tmp_path/lsp/joints.mat
        assert len(data) == 3


def test_wrong_layout_names_the_shape(lsp_folder, lspet_folder):
    with pytest.raises(DeepPoseError, match=r"lspet/joints\.mat: 'joints' has shape 14x3x2 .*ed 3x14xN"):
        read_lsp(lspet_folder)
    with pytest.raises(DeepPoseError, match=r"lsp/joints\.mat: 'joints' has shape 3x14x3 .*expected 14x3xN"):
        read_lspet(lsp_folder)
    (lsp_folder / "joints.mat").write_bytes(mat_bytes({"joints": np.zeros((3, 14))}))
    with pytest.raises(DeepPoseError, match=r"joints\.mat: 'joints' has shape 3x14 "):
        read_lsp(lsp_folder)


def test_bad_inputs_name_the_file(tmp_path, lsp_folder):
    with pytest.raises(DeepPoseError, match="nowhere"):
        read_lsp(tmp_path / "nowhere")
    (lsp_folder / "joints.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DeepPoseError, match=r"lsp/joints\.mat: not a readable MATLAB file"):
        read_lsp(lsp_folder)
    (lsp_folder / "joints.mat").write_bytes(mat_bytes({"points": np.zeros((3, 14, 3))}))
    with pytest.raises(DeepPoseError, match=r"joints\.mat: no variable 'joints'"):
        read_lsp(lsp_folder)
    (lsp_folder / "joints.mat").unlink()
    with pytest.raises(DeepPoseError, match=r"joints\.mat: file not found"):
        read_lsp(lsp_folder)


def test_missing_and_undecodable_images(lsp_folder):
    (lsp_folder / "images" / "im0002.jpg").write_bytes(b"\xff\xd8 broken")
    with read_lsp(lsp_folder) as data:
        with pytest.raises(DeepPoseError, match=r"im0002\.jpg: cannot decode image"):
            data.image(1)
    (lsp_folder / "images" / "im0003.jpg").unlink()
    with pytest.raises(DeepPoseError, match=r"im0003\.jpg: image file not found"):
        read_lsp(lsp_folder)


@pytest.mark.parametrize("member", ["../evil.jpg", "/etc/evil", "lsp/../../evil", "C:/evil"])
def test_zip_member_leaving_the_folder_is_refused(tmp_path, lsp_folder, member):
    archive = zip_folder(lsp_folder, tmp_path / "bad.zip")
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr(zipfile.ZipInfo(member), b"x")
    with pytest.raises(DeepPoseError, match=r"bad\.zip: member .* would leave the dataset folder"):
        read_lsp(archive)


def test_zip_without_joints_and_not_a_zip(tmp_path):
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("images/im0001.jpg", b"x")
    with pytest.raises(DeepPoseError, match=r"empty\.zip: no joints\.mat"):
        read_lsp(archive)
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(DeepPoseError, match=r"junk\.zip: not a readable zip file"):
        read_lsp(tmp_path / "junk.zip")
