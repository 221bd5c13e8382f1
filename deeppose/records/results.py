"""Typed result records: the one place that knows the shape of every file a stage writes.

Each record is a frozen dataclass. Files carry `kind` and `schema_version`; reading checks both,
every field's presence and type, and rejects unknown fields and non-finite numbers, each with one
line naming the file and the field. A reader therefore never guesses at a format: a file from
another version or a damaged one is a clear error, and the report needs no defensive re-checks.

Nested parts that describe rather than measure (environment, versions, threads, per-kernel
statistics) are typed as JSON objects; every number a report computes from is a typed field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from deeppose.errors import DeepPoseError
from deeppose.records.atomic import write_json

SCHEMA_VERSION = 5  # 2: peak ceilings, per-optimiser update times, per-image PDJ/PCK; 3: scored joints,
# the data filtering, lock waits in costs; 4: provenance keeps code hashes without docstrings and
# comments, the byte hashes beside them, and the machine; 5: timing design (adaptive rounds, pairing,
# margin), an A/A twin per framework and a planted positive control. From 5 on, each kind of file
# counts its own versions (`Record.VERSION`), so that one kind's change leaves the others readable.

R = TypeVar("R", bound="Record")


class RecordError(DeepPoseError):
    """A result file that cannot be read as its record: one line, naming the file and field."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _finite(value: Any, where: str) -> Any:
    """`value` (any JSON) unchanged, or RecordError naming the first non-finite number in it: no
    stage writes one, so it is damage, and a report built on it would mislead."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{where}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _finite(item, f"{where}[{index}]")
    return value


def _convert(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against annotation `tp` (records built, lists and dicts walked)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _finite(value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r:.60} is not {_type_name(tp)}"
        )
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, found {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, found {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {k: _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where}: expected a number, found {value!r:.60}")
        if not math.isfinite(value):
            raise RecordError(f"{where}: {value} is not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where}: expected an integer, found {value!r:.60}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise RecordError(f"{where}: expected {tp.__name__}, found {value!r:.60}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A record class's resolved annotations: resolving them costs more than checking a record."""
    return typing.get_type_hints(cls)


@functools.cache
def _optional(cls: type) -> frozenset[str]:
    """Fields with a default: added after files of this schema version were written, which then
    read as the default says (a record's docstring says what it means)."""
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every record; a subclass with `KIND` is a whole file, one without is a part."""

    KIND: ClassVar[str | None] = None
    VERSION: ClassVar[int] = SCHEMA_VERSION  # a whole file's schema version, per kind

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str) -> R:
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, found {type(data).__name__}")
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        if cls.KIND is not None:
            data = dict(data)
            kind, version = data.pop("kind", None), data.pop("schema_version", None)
            if kind != cls.KIND:
                raise RecordError(f"{where}: kind is {kind!r}, expected {cls.KIND!r}")
            if version != cls.VERSION:
                raise RecordError(
                    f"{where}: schema_version {version!r}, this code reads {cls.VERSION}; "
                    "rerun the stage that wrote it"
                )
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RecordError(f"{where}: unknown field {unknown[0]!r} ({cls.__name__} has no such field)")
        missing = [n for n in names if n not in data and n not in _optional(cls)]
        if missing:
            raise RecordError(f"{where}: missing field {missing[0]!r}")
        return cls(
            **{
                n: _convert(data[n], hints[n], f"{where}: {n}" if ":" not in where else f"{where}.{n}")
                for n in names
                if n in data
            }
        )

    @classmethod
    def create(cls: type[R], **fields: Any) -> R:
        """A record from plain values and records, checked as a reader would check it, so that a
        stage cannot write what a reader would refuse."""
        data = {k: _plain(v) for k, v in fields.items()}
        if cls.KIND is not None:
            data.update(kind=cls.KIND, schema_version=cls.VERSION)
        return cls.from_dict(data, f"{cls.__name__} being written")

    def to_dict(self) -> dict[str, Any]:
        body = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.KIND is not None:
            body = {"kind": self.KIND, "schema_version": self.VERSION, **body}
        return body

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        """The record in `path`; RecordError (one line) when absent, damaged or of another shape."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"{path}: not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RecordError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
        except ValueError as error:
            raise RecordError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, str(path))

    def write(self, path: str | Path) -> None:
        """Atomically, with sorted keys: equal records give equal bytes."""
        write_json(path, self.to_dict())


@dataclasses.dataclass(frozen=True)
class Provenance(Record):
    """What produced a result: a hash of every file of code it ran, the values of the parameters
    it read, and for a measurement the machine (see deeppose.provenance)."""

    stage: str
    code: dict[str, str]  # project-relative path -> sha256 of its behaviour (docstrings, comments and
    # formatting left out): what staleness compares
    code_bytes: dict[str, str]  # path -> sha256 of its bytes, for forensics only
    params: dict[str, Any]  # dotted parameter key -> value read
    params_file: str
    machine: (
        dict[str, Any] | None
    )  # deeppose.measure.machine.fingerprint(); None for stages that measure nothing


@dataclasses.dataclass(frozen=True)
class JobId(Record):
    """Which grid cell a result belongs to, checked against the place it is read for."""

    framework: str
    loss: str
    device: str
    batch_exp: int | None

    # None where no log tells


@dataclasses.dataclass(frozen=True)
class StageCost(Record):
    """What one job of a stage cost this machine, written by the CLI after the stage succeeds: the
    price of each parameter choice, for the report's cost table, under either engine."""

    KIND: ClassVar[str] = "cost"
    stage: str
    job: str | None  # the job's label (`pytorch/autograd/cpu`, `cpu/b3`); None for a one-job stage
    started_at: float  # Unix time when the stage's code began (after the interpreter started)
    startup_s: float  # from process creation to that point: interpreter and CLI imports
    wall_s: float  # from that point to the end of the stage, its output written
    lock_wait_s: float  # of wall_s, the wait for the measurement lock (another job's measuring)
    cpu_s: float  # user + system, the process and its waited-for children
    max_rss_mb: float  # the larger of the process's and its largest child's peak resident memory


def job_id(job: Any) -> JobId:
    return JobId(job.framework, job.loss, job.device, None if job.batch_exp is None else int(job.batch_exp))
