"""Training runs as replicates (deeppose.replicates), in the report and in `compare`: one seed never
makes a claim that frameworks or revisions differ, two seeds give the between-seed interval, and
bit-identical runs count once."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as scipy_stats

from deeppose import compare
from deeppose.compare_stats import LEVEL, Interval, Verdict
from deeppose.grid import Job
from deeppose.records.results import JobId, Provenance
from deeppose.records.training import Scores, SeedRun, TrainMetrics
from deeppose.replicates import ONE_TRAJECTORY, between_seeds, distinct, identical, per_seed
from deeppose.report import accuracy, answers
from deeppose.report.training import AccuracyDifference, identical_modes, seed_differences

MARGIN = 0.05
PYTORCH, CHAINER = Job("pytorch", "autograd", "cpu"), Job("chainer", "autograd", "cpu")


def run(seed: int, train_loss: float, pck: float, curve: str | None = "") -> SeedRun:
    """A run; its curve's hash made up from its values unless given (None: no log told it)."""
    curve = f"{seed}-{train_loss}-{pck}" if curve == "" else curve
    return SeedRun(seed, 4, 1.0, 0.1, train_loss, Scores(0.01, 0.5, 0.5, pck), {}, curve)


def paired_t(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """The textbook paired t interval of mean(a - b) at LEVEL."""
    d = np.subtract(a, b)
    half = scipy_stats.t.ppf(0.5 + LEVEL / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return d.mean(), d.mean() - half, d.mean() + half


def test_two_seeds_give_the_paired_t_interval_between_seeds():
    a, b = {7: 0.60, 9: 0.70}, {7: 0.55, 9: 0.58}
    found = between_seeds(a, b, MARGIN, ratio=False)
    mean, low, high = paired_t([0.60, 0.70], [0.55, 0.58])
    assert (found.interval.estimate, found.interval.low, found.interval.high) == pytest.approx(
        (mean, low, high)
    )
    assert found.seeds == found.interval.n == 2 and found.measured
    assert found.verdict is Verdict.INCONCLUSIVE  # t(0.975, 1) = 12.7: two seeds decide only large effects
    losses = between_seeds({7: 0.20, 9: 0.22}, {7: 0.10, 9: 0.105}, MARGIN, ratio=True)
    centre, log_low, log_high = paired_t(np.log([0.20, 0.22]), np.log([0.10, 0.105]))
    assert losses.interval.estimate == pytest.approx(math.exp(centre))
    assert (losses.interval.low, losses.interval.high) == pytest.approx(
        (math.exp(log_low), math.exp(log_high))
    )
    assert losses.verdict is Verdict.SLOWER and losses.word == "higher"
    same = between_seeds({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6}, MARGIN, ratio=False)
    assert same.verdict is Verdict.EQUIVALENT


def test_one_seed_gives_no_interval_and_no_verdict():
    found = between_seeds({0: 0.9}, {0: 0.1}, MARGIN, ratio=False)
    assert found.interval.estimate == pytest.approx(0.8) and found.interval.low is None
    assert found.verdict is Verdict.INCONCLUSIVE and not found.measured
    assert ONE_TRAJECTORY in found.interval.method
    assert between_seeds({0: 0.9, 1: 0.8}, {2: 0.1, 3: 0.2}, MARGIN, ratio=False).seeds == 0  # none shared


def test_bit_identical_runs_count_once():
    runs = [run(0, 0.2, 0.5, "x"), run(1, 0.3, 0.6, "x"), run(2, 0.4, 0.7, None), run(3, 0.4, 0.7, None)]
    assert [r.seed for r in distinct(runs)] == [0, 2, 3]  # an unknown curve is its own
    assert per_seed(runs, "pck") == {0: 0.5, 2: 0.7, 3: 0.7}
    assert per_seed(runs, "train_loss") == {0: 0.2, 2: 0.4, 3: 0.4}
    twins = [run(0, 0.2, 0.5, "x"), run(1, 0.3, 0.6, "x")]  # one seed's curve repeated: one replicate
    assert not between_seeds(per_seed(twins, "pck"), per_seed(twins, "pck"), MARGIN, ratio=False).measured
    autograd, explicit = (
        [run(0, 0.2, 0.5, "a"), run(1, 0.3, 0.6, "b")],
        [run(0, 0.2, 0.5, "a"), run(1, 0.3, 0.6, "b")],
    )
    assert identical(autograd, explicit) and not identical(autograd, explicit[:1])
    assert not identical([run(0, 0.2, 0.5, None)], [run(0, 0.2, 0.5, None)])
    jobs = {PYTORCH: autograd, Job("pytorch", "explicit", "cpu"): explicit, CHAINER: autograd[:1]}
    assert identical_modes(jobs) == ("pytorch",)


def test_the_report_compares_frameworks_between_seeds():
    pytorch = [run(1, 0.10, 0.60), run(2, 0.12, 0.70)]
    chainer = [run(1, 0.20, 0.55), run(2, 0.22, 0.58)]
    found = {x.metric: x for x in seed_differences({PYTORCH: pytorch, CHAINER: chainer}, MARGIN)}
    assert found.keys() == {"train_loss", "pck"} and all(x.framework == "chainer" for x in found.values())
    mean, low, high = paired_t([0.55, 0.58], [0.60, 0.70])
    pck = found["pck"].between.interval
    assert (pck.estimate, pck.low, pck.high) == pytest.approx((mean, low, high))
    d = SimpleNamespace(
        device="cpu",
        seed_differences=tuple(found.values()),
        accuracy_differences=(
            AccuracyDifference(
                "chainer", "autograd", "pck", Interval(-0.1, -0.2, -0.05, 80, LEVEL, "bca"), True
            ),
        ),
        identical_modes=(),
        training=(SimpleNamespace(seeds=2), SimpleNamespace(seeds=2)),
    )
    (answer,) = answers._accuracy(d, 8)
    assert (
        answer.interval is pck and "between 2 seeds" in answer.caveat and "margin ± 5 points" in answer.caveat
    )
    lines = accuracy.accuracy_lines(d)
    assert lines[0] == "Each training job on cpu ran 2 seeds; the tables above show each job's first."
    assert lines[1].startswith(
        "Chainer against PyTorch on cpu (autograd), between 2 seeds paired by seed (equivalence margin "
        "timing.margin: a loss ratio within ×/÷ 1.05, PCK within 5 points): "
    )
    assert "final training loss Chainer / PyTorch" in lines[1] and "**higher**" in lines[1]


def test_the_report_makes_no_claim_from_one_seed():
    """One training run per framework: even a test-image interval clear of zero is no claim that the
    frameworks differ (the old accuracy lines said only that the interval excluded zero)."""
    one = {PYTORCH: [run(0, 0.1, 0.9)], CHAINER: [run(0, 0.2, 0.1)]}
    differences = seed_differences(one, MARGIN)
    assert differences and not any(x.between.measured for x in differences)
    clear = AccuracyDifference(
        "chainer", "autograd", "pck", Interval(-0.8, -0.9, -0.7, 80, LEVEL, "bca"), True
    )
    d = SimpleNamespace(
        device="cpu",
        seed_differences=differences,
        accuracy_differences=(clear,),
        identical_modes=("pytorch",),
        training=(SimpleNamespace(seeds=1),),
    )
    (answer,) = answers._accuracy(d, 8)
    assert answer.verdict is Verdict.INCONCLUSIVE and ONE_TRAJECTORY in answer.caveat
    lines = accuracy.accuracy_lines(d)
    assert len(lines) == 2 and "between" not in lines[0]
    assert lines[0].endswith(
        f"excludes zero on PCK@0.2; one training run each: {ONE_TRAJECTORY}, so no claim that the frameworks differ."
    )
    assert lines[1].startswith("PyTorch's explicit runs repeat its autograd runs bit for bit")


def metrics(job: Job, runs: list[SeedRun]) -> TrainMetrics:
    first = runs[0]
    return TrainMetrics(
        JobId(job.framework, job.loss, job.device, None), first.seed, {}, 1, first.iterations, 2, 8, 4, 0,
        first.train_time_s, first.eval_time_s, {}, first.final_train_loss, first.final_test,
        Scores(0.02, 0.1, 0.1, 0.1), "annotated", {}, {}, {}, {},
        Provenance("train", {}, {}, {}, "params.yaml", None), runs,
    )  # fmt: skip


def side(label: str, runs: list[SeedRun]) -> compare.Side:
    return compare.Side(label, {}, {PYTORCH: metrics(PYTORCH, runs)}, {PYTORCH: []}, {}, None)


def rows(base: list[SeedRun], head: list[SeedRun]) -> dict[str, compare.Row]:
    return {row.what: row for row in compare._accuracy(side("base", base), side("head", head), MARGIN)}


def test_compare_calls_no_single_trajectory_a_change():
    """Before: a halved final training loss of one run a side was "lower", a PCK gain "better"."""
    found = rows([run(0, 0.2, 0.5)], [run(0, 0.1, 0.9)])
    assert {row.verdict for row in found.values()} == {compare.NOT_REPLICATED}
    assert (
        found["test PCK@0.2"].change.estimate == pytest.approx(0.4)
        and found["test PCK@0.2"].change.low is None
    )
    assert not any(row.changed for row in found.values())
    assert "measures one trajectory" in compare.render_markdown(
        compare.Changes(
            "base", "head", LEVEL, MARGIN, "", (), False, (), (), (), tuple(found.values()), (), (), {}
        )
    )
    same = rows([run(0, 0.2, 0.5, "x")], [run(0, 0.2, 0.5, "x")])
    assert {row.verdict for row in same.values()} == {compare.IDENTICAL}


def test_compare_judges_two_seeds_between_seeds():
    base = [run(1, 0.20, 0.50), run(2, 0.21, 0.52)]
    head = [run(1, 0.10, 0.90), run(2, 0.104, 0.93)]
    found = rows(base, head)
    loss = found["final training loss"]
    centre, low, high = paired_t(np.log([0.10, 0.104]), np.log([0.20, 0.21]))
    assert loss.change.estimate == pytest.approx(math.exp(centre))
    assert (loss.change.low, loss.change.high) == pytest.approx((math.exp(low), math.exp(high)))
    assert loss.verdict == "lower" and loss.changed
    assert loss.base == pytest.approx(0.205) and loss.head == pytest.approx(0.102)
    pck = found["test PCK@0.2"]
    assert (pck.change.estimate, pck.change.low, pck.change.high) == pytest.approx(
        paired_t([0.90, 0.93], [0.50, 0.52])
    )
    assert pck.verdict == "better"


def test_a_record_whose_runs_repeat_a_seed_is_refused_in_one_line():
    from deeppose.records import ranges
    from deeppose.records.results import RecordError

    ranges.check(metrics(PYTORCH, [run(0, 0.2, 0.5), run(5, 0.2, 0.5)]), "m.json")
    with pytest.raises(RecordError, match=r"^m.json: runs: seeds \[0, 0\] are not distinct"):
        ranges.check(metrics(PYTORCH, [run(0, 0.2, 0.5), run(0, 0.3, 0.5)]), "m.json")
