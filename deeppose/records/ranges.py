"""Reading checks on the values of result records: what a stage can write, and what it cannot.

`deeppose.records.results` checks a file's shape (fields, types, finite numbers); this checks that
the measured values are possible: every time sample positive and below MAX_SECONDS, every block with
samples, block times in order, a timing record with its fairness manifest. A damaged or hand-edited
file (an empty, zero, negative or 1e308 sample) then stops a reader with one line naming the file
and the field, instead of a traceback deep in the statistics or a figure computed from it.

Kept apart from `results` so that the measuring stages, which never import it, keep their code set
(deeppose.provenance): a reading check added here stales no measurement.

    record = ranges.read(TimingResult, path)   # read, then check
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from deeppose.records.breakdown import BreakdownResult
from deeppose.records.results import Record, RecordError
from deeppose.records.timing import BlockRecord, TimingResult
from deeppose.records.training import TrainMetrics

MAX_SECONDS = 1e6  # about 11.6 days: no single measured step of this benchmark comes near it

FAIRNESS = ("cpu", "common", "env")  # the parts of a timing record's fairness manifest its readers use

R = TypeVar("R", bound=Record)


def _times(values: Any, where: str, allow_zero: bool = False) -> None:
    """Every item of `values` a number of seconds in (0, MAX_SECONDS) ([0, ...) with `allow_zero`)."""
    if not isinstance(values, list):
        raise RecordError(f"{where}: expected a list of seconds, found {type(values).__name__}")
    for index, value in enumerate(values):
        _time(value, f"{where}[{index}]", allow_zero)


def _time(value: Any, where: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{where}: expected seconds, found {value!r:.60}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or not value < MAX_SECONDS:
        bound = "0 <=" if allow_zero else "0 <"
        raise RecordError(f"{where}: {value!r} s is outside {bound} t < {MAX_SECONDS:g} s")


def _blocks(blocks: list[BlockRecord], where: str) -> None:
    for index, block in enumerate(blocks):
        here = f"{where}[{index}]"
        if not block.samples_s:
            raise RecordError(f"{here}.samples_s: no samples")
        _times(block.samples_s, f"{here}.samples_s")
        _times(block.warmup_s, f"{here}.warmup_s")
        _times(block.loss_s, f"{here}.loss_s")
        for name, steps in block.optimizer_steps_s.items():
            _times(steps, f"{here}.optimizer_steps_s.{name}")
        if block.ended_at < block.started_at:
            raise RecordError(f"{here}: ended_at {block.ended_at} is before started_at {block.started_at}")


def check(record: R, where: str | Path) -> R:
    """`record` unchanged, or RecordError (one line: `where`, the field, the value and the range)."""
    where = str(where)
    if isinstance(record, TimingResult):
        if not record.blocks:
            raise RecordError(f"{where}: blocks: no blocks")
        _blocks(record.blocks, f"{where}: blocks")
        _blocks(record.control_blocks, f"{where}: control_blocks")
        _blocks(record.planted_blocks, f"{where}: planted_blocks")
        fairness = record.environment.get("fairness")
        if not isinstance(fairness, dict) or not all(isinstance(fairness.get(k), dict) for k in FAIRNESS):
            raise RecordError(
                f"{where}: environment.fairness: missing or without {', '.join(FAIRNESS)} (the timing "
                "stage records the manifest of the process that timed)"
            )
    elif isinstance(record, BreakdownResult):
        for part, at in [(record, where)] + [
            (p, f"{where}: processes[{i}]") for i, p in enumerate(record.processes)
        ]:
            _times(part.core_samples_s, f"{at}: core_samples_s")
            _times(part.profiled_core_samples_s, f"{at}: profiled_core_samples_s")
            for index, layer in enumerate(part.layers):
                if "samples_s" in layer:
                    _times(layer["samples_s"], f"{at}: layers[{index}].samples_s", allow_zero=True)
    elif isinstance(record, TrainMetrics):
        if record.iterations < 0 or record.epochs < 0:
            raise RecordError(f"{where}: epochs {record.epochs}, iterations {record.iterations}: negative")
        _time(record.train_time_s, f"{where}: train_time_s", allow_zero=True)
        _time(record.eval_time_s, f"{where}: eval_time_s", allow_zero=True)
        for index, run in enumerate(record.runs):
            _time(run.train_time_s, f"{where}: runs[{index}].train_time_s", allow_zero=True)
            _time(run.eval_time_s, f"{where}: runs[{index}].eval_time_s", allow_zero=True)
        seeds = [run.seed for run in record.runs]
        if len(set(seeds)) != len(seeds) or (seeds and seeds[0] != record.seed):
            raise RecordError(
                f"{where}: runs: seeds {seeds} are not distinct, or the first is not seed {record.seed}"
            )
    return record


def read(kind: type[R], path: str | Path) -> R:
    """The record in `path`, its shape and its values checked: RecordError (one line) otherwise."""
    return check(kind.read(path), path)
