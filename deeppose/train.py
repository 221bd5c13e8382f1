"""Training stage: one framework x loss mode x device, written once over the backend interface.

    python -m deeppose train --framework pytorch --loss autograd --device cpu

Fairness, as the study could not have it: every framework and loss mode starts from the same
seeded neutral weights and sees the same batches in the same order (deeppose.data.batches), with
the data prepared once in numpy so that no framework's loader is timed. Each epoch reseeds the
framework's random streams from (seed, epoch), so a run resumed from an epoch-end checkpoint
continues exactly as an uninterrupted one (on CPU).

Outputs: results/train/<framework>/<loss>/<device>/log.jsonl (one line per iteration and per
evaluation), curve.csv and metrics.json (totals), and a checkpoint under checkpoints/ at every
epoch end that holds the log so far. An interrupted job resumes from it whoever reruns it; a
finished, foreign or damaged checkpoint means a fresh start, said in one line (deeppose.resume).
Clocks: `elapsed_s` is the training wall time since the start, excluding evaluations and
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
from deeppose.records.results import TrainMetrics, job_id
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
    print(
        f"{args.framework}/{args.loss}/{args.device}: {result['iterations']} iterations in "
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
    """The learning curve as CSV, the form `dvc plots` reads."""
    rows = ["iteration,epoch,elapsed_s,loss"]
    rows += [f"{e['iteration']},{e['epoch']},{e['elapsed_s']!r},{e['loss']!r}" for e in iterations]
    write_text(path, "\n".join(rows) + "\n")


def _prepared_fingerprint() -> str:
    summary = paths.PREPARED / "summary.json"
    if not summary.exists():
        raise DeepPoseError(f"{summary}: not found; run `python -m deeppose prepare` first")
    return ckpt.fingerprint({"summary": summary.read_text()})


def train(params: Params, job: Job, progress: bool | None = None) -> dict[str, Any]:
    """Train one grid cell; resume from its checkpoint when one matches. Returns metrics.json's
    content (a `TrainMetrics` record as a dict)."""
    from deeppose.data.batches import batch_rng, epoch_order, iterations_per_epoch, make_batch
    from deeppose.data.dataset import load_prepared

    settings = params.train
    check_job(job.framework, job.loss, job.device)
    backend = create_backend(job.framework, job.device, threads=settings.threads)
    train_set, test_set = load_prepared(split="train"), load_prepared(split="test")
    batch_size, epochs = settings.batch_size, settings.epochs
    crop = "random" if settings.augment else "center"
    identity = {
        "job": [job.framework, job.loss, job.device],
        "seed": params.seed,
        "train": params.value("train"),  # the file's values: the identity of existing checkpoints
        "model": params.value("model"),
        "data": _prepared_fingerprint(),
    }
    identity_hash = ckpt.fingerprint(identity)

    backend.load_weights(init_weights(params.seed), params.model)
    backend.set_optimizer(params.optimizer)
    folder = paths.checkpoint_dir(job)
    remove_stale(folder / ckpt.FILE_NAME)
    batches_per_epoch = iterations_per_epoch(len(train_set), batch_size)
    decision = resume.decide(
        folder, identity_hash, epochs, batches_per_epoch, params.optimizer.name, params.model.n_joints
    )
    if decision.note:
        print(f"{job.framework}/{job.loss}/{job.device}: {decision.note}", file=sys.stderr)
    start_epoch, clock_offset, eval_time, kept = 0, 0.0, 0.0, []
    if decision.checkpoint is not None:
        resumed = decision.checkpoint
        backend.load_weights(resumed.weights, params.model)
        backend.set_optimizer(params.optimizer)
        backend.load_optimizer_state(resumed.optimizer)
        start_epoch, clock_offset, eval_time, kept = (
            resumed.epoch,
            resumed.elapsed_s,
            resumed.eval_time_s,
            resumed.log,
        )

    test = _targets(test_set)  # targets, the loss's mask, the joints scored
    log = TrainLog(paths.train_log(job))
    log.open(kept)
    final_images: dict[str, list[float]] = {}
    iteration = sum(1 for e in log.lines if e["kind"] == "iteration")
    show = sys.stderr.isatty() if progress is None else progress
    try:
        from tqdm import tqdm

        bar = tqdm(
            total=epochs * batches_per_epoch,
            initial=iteration,
            disable=not show,
            desc=f"{job.framework}/{job.loss}",
            unit="it",
        )
        started = time.perf_counter() - clock_offset
        for epoch in range(start_epoch + 1, epochs + 1):
            backend.seed(_epoch_seed(params.seed, epoch))
            for index, indices in enumerate(epoch_order(len(train_set), batch_size, params.seed, epoch)):
                batch = make_batch(train_set, indices, crop=crop, rng=batch_rng(params.seed, epoch, index))
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
                log.add(
                    {
                        "kind": "iteration",
                        "epoch": epoch,
                        "iteration": iteration,
                        "loss": value,
                        "elapsed_s": time.perf_counter() - started,
                        "compute_s": compute,
                    }
                )
                if not math.isfinite(value):
                    raise DeepPoseError(
                        f"{job.framework}/{job.loss}/{job.device}: training loss became {value} at epoch "
                        f"{epoch}, iteration {iteration}; lower train.lr? The log so far is in {log.path}"
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}", epoch=epoch)
            paused = time.perf_counter()
            if epoch % settings.eval_every == 0 or epoch == epochs:
                evaluated = (predict(backend, test_set, batch_size), *test)
                scores = metrics.evaluate(*evaluated)
                if epoch == epochs:  # the report's intervals are of the final network
                    final_images = metrics.per_image(*evaluated)
                log.add(
                    {
                        "kind": "eval",
                        "epoch": epoch,
                        "iteration": iteration,
                        "elapsed_s": paused - started,
                        "test_loss": scores["loss"],
                        "pcp": scores["pcp"],
                        "pdj": scores["pdj"],
                        "pck": scores["pck"],
                    }
                )
            ckpt.save(
                folder,
                ckpt.Checkpoint(
                    epoch,
                    paused - started,
                    eval_time + (time.perf_counter() - paused),
                    backend.export_weights(),
                    backend.optimizer_state(),
                    {"fingerprint": identity_hash},
                    log.lines,
                ),
            )
            resumed_at = time.perf_counter()
            eval_time += resumed_at - paused
            started += resumed_at - paused
        bar.close()
    finally:
        log.close()

    iterations = [e for e in log.lines if e["kind"] == "iteration"]
    evals = [e for e in log.lines if e["kind"] == "eval"]
    last_epoch = [e["loss"] for e in iterations if e["epoch"] == epochs]
    baseline = np.broadcast_to(mean_pose(*_targets(train_set)[:2]), test[0].shape)
    baseline_images = metrics.per_image(baseline, *test)
    record = TrainMetrics.create(
        job=job_id(job),
        seed=params.seed,
        params={"train": params.value("train"), "model": params.value("model")},
        epochs=epochs,
        iterations=len(iterations),
        batch_size=batch_size,
        train_samples=len(train_set),
        test_samples=len(test_set),
        resumed_from_epoch=start_epoch,
        train_time_s=iterations[-1]["elapsed_s"],
        eval_time_s=eval_time,
        iteration_time_s=describe_samples([e["compute_s"] for e in iterations]),
        final_train_loss=float(np.mean(last_epoch)),
        final_test={k: evals[-1][k] for k in ("pcp", "pdj", "pck")} | {"loss": evals[-1]["test_loss"]},
        baseline_test=metrics.evaluate(baseline, *test),
        scored_joints=SCORED_JOINTS,
        test_per_image=final_images
        | {f"baseline_{k}": baseline_images[k] for k in ("sq_error", "pcp_hits", "pdj_hits", "pck_hits")},
        threads=backend.thread_info(),
        versions=backend.versions(),
        environment=environment.describe(),
        provenance=provenance.record("train", params, job),
    )
    write_curve(paths.train_curve(job), iterations)
    record.write(paths.train_metrics(job))
    return record.to_dict()
