"""deeppose.measure.blocks and deeppose.compare_stats: the schedule, the block runner with a fake machine,
the disturbed-block detector, intervals against scipy, the four verdicts, the controls, the
between-block test, the precision helper, and a simulation of the whole rule (A/A false-verdict rate
and power) on a drifting machine with outlier blocks."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats as scipy_stats
from simulated_machine import run_group

from deeppose import compare_stats as S
from deeppose.measure import blocks as B
from deeppose.measure.block_server import server_launch
from deeppose.records.results import BlockInterference
from deeppose.stats import cell_estimate
from deeppose.verdicts import DECISION_LEVEL, minimum_detectable_ratio

MARGIN = 0.05  # params.yaml's timing.margin


# --- the rule on the simulated machine ----------------------------------------------------
def rule_rates(
    effect: float,
    trials: int,
    rounds: int = S.SIMULATED_ROUNDS,
    repeats: int = S.SIMULATED_REPEATS,
    margin: float = MARGIN,
    seed: int = 0,
) -> tuple[float, float]:
    """The rule over `trials` simulated groups of cells a (0.25 s) and b (a x (1 + effect)):
    (rate of a slower or faster verdict on the A/A pair, rate of 'b slower than a')."""
    false_positives = detected = 0
    for trial in range(trials):
        blocks = run_group({"a": 0.25, "b": 0.25 * (1 + effect)}, rounds, seed * 100_000 + trial, repeats)
        aa = S.compare(blocks, "a#1", "a", margin, DECISION_LEVEL)
        false_positives += aa.verdict in (S.Verdict.FASTER, S.Verdict.SLOWER)
        detected += S.compare(blocks, "b", "a", margin, DECISION_LEVEL).verdict is S.Verdict.SLOWER
    return false_positives / trials, detected / trials


# --- the schedule -------------------------------------------------------------------------
def test_schedule_interleaves_every_arm_once_per_round_in_seeded_random_orders() -> None:
    arms = B.arms_with_control(
        ["pytorch/autograd", "pytorch/explicit", "chainer/autograd", "chainer/explicit"],
        control="chainer/explicit",
    )
    assert [a.name for a in arms][-1] == "chainer/explicit#1" and arms[-1].cell == "chainer/explicit"
    slots = B.schedule(arms, rounds=20, seed=3)
    assert slots == B.schedule(arms, rounds=20, seed=3)
    assert slots != B.schedule(arms, rounds=20, seed=4)
    for round_ in range(20):
        in_round = [s for s in slots if s.round == round_]
        assert sorted(a.name for a in (s.arm for s in in_round)) == sorted(a.name for a in arms)
        assert [s.position for s in in_round] == list(range(len(arms)))
    # rounds are contiguous (interleaved, not one arm after another) and orders vary
    assert [s.round for s in slots] == sorted(s.round for s in slots)
    orders = {tuple(s.arm.name for s in slots if s.round == r) for r in range(20)}
    assert len(orders) > 10
    firsts = Counter(s.arm.name for s in slots if s.position == 0)
    assert len(firsts) == len(arms)  # every arm leads some round


def test_schedule_and_arms_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        B.schedule([B.Arm("a")], rounds=0, seed=0)
    with pytest.raises(ValueError):
        B.schedule([B.Arm("a"), B.Arm("a")], rounds=1, seed=0)
    with pytest.raises(ValueError):
        B.arms_with_control(["a", "b"], control="c")


# --- interference and disturbed blocks ----------------------------------------------------
STAT = """cpu  {user} 5 {system} 9000 40 0 {softirq} {steal} 77 0
cpu0 1 0 1 1 0 0 0 0 0 0
cpu1 1 0 1 1 0 0 0 0 0 0
intr 1 2 3
"""


def test_machine_busy_time_from_proc_stat() -> None:
    text = STAT.format(user=1000, system=300, softirq=20, steal=80)
    # user + nice + system + irq + softirq + steal; guest (77) is inside user already
    assert B.machine_busy_s(text, ticks_per_s=100) == pytest.approx((1000 + 5 + 300 + 0 + 20 + 80) / 100)
    assert B.count_cpus(text) == 2
    with pytest.raises(ValueError):
        B.machine_busy_s("intr 1\n", 100)


def test_real_readings_are_sane() -> None:
    before = B.read_cpu()
    sum(i * i for i in range(200_000))
    after = B.read_cpu()
    figures = B.interference(before, after, os.getloadavg(), os.cpu_count() or 1)
    assert after.machine_busy_s >= before.machine_busy_s and figures.own_s > 0
    assert figures.other_cpu_s >= 0 and figures.wall_s > 0


def _figures(other_cores: float = 0.0, load: float = 0.0) -> BlockInterference:
    return BlockInterference(
        10.0, 10.0 * (1 + other_cores), 10.0, 10.0 * other_cores, other_cores, [load, 0.0, 0.0], 2
    )


def test_disturbed_block_detector_on_one_contaminated_block() -> None:
    """Five quiet blocks and one that another process shared: only that one is flagged."""
    rng = np.random.default_rng(5)
    quiet = [0.25 * rng.lognormal(0, 0.01, 6) for _ in range(5)]
    contaminated = 0.25 * rng.lognormal(0, 0.01, 6) * np.array([1, 1, 1.4, 1.5, 1, 1.05])
    outputs = (
        [B.BlockOutput(tuple(s)) for s in quiet[:3]]
        + [B.BlockOutput(tuple(contaminated))]
        + [B.BlockOutput(tuple(s)) for s in quiet[3:]]
    )
    readings = iter(
        [B.CpuReading(0, 0, 0), B.CpuReading(10, 10, 10)] * 3
        + [B.CpuReading(10, 10, 10), B.CpuReading(20, 28, 20)]  # others used 8 CPU s in 10 s
        + [B.CpuReading(0, 0, 0), B.CpuReading(10, 10.5, 10)] * 2  # half a CPU s: below 0.1 cores
    )
    launched = iter(outputs)
    slots = B.schedule([B.Arm("x")], rounds=6, seed=0)
    blocks = B.run_blocks(
        slots,
        lambda cell, round_: next(launched),
        retries=0,
        probe=lambda: next(readings),
        load=lambda: (0.3, 0.2, 0.1),
        cores=2,
        wall_clock=lambda: 0.0,
    )
    assert [b.disturbed for b in blocks] == [False, False, False, True, False, False]
    reasons = " ".join(blocks[3].reasons)
    assert "IQR/median" in reasons and "max/median" in reasons and "other processes" in reasons
    assert blocks[3].interference.other_cores == pytest.approx(0.8)
    assert blocks[4].interference.other_cpu_s == pytest.approx(0.5)


def test_a_block_other_processes_disturbed_is_rerun_and_a_noisy_one_is_kept() -> None:
    calm, spiky = B.BlockOutput((1.1, 1.1, 1.1)), B.BlockOutput((1.0, 1.0, 2.0))
    # x: other processes busy during two attempts, quiet on the third; y: quiet but noisy on its own;
    # z: other processes busy every time
    runs = iter([(calm, 1.5), (calm, 1.5), (calm, 0.0), (spiky, 0.0), (calm, 1.5), (calm, 1.5), (calm, 1.5)])
    readings: list[B.CpuReading] = []

    def launch(cell: str, round_: int) -> B.BlockOutput:
        output, others = next(runs)
        start = readings[-1]
        readings.append(B.CpuReading(start.monotonic_s + 1, start.machine_busy_s + others, start.own_s))
        return output

    def probe() -> B.CpuReading:
        if not readings:
            readings.append(B.CpuReading(0.0, 0.0, 0.0))
        return readings[-1]

    slots = [B.Slot(0, 0, B.Arm("x")), B.Slot(0, 1, B.Arm("y")), B.Slot(0, 2, B.Arm("z"))]
    blocks = B.run_blocks(slots, launch, retries=2, probe=probe, load=lambda: (0.0, 0.0, 0.0), cores=2)
    assert [(b.arm, b.attempt, b.disturbed, B.interfered(b.reasons)) for b in blocks] == [
        ("x", 0, True, True),
        ("x", 1, True, True),
        ("x", 2, False, False),
        ("y", 0, True, False),  # flagged (an outlier sample), not rerun: its spread is the cell's own
        ("z", 0, True, True),
        ("z", 1, True, True),
        ("z", 2, True, True),
    ]
    kept = {b.arm: b for b in B.final(blocks)}
    assert kept["x"].attempt == 2 and kept["y"].samples_s == spiky.samples_s
    assert kept["z"].disturbed and kept["z"].attempt == 2  # every retry disturbed: left to the analysis


@pytest.mark.parametrize(
    ("samples", "figures", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], _figures(), ()),
        ([1.0, 1.0, 1.0, 1.3], _figures(), ("outlier",)),
        ([0.8, 0.9, 1.1, 1.2], _figures(), ("spread",)),
        ([1.0, 1.0, 1.0, 1.0], _figures(other_cores=0.5), ("other processes",)),
        ([1.0, 1.0, 1.0, 1.0], _figures(load=3.5), ()),  # recorded, but our own last block is in it
    ],
)
def test_disturbance_reasons(
    samples: list[float], figures: BlockInterference, expected: tuple[str, ...]
) -> None:
    assert tuple(r.split(":")[0] for r in B.disturbance_reasons(samples, figures)) == expected


def test_a_disturbed_round_is_left_out_of_both_arms() -> None:
    def block(arm: str, round_: int, median: float, reasons: tuple[str, ...] = ()) -> B.Block:
        return B.Block(
            round_, 0, arm, arm.split("#")[0], 0, (median,), (), 0.0, 1.0, _figures(), bool(reasons), reasons
        )

    blocks = [block("a", r, 1.0 + 0.01 * r) for r in range(4)] + [
        block("b", r, 1.2 + 0.01 * r) for r in range(4)
    ]
    blocks[6] = block("b", 2, 5.0, reasons=("other processes: 0.90 CPU s in 1.00 s (0.90 cores > 0.1)",))
    blocks[1] = block("a", 1, 1.01, reasons=("spread: IQR/median 0.20 > 0.1",))  # noisy on its own: counts
    result = S.compare(blocks, "b", "a", MARGIN, DECISION_LEVEL)
    assert result.rounds_used == (0, 1, 3) and result.rounds_dropped == (2,)
    assert result.verdict is S.Verdict.SLOWER and result.ratio.n == 3 and result.ratio.level == DECISION_LEVEL
    assert len(result.log_ratios) == 3
    one = S.compare(blocks[:1] + blocks[4:5], "b", "a", MARGIN, DECISION_LEVEL)
    assert one.verdict is S.Verdict.INCONCLUSIVE and one.ratio.low is None  # one round: no interval
    nothing = S.compare(blocks[2:3] + blocks[6:7], "b", "a", MARGIN, DECISION_LEVEL)  # its round disturbed
    assert nothing.verdict is S.Verdict.INCONCLUSIVE and nothing.ratio.estimate is None
    assert S.format_interval(nothing.ratio) == "n/a (no usable block)"


# --- the block process protocol -----------------------------------------------------------
def test_block_output_round_trips_through_stdout() -> None:
    stream = io.StringIO()
    print("framework chatter", file=stream)
    B.emit_block(B.BlockOutput((0.25, 0.26), (0.9,), {"threads": 2}), stream)
    parsed = B.parse_block(stream.getvalue())
    assert parsed == B.BlockOutput((0.25, 0.26), (0.9,), {"threads": 2})
    with pytest.raises(ValueError):
        B.parse_block("nothing here\n")


SERVER = """
import os, sys, time
from deeppose.measure.blocks import BlockOutput
from deeppose.measure.block_server import serve

