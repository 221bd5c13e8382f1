"""Load and validate `params.yaml`; build the parameter grid. One source for both engines.

The file is read by a YAML loader that refuses duplicate keys (PyYAML keeps the last silently),
checked for non-finite numbers (`.nan`, `.inf`: JSON Schema's bounds let them through), against
`deeppose/schemas/params.schema.yaml` (JSON Schema, package data), then against what the code knows
(registered frameworks, breakdown exponents within the grid). What this machine can do (thread counts
within its usable cores, batches within its memory) is `deeppose.memory.check_machine`'s, which the
measuring stages and the Snakefile call. Every problem becomes one line naming the file, the
parameter and what is allowed, so a user sees them all at once. The
Snakefile and every `python -m deeppose` stage call `load_params`, which then builds `Params`: frozen
and typed, one dataclass per section (`params.timing.blocks`, `params.grid.batch_exponents`). What
records the parameters themselves reads `Params.value("train.lr")`, the file's own JSON values.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deeppose import grid
from deeppose.errors import DeepPoseError
from deeppose.grid import FRAMEWORKS, Job
from deeppose.model import ModelConfig
from deeppose.optimizer import OptimizerConfig

# Package data, so that an installed deeppose validates without the checkout. In a folder of its own:
# the files beside deeppose/__init__.py count as every stage's code (provenance.package_data), and the
# schema only accepts or refuses a file, it changes no result.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "params.schema.yaml"


@dataclass(frozen=True)
class SyntheticParams:
    images: int  # people drawn by `deeppose synthesize`
    test: int  # the last `test` images form the test split


@dataclass(frozen=True)
class LspParams:
    lsp: str | None  # LSP folder or lsp_dataset.zip
    lspet: str | None  # LSP-extended folder or zip, all train; optional
    lsp_train: int  # the first `lsp_train` LSP images train, the rest test


@dataclass(frozen=True)
class DataParams:
    source: str  # synthetic | lsp
    synthetic: SyntheticParams
    lsp: LspParams


@dataclass(frozen=True)
class TrainParams:
    optimizer: str
    lr: float
    momentum: float
    batch_size: int
    epochs: int
    eval_every: int
    augment: bool
    threads: int  # 0 = all cores
    seeds: int  # training runs per job, one after another (deeppose.train.run_seeds); absent: 1


@dataclass(frozen=True)
class GridParams:
    """Every job is one combination of these (deeppose.grid reads them)."""

    frameworks: tuple[str, ...]
    loss_modes: tuple[str, ...]
    devices: tuple[str, ...]
    batch_exponents: tuple[int, ...]  # timing batch sizes 2^n, in the file's order


@dataclass(frozen=True)
class TimingParams:
    warmup: int
    repeats: int  # timed runs per block
    blocks: int  # rounds every group runs: fresh processes per cell
    max_blocks: int  # rounds at most, added while a comparison of the group is inconclusive
    margin: float  # equivalence margin of a ratio: 1 +- margin (multiplicatively) counts as equal
    planted: float  # the positive control's planted slowdown, a fraction of its own run time
    threads: int  # 0 = all cores
    optimizers: tuple[str, ...]


@dataclass(frozen=True)
class BreakdownParams:
    batch_exponents: tuple[int, ...]
    repeats: int  # profiled core processes in each process
    processes: int  # fresh processes per arm, run in interleaved rounds (deeppose.breakdown)


@dataclass(frozen=True)
class PeakParams:
    """The `peak` stage's design (deeppose.peak): the standard products' size, the network layers'
    batch, and its replicated, interleaved blocks."""

    size: int
    batch: int
    processes: int
    blocks: int  # per process
    warmup: int  # untimed runs per kernel and block
    repeats: int  # timed runs per kernel and block


@dataclass(frozen=True)
class AllocatorParams:
    mmap_threshold_mib: int | None  # None: glibc's default


# `time --fast` and `--rigorous`, named like pyperf's: a quick look, and a run for a decision that
# the default leaves open; a result records which it used (TimingDesign.preset).
TIMING_PRESETS: dict[str, dict[str, int]] = {
    "fast": {"blocks": 2, "max_blocks": 2, "repeats": 3},
    "rigorous": {"blocks": 5, "max_blocks": 12, "repeats": 8},
}


@dataclass(frozen=True)
class Params:
    """The validated parameters, one frozen dataclass per section of the file (the model's is
    deeppose.model.ModelConfig). `value` gives a dotted key's content as the file has it, for what
    records the parameters themselves (provenance, checkpoint identities, the report's listing)."""

    path: Path
    seed: int
    data: DataParams
    model: ModelConfig
    train: TrainParams
    grid: GridParams
    timing: TimingParams
    breakdown: BreakdownParams
    peak: PeakParams
    allocator: AllocatorParams
    _raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, path: str | os.PathLike[str], raw: dict[str, Any]) -> Params:
        """The typed parameters of a parsed file that `validate` accepted (not checked again)."""
        data, grid_, timing, breakdown = raw["data"], raw["grid"], raw["timing"], raw["breakdown"]
        return cls(
            path=Path(path),
            seed=int(raw["seed"]),
            data=DataParams(
                source=str(data["source"]),
                synthetic=SyntheticParams(int(data["synthetic"]["images"]), int(data["synthetic"]["test"])),
                lsp=LspParams(data["lsp"]["lsp"], data["lsp"]["lspet"], int(data["lsp"]["lsp_train"])),
            ),
            model=ModelConfig(dropout=float(raw["model"]["dropout"]), lrn=bool(raw["model"]["lrn"])),
            train=TrainParams(
                optimizer=str(raw["train"]["optimizer"]),
                lr=float(raw["train"]["lr"]),
                momentum=float(raw["train"]["momentum"]),
                batch_size=int(raw["train"]["batch_size"]),
                epochs=int(raw["train"]["epochs"]),
                eval_every=int(raw["train"]["eval_every"]),
                augment=bool(raw["train"]["augment"]),
                threads=int(raw["train"]["threads"]),
                seeds=int(raw["train"].get("seeds", 1)),
            ),
            grid=GridParams(
                frameworks=tuple(map(str, grid_["frameworks"])),
                loss_modes=tuple(map(str, grid_["loss_modes"])),
                devices=tuple(map(str, grid_["devices"])),
                batch_exponents=tuple(map(int, grid_["batch_exponents"])),
            ),
            timing=TimingParams(
                warmup=int(timing["warmup"]),
                repeats=int(timing["repeats"]),
                blocks=int(timing["blocks"]),
                max_blocks=int(timing["max_blocks"]),
                margin=float(timing["margin"]),
                planted=float(timing["planted"]),
                threads=int(timing["threads"]),
                optimizers=tuple(map(str, timing["optimizers"])),
            ),
            breakdown=BreakdownParams(
                tuple(map(int, breakdown["batch_exponents"])),
                int(breakdown["repeats"]),
                int(breakdown["processes"]),
            ),
            peak=PeakParams(**{key: int(value) for key, value in raw["peak"].items()}),
            allocator=AllocatorParams(raw["allocator"]["mmap_threshold_mib"]),
            _raw=copy.deepcopy(raw),
        )

    def value(self, key: str | None = None) -> Any:
        """The content of a dotted key (`"timing"`, `"train.lr"`; None: the whole file) exactly as
        the file gives it, as plain JSON values: what results record, so that its form never changes
        with the typed fields'. A copy: editing it changes nothing here."""
        node: Any = self._raw
        for part in key.split(".") if key else ():
            node = node[part]
        return copy.deepcopy(node)

    def with_preset(self, preset: str | None) -> Params:
        """These parameters with a timing preset's values in place of the file's (None: unchanged)."""
        if preset is None:
            return self
        return dataclasses.replace(self, timing=dataclasses.replace(self.timing, **TIMING_PRESETS[preset]))

    @property
    def optimizer(self) -> OptimizerConfig:
        return OptimizerConfig(name=self.train.optimizer, lr=self.train.lr, momentum=self.train.momentum)

    def train_jobs(self) -> list[Job]:
        return grid.train_jobs(self.grid)

    def timing_jobs(self) -> list[Job]:
        return grid.batch_jobs(self.grid, self.grid.batch_exponents)

    def breakdown_jobs(self) -> list[Job]:
        return grid.batch_jobs(self.grid, self.breakdown.batch_exponents, breakdown=True)


