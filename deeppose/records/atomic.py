"""Atomic file writes: a reader (or a killed job) never sees a half-written artifact.

Every artifact is written to a temporary file in the destination folder and renamed into place,
which POSIX guarantees to be atomic on one file system. A temporary is named `.<name>.<random>.tmp`
and its writer holds an advisory lock (flock) on it while writing, so a temporary that nobody holds
was left by an interrupted write: the next write of the same artifact removes it (with a note on
stderr), and `.dvcignore`/`.gitignore` keep such files out of DVC's cache and git. A folder or disk
that refuses the write is a one-line `DeepPoseError` naming the artifact and the operation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from deeppose.errors import DeepPoseError

# The errors a user fixes on the machine (permissions, a full or read-only disk), not in the code.
MACHINE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


def cannot(path: str | os.PathLike[str], operation: str, error: OSError) -> DeepPoseError:
    """The one-line error for an operation on `path` that the machine refused."""
    return DeepPoseError(f"{path}: cannot {operation}: {error.strerror or error}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of `path` that no live writer holds: leftovers of a killed write
    (a checkpoint's can be hundreds of MB). Returns what was removed; says so on stderr."""
    path = Path(path)
    removed = []
    for candidate in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer's
        else:
            _remove(candidate)
            removed.append(candidate)
            print(f"deeppose: removed {candidate}, left by an interrupted write", file=sys.stderr)
        finally:
            os.close(fd)
    return removed


def _prepare(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot(path.parent, "create the folder", error) from None
    remove_stale(path)


@contextlib.contextmanager
def _machine_errors(path: Path, tmp: Path) -> Iterator[None]:
    """Turn a refused write into the temporary (the caller's block) into a one-line error; an
    error about another file (a source being read) passes through unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno not in MACHINE_ERRNOS or (
            error.filename and not str(error.filename).startswith(str(tmp))
        ):
            raise
        raise cannot(path, "write", error) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    _prepare(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise cannot(path, "write", error) from None
    tmp_path = Path(tmp)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the end: see remove_stale
        with _machine_errors(path, tmp_path):
            yield tmp_path
        os.chmod(tmp_path, 0o666 & ~UMASK)  # mkstemp's 0600 would make artifacts private
        try:
            os.replace(tmp_path, path)
        except OSError as error:
            raise cannot(path, "replace", error) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` whole only if the block succeeds."""
    path = Path(path)
    _prepare(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise cannot(path, "write", error) from None
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _machine_errors(path, tmp):
            yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp's 0700 would make the folder private
        try:
            if path.exists():
                old = tmp.with_name(f"{tmp.name[: -len('.tmp')]}.old.tmp")  # a name remove_stale knows
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as error:
            raise cannot(path, "replace", error) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def json_text(data: Any) -> str:
    """JSON with sorted keys and a trailing newline, so equal data gives equal bytes; NaN is refused."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def holds(path: str | os.PathLike[str], text: str) -> bool:
    """Whether `path` already holds exactly `text`: a writer that rewrites only what changed keeps
    an unchanged file's modification time, which Snakemake reads as "nothing to rerun"."""
    try:
        return Path(path).read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json_text(data))


def write_together(files: Mapping[Path, bytes]) -> None:
    """Write several files so that none changes unless every one could be written: all the
    temporaries are written first, then renamed one after another."""
    with contextlib.ExitStack() as stack:
        temps = {path: stack.enter_context(atomic_path(path)) for path in files}
        for path, data in files.items():
            temps[path].write_bytes(data)