def run_block(request):
    cell, round_ = request.split()
    if cell.endswith("boom"):
        raise ValueError("boom in " + cell)
    t = time.process_time()
    while time.process_time() - t < 0.1:  # CPU work the caller cannot reap
        pass
    return BlockOutput((0.001 * len(cell),), (), {"pid": os.getpid(), "server": os.getppid(), "round": int(round_)})

serve(run_block)
"""


def server_command(code: str = SERVER) -> list[str]:
    return [sys.executable, "-c", code]


def test_server_launch_forks_a_fresh_process_per_block_and_counts_its_cpu() -> None:
    commands = {"a": server_command(), "b": server_command()}
    with server_launch(commands, timeout_s=60) as launch:
        # retries=0: on a shared machine other processes may well disturb these tiny blocks
        blocks = B.run_blocks(B.schedule([B.Arm("a/x"), B.Arm("b/xyz")], rounds=2, seed=1), launch, retries=0)
        with pytest.raises(RuntimeError, match="status 1: ValueError: boom in a/boom"):
            launch("a/boom", 0)
        assert launch("a/x", 0).samples_s == (0.003,)  # a failed block leaves its server serving
    pids = {b.extra["pid"] for b in blocks}
    assert len(pids) == 4 and os.getpid() not in pids
    assert len({b.extra["server"] for b in blocks if b.cell == "a/x"}) == 1  # one server per framework
    assert {b.cell: b.samples_s for b in blocks} == {"a/x": (0.003,), "b/xyz": (0.005,)}
    assert all(b.extra["round"] == b.round for b in blocks)  # each request names its round
    # the forked children's CPU time is ours, not "other processes'"
    assert all(b.interference.own_s >= 0.05 and b.ended_at >= b.started_at for b in blocks)


def test_a_server_that_cannot_start_is_a_one_line_error() -> None:
    with pytest.raises(
        RuntimeError, match=r"a block server exited with status 1, starting: SystemExit: no framework"
    ):
        with server_launch(
            {"a": server_command("raise SystemExit('SystemExit: no framework')")}, timeout_s=60
        ):
            pass


def test_blocks_serialise_to_json() -> None:
    blocks = run_group({"a": 0.25, "b": 0.3}, rounds=2, seed=0)
    record = json.loads(json.dumps([dataclasses.asdict(b) for b in blocks], allow_nan=False))
    assert {r["arm"] for r in record} == {"a", "b", "a#1"}
    assert all(len(r["warmup_s"]) == 2 and len(r["samples_s"]) == S.SIMULATED_REPEATS for r in record)


# --- intervals against scipy --------------------------------------------------------------
KNOWN_A = {0: 0.251, 1: 0.262, 2: 0.248, 3: 0.270, 4: 0.255, 5: 0.259}
KNOWN_B = {0: 0.240, 1: 0.244, 2: 0.239, 3: 0.251, 4: 0.246, 5: 0.241}


def test_paired_ratio_matches_scipy_ttest_rel() -> None:
    la, lb = np.log(list(KNOWN_A.values())), np.log(list(KNOWN_B.values()))
    expected = scipy_stats.ttest_rel(la, lb).confidence_interval(0.95)
    got = S.paired_ratio(KNOWN_A, KNOWN_B)
    assert math.log(got.low) == pytest.approx(expected.low, rel=1e-12)
    assert math.log(got.high) == pytest.approx(expected.high, rel=1e-12)
    assert got.estimate == pytest.approx(math.exp(np.mean(la - lb)), rel=1e-12) and got.n == 6


def test_paired_ratio_pairs_by_round_not_by_position() -> None:
    shuffled = {r: KNOWN_B[r] for r in (3, 0, 5, 1, 4, 2)}
    extra = {**KNOWN_A, 9: 10.0}  # a round b lacks is ignored
    assert S.paired_ratio(extra, shuffled) == S.paired_ratio(KNOWN_A, KNOWN_B)


def test_welch_ratio_and_cell_interval_match_scipy() -> None:
    la, lb = np.log(list(KNOWN_A.values())), np.log(list(KNOWN_B.values()))[:4]
    expected = scipy_stats.ttest_ind(la, lb, equal_var=False).confidence_interval(0.95)
    got = S.welch_ratio(list(KNOWN_A.values()), list(KNOWN_B.values())[:4])
    assert (math.log(got.low), math.log(got.high)) == pytest.approx((expected.low, expected.high), rel=1e-10)
    cell = cell_estimate(list(KNOWN_A.values()))
    low, high = scipy_stats.t.interval(0.95, la.size - 1, loc=la.mean(), scale=scipy_stats.sem(la))
    assert (math.log(cell.low), math.log(cell.high)) == pytest.approx((low, high), rel=1e-12)
    assert cell.estimate == pytest.approx(np.median(list(KNOWN_A.values())))


def test_hodges_lehmann_interval_inverts_scipys_mann_whitney_test() -> None:
    """Shifts just inside the interval are not rejected by scipy's exact two-sided test at 5 %,
    shifts just outside are; the estimate is the median pairwise log ratio."""
    a, b = list(KNOWN_A.values()) + [0.31], list(KNOWN_B.values())
    found = S.hodges_lehmann_ratio(a, b)
    la, lb = np.log(a), np.log(b)
    assert math.log(found.estimate) == pytest.approx(np.median(np.subtract.outer(la, lb)))
    for end in (math.log(found.low), math.log(found.high)):
        for step, rejected in ((-1e-9, end == math.log(found.low)), (1e-9, end == math.log(found.high))):
            p = scipy_stats.mannwhitneyu(la - (end + step), lb, method="exact").pvalue
            assert bool(p <= 0.05) is rejected, (end, step, p)
    large = np.random.default_rng(0).lognormal(0, 0.1, (2, 80))  # 6,400 pairs: the normal quantile
    wide = S.hodges_lehmann_ratio(large[0], large[1])
    for end, sign in ((wide.low, -1), (wide.high, 1)):
        p = scipy_stats.mannwhitneyu(
            np.log(large[0]) - math.log(end) - sign * 1e-9,
            np.log(large[1]),
            method="asymptotic",
            use_continuity=False,
        ).pvalue
        assert p == pytest.approx(0.05, abs=0.004)
    assert S.hodges_lehmann_ratio([1.0, 1.1], [1.0, 1.2]).low is None  # 2 x 2 blocks: no 95 % interval


def test_an_outlier_block_moves_the_rank_interval_less_than_welchs() -> None:
    base = [1.00, 1.02, 0.99, 1.01, 1.03, 0.98, 1.00, 1.01]
    head = [1.20, 1.22, 1.19, 1.21, 1.23, 1.18, 1.20, 1.95]  # one silent outlier block
    ranks, welch = S.hodges_lehmann_ratio(head, base), S.welch_ratio(head, base)
    assert ranks.low > 1.15 and welch.low < ranks.low and ranks.estimate == pytest.approx(1.2, abs=0.01)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (56, 70), (80, 80), (412, 1000)])
def test_wilson_interval_is_scipys(k: int, n: int) -> None:
    found = S.wilson_interval(k / n, n)
    expected = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert (found.low, found.high) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_newcombe_difference_matches_the_papers_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10."""
    found = S.newcombe_difference(S.wilson_interval(56 / 70, 70), S.wilson_interval(48 / 80, 80))
    assert (found.estimate, found.low, found.high) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)