def _where(error: jsonschema.ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "(top level)"


def _non_finite(node: Any, where: str = "") -> dict[str, float]:
    """Dotted path -> value of every NaN or infinite number in the parsed file."""
    if isinstance(node, float) and not math.isfinite(node):
        return {where or "(top level)": node}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found: dict[str, float] = {}
    for key, value in items:
        found.update(
            _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        )
    return found


def _schema_problems(raw: Any, schema: dict[str, Any]) -> list[str]:
    non_finite = _non_finite(raw)
    problems = [
        f"{where}: {value} is not allowed; allowed: a finite number" for where, value in non_finite.items()
    ]
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        if _where(error) in non_finite:
            continue
        if error.validator == "additionalProperties":
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            problems.append(f"{_where(error)}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
        elif error.validator == "enum":
            allowed = ", ".join(map(str, error.validator_value))
            problems.append(f"{_where(error)}: {error.instance!r} is not allowed; allowed: {allowed}")
        else:
            problems.append(f"{_where(error)}: {error.message}")
    return problems


def _semantic_problems(raw: dict[str, Any]) -> list[str]:
    problems = []
    for index, name in enumerate(raw["grid"]["frameworks"]):
        if name not in FRAMEWORKS:
            problems.append(
                f"grid.frameworks[{index}]: unknown framework {name!r}; allowed: {', '.join(FRAMEWORKS)}"
            )
    extra = sorted(set(raw["breakdown"]["batch_exponents"]) - set(raw["grid"]["batch_exponents"]))
    if extra:
        problems.append(f"breakdown.batch_exponents: {extra} not in grid.batch_exponents")
    if raw["peak"]["processes"] * raw["peak"]["blocks"] < 2:
        problems.append("peak.blocks: blocks x processes must be at least 2 (a spread needs two blocks)")
    if raw["timing"]["max_blocks"] < raw["timing"]["blocks"]:
        problems.append("timing.max_blocks: must be at least timing.blocks")
    synthetic = raw["data"]["synthetic"]
    if synthetic["test"] >= synthetic["images"]:
        problems.append("data.synthetic.test: must be smaller than data.synthetic.images")
    if raw["data"]["source"] == "lsp" and not raw["data"]["lsp"]["lsp"]:
        problems.append("data.lsp.lsp: source is 'lsp' but no LSP folder or zip is given")
    return problems


def validate(raw: Any, where: str = "params.yaml") -> None:
    """Raise DeepPoseError listing every problem in `raw`, one line each, prefixed by `where`."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    problems = _schema_problems(raw, schema)
    if not problems:
        problems = _semantic_problems(raw)
    if problems:
        raise DeepPoseError("\n".join(f"{where}: {problem}" for problem in problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                continue  # an unhashable or odd key: SafeLoader's own message follows
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first[key]}); give each key once",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate a parameter file."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise DeepPoseError(f"{path}: parameter file not found") from None
    except IsADirectoryError:
        raise DeepPoseError(f"{path}: a folder, not a parameter file; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DeepPoseError(f"{path}: unreadable as a parameter file ({type(error).__name__})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise DeepPoseError(f"{path}:{line} not valid YAML: {getattr(error, 'problem', error)}") from None
    validate(raw, str(path))
    return Params.from_raw(path, raw)
