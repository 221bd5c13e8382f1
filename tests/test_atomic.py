"""Atomic writes: all or nothing, and the permissions any other file would get."""

from __future__ import annotations

import os
import stat

import pytest

from deeppose.atomic import UMASK, atomic_dir, atomic_path, write_json


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"kept": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "kept": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_files_and_folders_get_the_umask_permissions(tmp_path):
    write_json(tmp_path / "a.json", {})
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "inside").write_text("x")
    assert _mode(tmp_path / "a.json") == 0o666 & ~UMASK
    assert _mode(tmp_path / "folder") == 0o777 & ~UMASK


def test_a_folder_is_replaced_whole(tmp_path):
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "old").write_text("x")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