def test_paired_difference_matches_scipy() -> None:
    a, b = np.array(list(KNOWN_A.values())), np.array(list(KNOWN_B.values()))
    expected = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    got = S.paired_difference(KNOWN_A, KNOWN_B)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_bca_interval_is_scipys_and_close_to_t_on_many_rounds() -> None:
    rng = np.random.default_rng(2)
    a = {r: float(v) for r, v in enumerate(0.25 * rng.lognormal(0.05, 0.03, 40))}
    b = {r: float(v) for r, v in enumerate(0.25 * rng.lognormal(0.0, 0.03, 40))}
    d = np.log(list(a.values())) - np.log(list(b.values()))
    direct = scipy_stats.bootstrap(
        (d,), np.mean, n_resamples=S.BOOTSTRAP_RESAMPLES, method="BCa", rng=np.random.default_rng(0)
    ).confidence_interval
    bca = S.paired_ratio(a, b, method="bca")
    assert (math.log(bca.low), math.log(bca.high)) == pytest.approx((direct.low, direct.high), rel=1e-12)
    t = S.paired_ratio(a, b)
    assert bca.low == pytest.approx(t.low, rel=0.01) and bca.high == pytest.approx(t.high, rel=0.01)
    with pytest.raises(ValueError, match="allowed"):
        S.paired_ratio(a, b, method="percentile")


