"""A set of outputs replaced together (deeppose.records.output_set): the previous complete set or
the new one after any failure of the swap, a killed swap rolled back by the next writer, an entry of
the wrong kind refused before anything moves, one writer per folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


SET_V1 = {"report.md": b"v1", "summary.json": b"s1", "figures/a.png": b"a1", "figures/gone.png": b"g1"}
SET_V2 = {"report.md": b"v2", "figures/a.png": b"a2", "new.csv": b"n2", "summary.json": b"s2"}


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _first_set(folder: Path) -> None:
    from deeppose.records.output_set import replace_set

    replace_set(folder, SET_V1, folders=("figures",))
    (folder / "data").mkdir()
    (folder / "data" / "other_stage.png").write_bytes(b"kept")  # another stage's entry of the folder


def test_a_set_is_replaced_whole_and_other_entries_are_left_alone(tmp_path):
    from deeppose.records.output_set import replace_set

    _first_set(tmp_path)
    replace_set(tmp_path, SET_V2, folders=("figures",))
    assert _tree(tmp_path) == {**SET_V2, "data/other_stage.png": b"kept"}  # gone.png went with its folder


@pytest.mark.parametrize("fail_at", [1, 2, 4, 7])
def test_a_rename_that_fails_mid_swap_leaves_the_previous_set(tmp_path, monkeypatch, fail_at):
    """Before (write_together): the files renamed before the failure stayed new beside old ones."""
    from deeppose.errors import DeepPoseError
    from deeppose.records import output_set

    _first_set(tmp_path)
    before = _tree(tmp_path)
    calls = []
    real = os.replace

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:
            raise OSError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(output_set.os, "replace", failing)
    with pytest.raises(DeepPoseError, match="cannot replace: Permission denied"):
        output_set.replace_set(tmp_path, SET_V2, folders=("figures",))
    monkeypatch.setattr(output_set.os, "replace", real)
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "figures", "report.md", "summary.json"]


def test_a_folder_where_a_file_goes_is_refused_before_anything_changes(tmp_path):
    from deeppose.errors import DeepPoseError
    from deeppose.records.output_set import replace_set

    _first_set(tmp_path)
    (tmp_path / "new.csv").mkdir()
    (tmp_path / "new.csv" / "mine").write_text("a user's")
    before = _tree(tmp_path)
    with pytest.raises(DeepPoseError) as error:
        replace_set(tmp_path, SET_V2, folders=("figures",))
    assert (
        str(error.value)
        == f"{tmp_path / 'new.csv'}: a folder where the set writes a file; move it away and run again"
    )
    assert _tree(tmp_path) == before


KILLED_SWAP = """
import os, sys
from pathlib import Path
from deeppose.records import output_set
real, calls = os.replace, []
def dying(src, dst):
    calls.append(dst)
    if len(calls) == 3:
        os._exit(9)  # killed between two renames: no finally, no roll-back
    real(src, dst)
output_set.os.replace = dying
output_set.replace_set(Path(sys.argv[1]), {sys.argv[2]: b"v2", "summary.json": b"s2", "new.csv": b"n2"}, ("figures",))
"""


def test_a_swap_killed_midway_is_named_by_interrupted_and_rolled_back_by_the_next_writer(tmp_path, capsys):
    from deeppose.records import output_set

    _first_set(tmp_path)
    before = _tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SWAP, str(tmp_path), "report.md"], env=env, check=False
    )
    assert done.returncode == 9
    assert _tree(tmp_path) != before  # half-replaced: report.md new, summary.json old
    assert len(output_set.interrupted(tmp_path)) == 1
    with output_set.folder_lock(tmp_path, "test"):
        assert len(output_set.recover(tmp_path)) == 1
    assert _tree(tmp_path) == before and output_set.interrupted(tmp_path) == []
    assert "put back the previous set" in capsys.readouterr().err


def test_a_second_writer_of_a_folder_is_refused_in_one_line(tmp_path):
    from deeppose.errors import DeepPoseError
    from deeppose.records.output_set import folder_lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom deeppose.records.output_set import "
            "folder_lock\nwith folder_lock(Path(sys.argv[1]), 'test'):\n    print('held', flush=True)\n    time.sleep(60)",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DeepPoseError) as error:
            with folder_lock(tmp_path, "`python -m deeppose report`"):
                pass
        assert str(error.value) == (
            f"{tmp_path}: another `python -m deeppose report` (process {holder.pid}) is writing here; "
            "wait for it to finish"
        )
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, "test"):  # free again once the holder is gone
        pass
