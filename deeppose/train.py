"""Training stage: one framework x loss mode x device, written once over the backend interface.

    python -m deeppose train --framework pytorch --loss autograd --device cpu

Fairness, as the study could not have it: every framework and loss mode starts from the same
seeded neutral weights and sees the same batches in the same order (deeppose.data.batches), with
the data prepared once in numpy so that no framework's loader is timed. Each epoch reseeds the
framework's random streams from (seed, epoch), so a run resumed from an epoch-end checkpoint
continues exactly as an uninterrupted one (on CPU).

Replicates: a job runs train.seeds runs one after another, each from its own seed (`run_seeds`: the
parameter file's seed first, so one run is the run it always was): initial weights, batch order and
dropout change with it, and every framework's run k has the same seed. Training variability, and
so any claim that frameworks reach different accuracy, needs at least two (deeppose.replicates).

Outputs: results/train/<framework>/<loss>/<device>/log.jsonl (one line per iteration and per
evaluation, `run` naming the run), curve.csv (every run's, with a `run` column) and metrics.json
(the first run's totals as with one seed, and every run's summary in `runs`), and a checkpoint
under checkpoints/ at every epoch end that holds the log so far and the finished runs' summaries.
An interrupted job resumes from it whoever reruns it, within the run it stopped in; a finished,
foreign or damaged checkpoint means a fresh start, said in one line (deeppose.resume).
Clocks: `elapsed_s` is the training wall time since its run's start, excluding evaluations and
checkpoint writes; `compute_s` is one iteration's forward + loss + backward + update, synchronised.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from deeppose import checkpoint as ckpt
from deeppose import memory, metrics, provenance, resume
from deeppose.backends import Backend, create_backend
from deeppose.config import Params, load_params
from deeppose.errors import DeepPoseError
from deeppose.grid import Job, add_job_arguments, check_job, job_from_args
from deeppose.measure import environment
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.model import N_JOINTS, init_weights
from deeppose.records import paths
from deeppose.records.atomic import remove_stale, write_text
from deeppose.records.results import job_id
from deeppose.records.training import SeedRun, TrainMetrics, curve_sha256
from deeppose.stats import describe as describe_samples

# Test accuracies count every annotated joint (LSP's convention: occluded ones too, inside the crop
# or not); the test loss stays the training objective, over the visible joints inside the crop.
SCORED_JOINTS = "annotated"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, batch_exp=False)


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    check_machine(params)
    job = job_from_args(args)
    with measurement_lock(f"train {job.label}"):
        if job.device == "cpu":
            memory.check_fits(
                params.train.batch_size,
                job.framework,
                params.optimizer.name,
                params.model.lrn,
                f"{params.path}: train.batch_size",
                key="MemAvailable",
            )
        result = train(params, job)
    final = result["final_test"]
    runs = len(result["runs"])
    which = f" (the first of {runs} seeds)" if runs > 1 else ""
    print(
        f"{job.label}{which}: {result['iterations']} iterations in "
        f"{result['train_time_s']:.1f} s ({result['iteration_time_s']['mean']:.3f} s/iteration), "
        f"test loss {final['loss']:.4g} (mean pose {result['baseline_test']['loss']:.4g}), "
        f"PCP {_pct(final['pcp'])} (mean pose {_pct(result['baseline_test']['pcp'])})"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclass
class TrainLog:
    """The machine-readable log: appended line by line (flushed), so a failed run keeps it."""

    path: Path
    handle: TextIO | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)

    def open(self, kept: list[dict[str, Any]]) -> None:
        """Start the log afresh with `kept`, the entries of the epochs a resumed checkpoint holds."""
        write_text(self.path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
        self.lines = list(kept)
        self.handle = open(self.path, "a", encoding="utf-8")

    def add(self, entry: dict[str, Any]) -> None:
        assert self.handle is not None
        self.lines.append(entry)
        self.handle.write(json.dumps(entry, sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def mean_pose(targets: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Per-joint mean of the visible training targets (N, K, 2) -> (K, 2): the baseline predictor."""
    weight = visible[..., None]
    return (targets * weight).sum(0) / np.maximum(weight.sum(0), 1.0)