def test_one_block_gives_no_interval() -> None:
    assert cell_estimate([0.3]).low is None
    assert S.verdict(S.paired_ratio({0: 0.3}, {0: 0.2}), MARGIN) is S.Verdict.INCONCLUSIVE
    with pytest.raises(ValueError):
        S.paired_ratio({0: 0.3}, {1: 0.2})
    with pytest.raises(ValueError):
        cell_estimate([0.3, -1.0])


# --- the verdict rule and the controls -----------------------------------------------------
@pytest.mark.parametrize(
    ("estimate", "low", "high", "expected"),
    [
        (1.20, 1.10, 1.30, S.Verdict.SLOWER),
        (0.80, 0.70, 0.90, S.Verdict.FASTER),
        (1.03, 1.01, 1.04, S.Verdict.EQUIVALENT),  # excludes 1, but inside 1 +- 5 %: equivalent
        (0.99, 0.96, 1.04, S.Verdict.EQUIVALENT),
        (1.20, 0.95, 1.45, S.Verdict.INCONCLUSIVE),  # too wide to tell: inconclusive, not equal
        (1.07, 1.03, 1.12, S.Verdict.INCONCLUSIVE),  # excludes 1, crosses 1.05: neither
        (0.96, 0.94, 0.98, S.Verdict.INCONCLUSIVE),  # 0.94 < 1 / 1.05 = 0.952
        (1.30, None, None, S.Verdict.INCONCLUSIVE),  # no interval
    ],
)
def test_four_verdicts_from_the_interval_and_the_margin(estimate, low, high, expected) -> None:
    assert S.verdict(S.Interval(estimate, low, high, 6, 0.90, "t"), MARGIN) is expected


