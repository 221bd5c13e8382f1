"""Findings of the set-up: parameters, data, environment, fairness manifests, machine ceilings and cost."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from deeppose.asymmetries import asymmetries
from deeppose.records import paths
from deeppose.records.timing import TimingResult
from deeppose.records.training import TrainMetrics
from deeppose.report import ceilings
from deeppose.report.ceilings import Peak
from deeppose.report.load import Results

PACKAGE = {"pytorch": "torch", "pytorch_compile": "torch", "chainer": "chainer", "jax": "jax"}


Largest = dict[
    tuple[str, str], TimingResult | TrainMetrics
]  # (framework, device) -> its largest cell's record


@dataclass(frozen=True)
class Environment:
    framework: str
    device: str
    cpu: str | None
    cpu_id: dict[str, Any]  # vendor, family, model_number, stepping (the fairness manifest's)
    usable_cores: int | None
    cores: int | None
    gpu: str | None
    python: str | None
    version: str | None  # the framework's own package
    libraries: dict[str, str]
    threads: dict[str, int]


@dataclass(frozen=True)
class Fairness:
    device: str
    cpu: str | None
    isa_flags: tuple[str, ...]
    common: dict[str, dict[str, Any]]  # framework -> its manifest's common fields
    env: dict[str, dict[str, Any]]
    asymmetries: tuple[tuple[str, dict[str, Any], str], ...]  # (field, framework -> value, may bias)


@dataclass(frozen=True)
class StageCost:
    stage: str
    recorded: int
    jobs: int
    wall_s: float  # the jobs' own: waits for the measurement lock (another job measuring) left out
    startup_s: float
    lock_wait_s: float
    memory_bytes: float | None


@dataclass(frozen=True)
class Setup:
    params: dict[str, Any]
    params_path: str
    prepared: dict[str, Any] | None
    prepared_missing: str | None
    preview: str | None  # the prepare stage's sample image, relative to report.md
    environment: tuple[Environment, ...]
    packages: dict[str, str]
    commits: tuple[str, ...]
    peak: Peak
    fairness: tuple[Fairness, ...]
    costs: tuple[StageCost, ...]
    loss_repeats: int | None  # runs of the loss alone per timing block, from the records


def _threads(threads: dict[str, Any]) -> dict[str, int]:
    found = {k: v for k, v in sorted(threads.items()) if isinstance(v, int) and not isinstance(v, bool)}
    native = [lib for lib in threads.get("native", []) if isinstance(lib, dict)]
    return found | {lib["library"]: lib["num_threads"] for lib in native}


def _largest(results: Results) -> Largest:
    """(framework, device) -> the record of its largest timing cell, else of its training run."""
    found: Largest = {}
    for job, r in [*sorted(results.timing.items(), key=lambda i: -i[0].batch_exp), *results.train.items()]:
        if r.ok:
            found.setdefault((job.framework, job.device), r.record)
    return found


def _environment(results: Results, largest: Largest) -> tuple[Environment, ...]:
    """One row per framework and device, from its largest timing cell (else its training run)."""
    rows = []
    for device in results.devices:
        for fw in results.frameworks:
            r = largest.get((fw, device))
            if r is None:
                rows.append(Environment(fw, device, None, {}, None, None, None, None, None, {}, {}))
                continue
            env = r.environment
            versions = {k: v for k, v in r.versions.items() if k != "gpu"}
            cpu = env.get("fairness", {}).get("cpu", {})
            cpu_id = {
                k: cpu[k] for k in ("vendor", "family", "model_number", "stepping") if cpu.get(k) is not None
            }
            machine = (
                env.get("cpu"),
                cpu_id,
                env.get("usable_cores"),
                env.get("cores"),
                r.versions.get("gpu"),
            )
            version = versions.pop(PACKAGE.get(fw, fw), None)
            rows.append(
                Environment(fw, device, *machine, env.get("python"), version, versions, _threads(r.threads))
            )
    return tuple(rows)


def _fairness(device: str, largest: Largest) -> Fairness | None:
    """The timing processes' fairness manifests (a training run has none) on `device`."""
    timed = {fw: r for (fw, d), r in largest.items() if d == device and isinstance(r, TimingResult)}
    manifests = {fw: r.environment["fairness"] for fw, r in timed.items()}
    if not manifests:
        return None
    cpu = next(iter(manifests.values()))["cpu"]
    common, env = ({fw: m[key] for fw, m in manifests.items()} for key in ("common", "env"))
    found = tuple((a.field, a.values, a.may_bias) for a in asymmetries(manifests))
    return Fairness(device, cpu.get("model"), tuple(cpu.get("isa_flags", [])), common, env, found)


def build_setup(results: Results) -> Setup:
    envs = [r.record.environment for r in [*results.train.values(), *results.timing.values()] if r.ok]
    largest, prepared, preview = _largest(results), results.prepared, paths.preview_image()
    summary = prepared.record.to_dict() if prepared.ok else None
    costs = tuple(
        StageCost(
            stage,
            len(done := [c for c in jobs if c]),
            len(jobs),
            sum(c.wall_s + c.startup_s - c.lock_wait_s for c in done),
            sum(c.startup_s for c in done),
            sum(c.lock_wait_s for c in done),
            max((c.max_rss_mb * 2**20 for c in done), default=None),
        )
        for stage, jobs in results.costs.items()
    )
    return Setup(
        results.params.value(),
        results.params.path.as_posix(),
        summary and {k: v for k, v in summary.items() if k not in ("provenance", "kind", "schema_version")},
        None if prepared.ok else f"`{prepared.path.as_posix()}`: {prepared.missing}",
        os.path.relpath(preview, paths.report_markdown().parent) if preview.exists() else None,
        _environment(results, largest),
        dict(sorted({k: v for env in envs for k, v in env.get("packages", {}).items()}.items())),
        tuple(sorted({str(env.get("commit")) for env in envs})),
        ceilings.peak(results),
        tuple(f for d in results.devices if (f := _fairness(d, largest))),
        costs,
        next((r.record.loss_repeats for r in results.timing.values() if r.ok), None),
    )