def predict(backend: Backend, data: Any, batch_size: int) -> np.ndarray:
    """Predictions (N, K, 2) over a split, centre crops, in the split's order."""
    from deeppose.data.batches import iterate_batches

    preds = []
    for batch in iterate_batches(data, batch_size):
        out = backend.to_numpy(backend.forward(backend.to_device(batch.images), train=False))
        preds.append(out.reshape(-1, N_JOINTS, 2))
    return np.concatenate(preds)


def _targets(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre-crop targets (N, K, 2), visibility inside the crop (N, K: the loss's mask) and
    annotation (N, K: the joints scored, SCORED_JOINTS) of a split."""
    from deeppose.data.batches import centre_targets

    targets, visible, annotated = centre_targets(data)
    return targets.reshape(-1, N_JOINTS, 2), visible, annotated


def write_curve(path: Path, iterations: list[dict[str, Any]]) -> None:
    """The learning curves as CSV, the form `dvc plots` reads: every run's, `run` telling them apart."""
    rows = ["iteration,epoch,elapsed_s,loss,run"]
    rows += [
        f"{e['iteration']},{e['epoch']},{e['elapsed_s']!r},{e['loss']!r},{e.get('run', 0)}"
        for e in iterations
    ]
    write_text(path, "\n".join(rows) + "\n")


def _prepared_fingerprint() -> str:
    summary = paths.PREPARED / "summary.json"
    if not summary.exists():
        raise DeepPoseError(f"{summary}: not found; run `python -m deeppose prepare` first")
    return ckpt.fingerprint({"summary": summary.read_text()})


def run_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a job's `count` runs (train.seeds): the parameter file's own first, so that one
    run is the run it always was, then seeds spawned from it (numpy's SeedSequence, within 0..2**32-1)."""
    children = np.random.SeedSequence(seed).spawn(count)[1:]
    return [seed] + [int(child.generate_state(1)[0]) for child in children]


@dataclass
class _Trainer:
    """What every run of one training job shares: the backend, the data, the log and the checkpoint
    folder. `run_seed` trains one seed; the runs go one after another in one process."""

    params: Params
    job: Job
    backend: Backend
    train_set: Any
    test_set: Any
    folder: Path
    identity: str
    log: TrainLog
    bar: Any

    def run_seed(
        self, run: int, seed: int, resumed: ckpt.Checkpoint | None, finished: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Train run `run` with `seed` (from `resumed`, a checkpoint inside it, when given) and
        return its `SeedRun` as a dict; `finished` holds the runs before it, for the checkpoints."""
        from deeppose.data.batches import batch_rng, epoch_order, make_batch

        settings, backend, job = self.params.train, self.backend, self.job
        crop = "random" if settings.augment else "center"
        backend.load_weights(init_weights(seed) if resumed is None else resumed.weights, self.params.model)
        backend.set_optimizer(self.params.optimizer)
        start_epoch, clock_offset, eval_time = 0, 0.0, 0.0
        if resumed is not None:
            backend.load_optimizer_state(resumed.optimizer)
            start_epoch, clock_offset, eval_time = resumed.epoch, resumed.elapsed_s, resumed.eval_time_s
        test = _targets(self.test_set)  # targets, the loss's mask, the joints scored
        final_images: dict[str, list[float]] = {}
        iteration = sum(1 for e in self.log.lines if e["kind"] == "iteration" and e.get("run", 0) == run)
        started = time.perf_counter() - clock_offset
        for epoch in range(start_epoch + 1, settings.epochs + 1):
            backend.seed(_epoch_seed(seed, epoch))
            for index, indices in enumerate(
                epoch_order(len(self.train_set), settings.batch_size, seed, epoch)
            ):
                batch = make_batch(self.train_set, indices, crop=crop, rng=batch_rng(seed, epoch, index))
                images, targets, visible = (
                    backend.to_device(a) for a in (batch.images, batch.targets, batch.visible)
                )
                backend.synchronize()
                tic = time.perf_counter()
                backend.zero_grad()
                loss = backend.forward_backward(images, targets, visible, job.loss)
                backend.optimizer_step()
                value = backend.scalar(loss)
                backend.synchronize()
                compute = time.perf_counter() - tic
                # A Chainer loss holds the iteration's whole graph: free it here, not when `loss`
                # is rebound inside the next iteration's timed region.
                del loss
                iteration += 1
                self.log.add(
                    {
                        "kind": "iteration",
                        "run": run,
                        "epoch": epoch,
                        "iteration": iteration,
                        "loss": value,
                        "elapsed_s": time.perf_counter() - started,
                        "compute_s": compute,
                    }
                )
                if not math.isfinite(value):
                    raise DeepPoseError(
                        f"{job.label}: training loss became {value} at epoch {epoch}, iteration "
                        f"{iteration} (seed {seed}); lower train.lr? The log so far is in {self.log.path}"
                    )
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{value:.4g}", epoch=epoch, run=run)
            paused = time.perf_counter()
            if epoch % settings.eval_every == 0 or epoch == settings.epochs:
                evaluated = (predict(backend, self.test_set, settings.batch_size), *test)
                scores = metrics.evaluate(*evaluated)
                if epoch == settings.epochs:  # the report's intervals are of the final network
                    final_images = metrics.per_image(*evaluated)
                self.log.add(
                    {
                        "kind": "eval",
                        "run": run,
                        "epoch": epoch,
                        "iteration": iteration,
                        "elapsed_s": paused - started,
                        "test_loss": scores["loss"],
                        "pcp": scores["pcp"],
                        "pdj": scores["pdj"],
                        "pck": scores["pck"],
                    }
                )
            done = finished
            if epoch == settings.epochs:
                eval_so_far = eval_time + (time.perf_counter() - paused)
                done = finished + [self._summary(run, seed, eval_so_far, final_images)]
            ckpt.save(
                self.folder,
                ckpt.Checkpoint(
                    epoch,
                    paused - started,
                    eval_time + (time.perf_counter() - paused),
                    backend.export_weights(),
                    backend.optimizer_state(),
                    {"fingerprint": self.identity, "run": run, "runs": done},
                    self.log.lines,
                ),
            )
            resumed_at = time.perf_counter()
            eval_time += resumed_at - paused
            started += resumed_at - paused
        return done[-1]

    def _summary(
        self, run: int, seed: int, eval_time: float, final_images: dict[str, list[float]]
    ) -> dict[str, Any]:
        """The finished run's `SeedRun`, from its log lines."""
        lines = [e for e in self.log.lines if e.get("run", 0) == run]
        iterations = [e for e in lines if e["kind"] == "iteration"]
        last = [e for e in lines if e["kind"] == "eval"][-1]
        return SeedRun.create(
            seed=seed,
            iterations=len(iterations),
            train_time_s=iterations[-1]["elapsed_s"],
            eval_time_s=eval_time,
            final_train_loss=float(np.mean([e["loss"] for e in iterations if e["epoch"] == last["epoch"]])),
            final_test={k: last[k] for k in ("pcp", "pdj", "pck")} | {"loss": last["test_loss"]},
            test_per_image=final_images,
            curve_sha256=curve_sha256([e["loss"] for e in iterations]),
        ).to_dict()


def train(params: Params, job: Job, progress: bool | None = None) -> dict[str, Any]:
    """Train one grid cell, its train.seeds runs one after another; resume from its checkpoint when
    one matches. Returns metrics.json's content (a `TrainMetrics` record as a dict)."""
    from deeppose.data.batches import iterations_per_epoch
    from deeppose.data.dataset import load_prepared

    settings = params.train
    check_job(job.framework, job.loss, job.device)
    backend = create_backend(job.framework, job.device, threads=settings.threads)
    train_set, test_set = load_prepared(split="train"), load_prepared(split="test")
    seeds = run_seeds(params.seed, settings.seeds)
    identity = {
        "job": [job.framework, job.loss, job.device],
        "seed": params.seed,
        "train": params.value("train"),  # the file's values: the identity of existing checkpoints
        "model": params.value("model"),
        "data": _prepared_fingerprint(),
    }
    identity_hash = ckpt.fingerprint(identity)
    folder = paths.checkpoint_dir(job)
    remove_stale(folder / ckpt.FILE_NAME)
    batches_per_epoch = iterations_per_epoch(len(train_set), settings.batch_size)
    decision = resume.decide(
        folder,
        identity_hash,
        settings.epochs,
        batches_per_epoch,
        params.optimizer.name,
        params.model.n_joints,
        len(seeds),
    )
    if decision.note:
        print(f"{job.label}: {decision.note}", file=sys.stderr)
    resumed, kept, finished = decision.checkpoint, [], []
    start_run, resumed_from_epoch = 0, 0
    if resumed is not None:
        kept, finished = resumed.log, list(resumed.meta["runs"])
        start_run, resumed_from_epoch = resumed.meta.get("run", 0), resumed.epoch
        if resumed.epoch == settings.epochs:  # that run finished: the next one starts afresh
            start_run, resumed = start_run + 1, None

    log = TrainLog(paths.train_log(job))
    log.open(kept)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        from tqdm import tqdm

        total = len(seeds) * settings.epochs * batches_per_epoch
        done_before = sum(1 for e in log.lines if e["kind"] == "iteration")
        bar = tqdm(total=total, initial=done_before, disable=not show, desc=job.label, unit="it")
        trainer = _Trainer(params, job, backend, train_set, test_set, folder, identity_hash, log, bar)
        for run in range(start_run, len(seeds)):
            finished.append(trainer.run_seed(run, seeds[run], resumed, finished))
            resumed = None
        bar.close()
    finally:
        log.close()

    runs = [SeedRun.from_dict(r, f"{folder} run {i}") for i, r in enumerate(finished)]
    first = runs[0]
    test = _targets(test_set)
    baseline = np.broadcast_to(mean_pose(*_targets(train_set)[:2]), test[0].shape)
    baseline_images = metrics.per_image(baseline, *test)
    iterations = [e for e in log.lines if e["kind"] == "iteration" and e.get("run", 0) == 0]
    record = TrainMetrics.create(
        job=job_id(job),
        seed=params.seed,
        params={"train": params.value("train"), "model": params.value("model")},
        epochs=settings.epochs,
        iterations=first.iterations,
        batch_size=settings.batch_size,
        train_samples=len(train_set),
        test_samples=len(test_set),
        resumed_from_epoch=resumed_from_epoch,
        train_time_s=first.train_time_s,
        eval_time_s=first.eval_time_s,
        iteration_time_s=describe_samples([e["compute_s"] for e in iterations]),
        final_train_loss=first.final_train_loss,
        final_test=first.final_test,
        baseline_test=metrics.evaluate(baseline, *test),
        scored_joints=SCORED_JOINTS,
        test_per_image=first.test_per_image
        | {f"baseline_{k}": baseline_images[k] for k in ("sq_error", "pcp_hits", "pdj_hits", "pck_hits")},
        threads=backend.thread_info(),
        versions=backend.versions(),
        environment=environment.describe(),
        provenance=provenance.record("train", params, job),
        runs=runs,
    )
    write_curve(paths.train_curve(job), [e for e in log.lines if e["kind"] == "iteration"])
    record.write(paths.train_metrics(job))
    return record.to_dict()