def _comparison(low: float | None, high: float | None, verdict: S.Verdict) -> S.Comparison:
    interval = S.Interval(1.0, low, high, 3, 0.90, "t")
    return S.Comparison("a#1", "a", interval, interval, verdict, (0, 1, 2), ())


def test_control_summary_counts_false_verdicts_with_a_clopper_pearson_interval() -> None:
    V = S.Verdict
    pairs = [
        _comparison(0.98, 1.02, V.EQUIVALENT),
        _comparison(1.06, 1.2, V.SLOWER),
        _comparison(0.9, 1.1, V.INCONCLUSIVE),
        _comparison(None, None, V.INCONCLUSIVE),  # no interval: not judged
        _comparison(0.8, 0.9, V.FASTER),
    ]
    summary = S.control_summary(pairs)
    assert summary.false == (False, True, False, False, True)
    assert (summary.false_verdicts, summary.judged) == (2, 4) and summary.rate.estimate == 0.5
    exact = scipy_stats.binomtest(2, 4).proportion_ci(confidence_level=0.95, method="exact")
    assert (summary.rate.low, summary.rate.high) == pytest.approx((exact.low, exact.high))
    assert summary.rate.low == pytest.approx(0.0676, abs=1e-4) and summary.rate.high == pytest.approx(
        0.9324, abs=1e-4
    )
    assert S.control_summary([]).rate.estimate is None
    zero = S.clopper_pearson(0, 6)
    assert zero.low == 0 and zero.high == pytest.approx(1 - 0.025 ** (1 / 6))


