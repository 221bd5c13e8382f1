"""Atomic writes: all or nothing, the permissions any other file would get, leftovers of killed
writes removed, and a write the machine refuses reported in one line."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_peak import write_params

from deeppose.records.atomic import UMASK, atomic_dir, atomic_path, remove_stale, write_json

ROOT = Path(__file__).resolve().parent.parent


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


def test_a_temporary_nobody_holds_is_removed_by_the_next_write_and_a_held_one_kept(tmp_path, capsys):
    target = tmp_path / "last.npz"
    leftover = tmp_path / ".last.npz.k1ll3d.tmp"  # a kill mid-write leaves this (no writer holds it)
    leftover.write_bytes(b"half")
    with atomic_path(target) as tmp:
        assert not leftover.exists()
        assert remove_stale(target) == [] and tmp.exists()  # the live writer's own is held: kept
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]
    assert capsys.readouterr().err == f"deeppose: removed {leftover}, left by an interrupted write\n"


def as_a_user_who_cannot_write(*folders: Path) -> list[str]:
    """A command prefix under which a command cannot write into `folders`. Root writes everywhere,
    so as root the folders go to another owner and the command runs without root's power to
    override permissions (setpriv drops CAP_DAC_OVERRIDE); otherwise the folders become read-only."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot take away the right to write")
        for folder in folders:
            os.chown(folder, 65534, 65534)
            os.chmod(folder, 0o755)
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    for folder in folders:
        os.chmod(folder, 0o555)
    return []


def deeppose(folder: Path, prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPPOSE_MEASURE_LOCK=str(folder / "measure.lock"))
    return subprocess.run(
        [*prefix, sys.executable, "-m", "deeppose", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_stage_that_cannot_write_its_result_says_so_in_one_line(tmp_path):
    write_params(tmp_path)
    (tmp_path / "results" / "machine").mkdir(parents=True)
    prefix = as_a_user_who_cannot_write(tmp_path / "results" / "machine")
    done = deeppose(tmp_path, prefix, "peak")
    assert done.returncode == 2
    assert done.stderr == (
        "deeppose peak: error: results/machine/matmul_peak.json: cannot write: Permission denied\n"
    ), done.stderr
    assert os.listdir(tmp_path / "results" / "machine") == []
