"""deeppose.measure.blocks and deeppose.compare_stats: the schedule, the disturbed-block detector,
intervals against scipy, the four verdicts, the controls, the between-block test and the precision
helper (the round runner and live arms: tests/test_turns.py; the stopping rule's simulation on a
machine calibrated on measured noise: tests/test_timing.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter

import numpy as np
import pytest
from scipy import stats as scipy_stats
from simulated_machine import block, quiet_figures, run_group

from deeppose import compare_stats as S
from deeppose.measure import blocks as B
from deeppose.records.timing import BlockInterference, BlockRecord
from deeppose.stats import cell_estimate
from deeppose.verdicts import DECISION_LEVEL, minimum_detectable_ratio

MARGIN = 0.05  # params.yaml's timing.margin


# --- the schedule -------------------------------------------------------------------------
def test_schedule_interleaves_every_arm_once_per_round_in_seeded_random_orders() -> None:
    cells = ["pytorch/autograd", "pytorch/explicit", "chainer/autograd", "chainer/explicit"]
    arms = [B.Arm(cell) for cell in cells] + [
        B.Arm("chainer/explicit", 1),
        B.Arm("pytorch/autograd", B.PLANTED),
    ]
    assert [a.name for a in arms][-2:] == ["chainer/explicit#1", "pytorch/autograd#planted"]
    assert B.cell_of(arms[-1].name) == "pytorch/autograd" and B.planted("x/y") == "x/y#planted"
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
    firsts = Counter(s.arm.name for s in B.schedule(arms, rounds=60, seed=3) if s.position == 0)
    assert len(firsts) == len(arms)  # every arm leads some round


def test_schedule_and_arms_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        B.schedule([B.Arm("a")], rounds=0, seed=0)
    with pytest.raises(ValueError):
        B.schedule([B.Arm("a"), B.Arm("a")], rounds=1, seed=0)


@pytest.mark.parametrize(
    "arm", [B.Arm("pytorch/autograd"), B.Arm("chainer/explicit", 1), B.Arm("jax/autograd", B.PLANTED)]
)
def test_an_arms_name_parses_back_to_the_arm(arm: B.Arm) -> None:
    assert B.Arm.parse(arm.name) == arm
    assert B.cell_of(arm.name) == arm.cell


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
    """Own CPU time is counted in clock ticks (10 ms): a fixed amount of work took under one tick on
    a Zen 5 and read as none, so the work here runs until 50 ms are counted (or 5 s have passed,
    when the reading would be broken)."""
    before = B.read_cpu()
    deadline = time.monotonic() + 5
    while B.read_cpu().own_s - before.own_s < 0.05 and time.monotonic() < deadline:
        sum(i * i for i in range(10_000))
    after = B.read_cpu()
    figures = B.interference(before, after, os.getloadavg(), os.cpu_count() or 1)
    assert after.machine_busy_s >= before.machine_busy_s and figures.own_s > 0
    assert figures.other_cpu_s >= 0 and figures.wall_s > 0


@pytest.mark.parametrize(
    ("samples", "figures", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], quiet_figures(), ()),
        ([1.0, 1.0, 1.0, 1.3], quiet_figures(), ("outlier",)),
        ([0.8, 0.9, 1.1, 1.2], quiet_figures(), ("spread",)),
        ([1.0, 1.0, 1.0, 1.0], quiet_figures(other_cores=0.5), ("other processes",)),
        ([1.0, 1.0, 1.0, 1.0], quiet_figures(load=3.5), ()),  # recorded, but our own last block is in it
    ],
)
def test_disturbance_reasons(
    samples: list[float], figures: BlockInterference, expected: tuple[str, ...]
) -> None:
    assert tuple(r.split(":")[0] for r in B.disturbance_reasons(samples, figures)) == expected


def test_a_disturbed_round_is_left_out_of_both_arms() -> None:
    blocks = [block("a", r, [1.0 + 0.01 * r]) for r in range(4)] + [
        block("b", r, [1.2 + 0.01 * r]) for r in range(4)
    ]
    blocks[6] = block("b", 2, [5.0], reasons=("other processes: 0.90 CPU s in 1.00 s (0.90 cores > 0.1)",))
    blocks[1] = block("a", 1, [1.01], reasons=("spread: IQR/median 0.20 > 0.1",))  # noisy on its own: counts
    result = S.compare(blocks, "b", "a", MARGIN, DECISION_LEVEL)
    assert result.rounds_used == (0, 1, 3) and result.rounds_dropped == (2,)
    assert result.verdict is S.Verdict.SLOWER and result.ratio.n == 3 and result.ratio.level == DECISION_LEVEL
    assert len(result.log_ratios) == 3
    one = S.compare(blocks[:1] + blocks[4:5], "b", "a", MARGIN, DECISION_LEVEL)
    assert one.verdict is S.Verdict.INCONCLUSIVE and one.ratio.low is None  # one round: no interval
    nothing = S.compare(blocks[2:3] + blocks[6:7], "b", "a", MARGIN, DECISION_LEVEL)  # its round disturbed
    assert nothing.verdict is S.Verdict.INCONCLUSIVE and nothing.ratio.estimate is None
    assert S.format_interval(nothing.ratio) == "n/a (no usable block)"


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

    def levelled(cell: str, round_: int, level: float) -> BlockRecord:
        return block(cell, round_, (level * rng.lognormal(0, 0.01, 6)).tolist())

    steady = [levelled("a", r, 0.25) for r in range(4)]
    shifting = [levelled("b", r, 0.25 * (1 + 0.1 * r)) for r in range(4)]
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
    assert analysis.disagree in (True, False, None)  # the simulated machine's process effect is small
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