def test_pooled_sd_weights_each_comparison_by_its_degrees_of_freedom() -> None:
    def with_logs(*logs: float) -> S.Comparison:
        c = _comparison(0.9, 1.1, S.Verdict.INCONCLUSIVE)
        return dataclasses.replace(c, log_ratios=logs)

    a, b = with_logs(0.0, 0.2, 0.4), with_logs(1.0, 1.1)  # variances 0.04 (df 2) and 0.005 (df 1)
    sd, df = S.pooled_sd([a, b, with_logs(0.3)])  # one round adds nothing
    assert df == 3 and sd == pytest.approx(math.sqrt((0.04 * 2 + 0.005 * 1) / 3))
    assert S.pooled_sd([with_logs(0.3)]) == (None, 0)


def test_kruskal_wallis_is_na_where_it_cannot_reach_its_level() -> None:
    """3 blocks of 3 samples: even perfectly separated blocks give p 0.027 (scipy's chi-square
    approximation), above the split level: n/a, never a guaranteed "no"."""
    assert S.smallest_kruskal_p([3, 3, 3]) == pytest.approx(math.exp(-3.6), rel=1e-9)  # H = 7.2, 2 df
    separated = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
    assert scipy_stats.kruskal(*separated).pvalue == pytest.approx(S.smallest_kruskal_p([3, 3, 3]))
    assert S.smallest_kruskal_p([4, 2, 3]) <= scipy_stats.kruskal([1, 2, 3, 4], [5, 6], [7, 8, 9]).pvalue

    def block(arm: str, round_: int, samples: list[float]) -> B.Block:
        return B.Block(
            round_, 0, arm, arm.split("#")[0], 0, tuple(samples), (), 0.0, 1.0, _figures(), False, ()
        )

    blocks = [block("a", r, s) for r, s in enumerate(separated)]
    (found,) = S.block_agreement(blocks, alpha=0.01)
    assert found.p_value == pytest.approx(0.0273, abs=1e-4) and found.disagree is None
    assert S.any_disagree([found]) is None
    # at a level the test can reach, the same blocks disagree; the planted arm never counts
    planted = [block("a#planted", r, [x * 1.1 for x in s]) for r, s in enumerate(separated)]
    (reachable,) = S.block_agreement(blocks + planted, alpha=0.05)
    assert reachable.disagree is True and reachable.smallest_p == found.smallest_p


