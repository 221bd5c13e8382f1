"""A set of outputs in one folder that change together: the report's report.md, summary.json,
figures and DVC files. A reader sees the previous complete set or the new one, never a mixture.

    with folder_lock(Path("reports"), "`python -m deeppose report`"):
        replace_set(Path("reports"), {"report.md": text, "figures/a.png": png}, folders=("figures",))

Everything is written into a staging folder beside the outputs (`reports/.set.<random>.tmp/new`,
on the same file system, so each move is a rename), then each entry of the set is moved aside into
the staging folder and its new version renamed in, under a journal. Any failure of the swap (a
refused rename, an interrupt) puts the previous entries back; a writer killed mid-swap leaves its
journal, which `interrupted` shows to readers (`python -m deeppose status`) and the next writer's
`recover` rolls back. Before anything moves, an entry of the wrong kind (a folder where a file
goes) is refused in one line. One writer per output folder (`folder_lock`, a flock on
`<folder>/.lock`): a second is refused at once, naming the holder, rather than made to wait. The
staging folders match `.*.tmp`, which `.gitignore` and `.dvcignore` keep out.

It lives apart from deeppose.records.atomic so that only the stage that writes a set (the report)
has it in its code set: an edit here stales no measurement.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from deeppose.errors import DeepPoseError
from deeppose.records.atomic import MACHINE_ERRNOS, UMASK, cannot

LOCK_NAME = ".lock"  # one per output folder; never removed (a removed lock file would let two runs in)
JOURNAL = "journal.json"  # in a staging folder while its swap runs: each entry -> whether it existed


def require_root(marker: Path, params_file: Path) -> None:
    """Refuse, in one line, to run where the project's relative paths do not lead. The project root
    holds `marker` (results/) or, before anything ran, the parameter file; from a subfolder the
    report would read no results and write an empty report there. Names the root it can see: the
    parameter file's folder, else the nearest folder above with `marker`."""
    here = Path.cwd()
    home = Path(params_file).resolve().parent
    if marker.is_dir() or home == here.resolve():
        return
    root = (
        home if (home / marker).is_dir() else next((f for f in here.parents if (f / marker).is_dir()), None)
    )
    hint = f"; the project root looks like {root}" if root else ""
    raise DeepPoseError(f"run it from the project root: {here} has no {marker}/ folder{hint}")


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock for the block; a second writer is refused at once with one line naming
    the holder's process: two runs with different parameters would otherwise each write a set."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise cannot(folder / LOCK_NAME, "open the lock", error) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DeepPoseError(
                f"{folder}: another {what} (process {holder}) is writing here; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _staging(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(".set.*.tmp") if p.is_dir() and not p.is_symlink())


def _roll_back(folder: Path, staging: Path, existed: Mapping[str, bool]) -> None:
    """Put back the set that `staging` began to replace: an entry moved aside returns, an entry
    that did not exist before is removed; an entry the swap had not reached is still the old one."""
    for name, was in existed.items():
        target, old = folder / name, staging / "old" / name
        if os.path.lexists(old):
            if os.path.lexists(target):
                _remove(target)
            os.replace(old, target)
        elif not was and os.path.lexists(target):
            _remove(target)


def recover(folder: Path) -> list[Path]:
    """Clear what killed writers of `folder` left: a staging folder that no live writer holds is
    rolled back if its swap had begun (its journal is there), then removed. Call it under the lock."""
    recovered = []
    for staging in _staging(folder):
        fd = os.open(staging, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer's
        else:
            journal = staging / JOURNAL
            if journal.exists():
                _roll_back(folder, staging, json.loads(journal.read_text(encoding="utf-8")))
                print(f"deeppose: {folder}: put back the previous set, left half-replaced", file=sys.stderr)
            shutil.rmtree(staging, ignore_errors=True)
            recovered.append(staging)
        finally:
            os.close(fd)
    return recovered


def interrupted(folder: Path) -> list[Path]:
    """The staging folders of `folder` whose swap began and never finished: until the next writer
    rolls them back, the folder may hold two sets' files."""
    return [staging for staging in _staging(folder) if (staging / JOURNAL).exists()]


def _wrong_kind(target: Path, is_folder: bool) -> str | None:
    wanted = "a folder" if is_folder else "a file"
    if target.is_symlink():
        return f"a symbolic link where the set writes {wanted}"
    if target.exists() and target.is_dir() != is_folder:
        return f"{'a file' if is_folder else 'a folder'} where the set writes {wanted}"
    return None


def _stage(staging: Path, files: Mapping[str, bytes], folders: tuple[str, ...]) -> None:
    for relative, data in files.items():
        path = staging / "new" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o666 & ~UMASK)
    for name in folders:
        (staging / "new" / name).mkdir(parents=True, exist_ok=True)  # a set without figures too
    (staging / "old").mkdir()


def replace_set(folder: Path, files: Mapping[str, bytes], folders: tuple[str, ...] = ()) -> None:
    """Replace the set of outputs of `folder` together. `files` maps a path relative to `folder` to
    its bytes; its first component names an entry of the set, swapped in the order of `files` (put
    the file readers trust last); the entries in `folders` are folders replaced whole, so a file the
    new set lacks disappears. Entries of `folder` outside the set (another stage's) are never
    touched. Call it under `folder_lock`."""
    names = list(dict.fromkeys([*(Path(relative).parts[0] for relative in files), *folders]))
    recover(folder)
    for name in names:
        problem = _wrong_kind(folder / name, name in folders)
        if problem:
            raise DeepPoseError(f"{folder / name}: {problem}; move it away and run again")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".set.", suffix=".tmp", dir=folder))
    except OSError as error:
        raise cannot(folder, "write", error) from None
    fd = os.open(staging, os.O_RDONLY | os.O_CLOEXEC)
    keep = False  # a roll-back that failed leaves its journal for the next writer's `recover`
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the end: see recover
        try:
            _stage(staging, files, folders)
        except OSError as error:
            if error.errno not in MACHINE_ERRNOS:
                raise
            raise cannot(folder, "write", error) from None
        existed = {name: os.path.lexists(folder / name) for name in names}
        (staging / JOURNAL).write_text(json.dumps(existed), encoding="utf-8")
        for name in names:
            target = folder / name
            try:
                if existed[name]:
                    os.replace(target, staging / "old" / name)
                os.replace(staging / "new" / name, target)
            except BaseException as error:  # a refused rename, or an interrupt between two
                try:
                    _roll_back(folder, staging, existed)
                except OSError:
                    keep = True
                if isinstance(error, OSError):
                    raise cannot(target, "replace", error) from None
                raise
        (staging / JOURNAL).unlink()  # the commit point: from here the new set stands
    finally:
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)
        os.close(fd)
