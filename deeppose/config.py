"""Load and validate `params.yaml`; build the parameter grid. One source for both engines.

The file is checked against `workflow/schemas/params.schema.yaml` (JSON Schema) and then against
what the code knows (registered frameworks, breakdown exponents within the grid). Every problem
becomes one line naming the file, the parameter and what is allowed, so a user sees them all at
once. The Snakefile and every `python -m deeppose` stage call `load_params`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deeppose import grid
from deeppose.errors import DeepPoseError
from deeppose.grid import FRAMEWORKS, Job
from deeppose.model import ModelConfig
from deeppose.optimizer import OptimizerConfig

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"


@dataclass(frozen=True)
class Params:
    """The validated parameters; `raw` is the file's content as a dict."""

    path: Path
    raw: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.raw["seed"])

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw[name])

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(dropout=float(self.raw["model"]["dropout"]), lrn=bool(self.raw["model"]["lrn"]))

    @property
    def optimizer(self) -> OptimizerConfig:
        train = self.raw["train"]
        return OptimizerConfig(name=train["optimizer"], lr=float(train["lr"]), momentum=float(train["momentum"]))

    def train_jobs(self) -> list[Job]:
        return grid.train_jobs(self.raw["grid"])

    def timing_jobs(self) -> list[Job]:
        return grid.batch_jobs(self.raw["grid"], self.raw["grid"]["batch_exponents"])

    def breakdown_jobs(self) -> list[Job]:
        return grid.batch_jobs(self.raw["grid"], self.raw["breakdown"]["batch_exponents"])


def _where(error: jsonschema.ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "(top level)"


def _schema_problems(raw: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
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


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate a parameter file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DeepPoseError(f"{path}: parameter file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise DeepPoseError(f"{path}:{line} not valid YAML: {getattr(error, 'problem', error)}") from None
    validate(raw, str(path))
    return Params(path=path, raw=raw)