def test_between_block_disagreement_is_flagged() -> None:
    rng = np.random.default_rng(1)

    def block(cell: str, round_: int, level: float) -> B.Block:
        samples = tuple((level * rng.lognormal(0, 0.01, 6)).tolist())
        return B.Block(round_, 0, cell, cell, 0, samples, (), 0.0, 1.0, _figures(), False, ())

    steady = [block("a", r, 0.25) for r in range(4)]
    shifting = [block("b", r, 0.25 * (1 + 0.1 * r)) for r in range(4)]
    found = {agreement.cell: agreement for agreement in S.block_agreement(steady + shifting)}
    assert not found["a"].disagree and found["a"].p_value > 0.05
    assert found["b"].disagree and found["b"].p_value < 0.001


def test_analyse_group_on_the_fake_machine() -> None:
    cells = {
        "pytorch/autograd": 0.20,
        "pytorch/explicit": 0.20,
        "chainer/autograd": 0.40,
        "chainer/explicit": 0.40,
    }
    blocks = run_group(cells, rounds=S.SIMULATED_ROUNDS, seed=11)
    pairs = [("chainer/autograd", "pytorch/autograd"), ("pytorch/explicit", "pytorch/autograd")]
    analysis = S.analyse_group(blocks, pairs, ["pytorch/autograd"], None, MARGIN, DECISION_LEVEL)
    framework, loss = analysis.comparisons
    assert framework.verdict is S.Verdict.SLOWER and framework.ratio.low < 2.0 < framework.ratio.high
    assert loss.verdict is not S.Verdict.SLOWER and loss.verdict is not S.Verdict.FASTER
    (control,) = analysis.controls
    assert control.verdict in (S.Verdict.EQUIVALENT, S.Verdict.INCONCLUSIVE) and analysis.planted is None
    assert analysis.disagree  # the fake's 3 % per-process effect exceeds its 2 % within-block noise
    assert control.a == B.twin("pytorch/autograd") == "pytorch/autograd#1"
    assert analysis.rounds == S.SIMULATED_ROUNDS and 0 < analysis.sd_log < 0.2
    assert analysis.detectable == pytest.approx(
        minimum_detectable_ratio(analysis.sd_log, S.SIMULATED_ROUNDS, MARGIN, DECISION_LEVEL)
    )
    json.dumps(dataclasses.asdict(analysis), allow_nan=False)  # strict JSON, verdicts as strings


# --- printing precision -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "half_width", "text"),
    [
        (0.253456, 0.0123, "0.253 ± 0.012"),
        (0.253456, 0.0996, "0.25 ± 0.10"),  # 0.0996 rounds up to 0.10: one decimal fewer
        (12345.6, 234.0, "12350 ± 230"),
        (1.23456, 0.5, "1.23 ± 0.50"),
        (-0.01234, 0.0041, "-0.0123 ± 0.0041"),
        (0.25, 0.0, "0.250 ± 0.000"),  # no spread at all: three significant digits of the value
        (1.9999999999999998, 2.2e-16, "2.00 ± 0.00"),  # a float64 rounding error is no spread either
    ],
)
def test_round_to_interval(value: float, half_width: float, text: str) -> None:
    assert str(S.round_to_interval(value, half_width)) == text


def test_format_interval_uses_the_intervals_precision() -> None:
    assert (
        S.format_interval(S.Interval(0.2534, 0.2411, 0.2662, 6, 0.95, "t"), 1e3, "ms") == "253 [241, 266] ms"
    )
    assert S.format_interval(S.Interval(1.0132, 0.9981, 1.0285, 6, 0.95, "t")) == "1.013 [0.998, 1.028]"
    assert S.format_interval(S.Interval(0.25, None, None, 1, 0.95, "one")) == "0.25 (no interval)"
    with pytest.raises(ValueError):
        S.round_to_interval(1.0, -0.1)


# --- the whole rule on the fake machine ------------------------------------------------------
@pytest.mark.slow
def test_rule_false_positive_rate_and_power_on_a_drifting_machine() -> None:
    """1,000 simulated groups of identical arms and 1,000 with b 10 % slower, each run through
    the schedule, the runner, the disturbed-block filter and the verdict at the defaults."""
    false_positive_rate, _ = rule_rates(effect=0.0, trials=1000, seed=1)
    _, power = rule_rates(effect=0.10, trials=1000, seed=2)
    print(
        f"rounds {S.SIMULATED_ROUNDS}, repeats {S.SIMULATED_REPEATS}, margin {MARGIN}: "
        f"A/A false-verdict rate {false_positive_rate:.3f}, power at 10 % {power:.3f}"
    )
    # The four verdicts on this simulated machine (3 % per-process noise, which the real hosts
    # exceed: the simulation is being recalibrated on measured noise) gave 0.000 and 0.667: a 10 %
    # effect must clear 1.05 with the whole interval, which 8 rounds of this noise often miss.
    assert false_positive_rate <= 0.05
    assert power >= 0.60
