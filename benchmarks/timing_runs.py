"""Two timing runs of one machine side by side: the verdict of every comparison in each, the
contradictions between them, the share decided, the controls, and where each run's time went.

    python benchmarks/timing_runs.py RESULTS_A RESULTS_B [--cost-a DIR --cost-b DIR]

RESULTS_* are `results/time` folders of two runs of the same parameters (for instance the first
run archived before `snakemake --forcerun time` wrote the second). A *contradiction* is a reversal
(slower in one run, faster in the other) or a difference in one run against equivalence in the
other; decided-versus-inconclusive flips are counted apart, since they are what noise does to a
comparison near a boundary. Verdicts use each group's own recorded design (margin, per-look
level), as the report does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeppose.compare_stats import clopper_pearson, compare, format_interval  # noqa: E402
from deeppose.grid import Group  # noqa: E402
from deeppose.measure.blocks import PLANTED, Arm, planted, twin  # noqa: E402
from deeppose.records.timing import TimingResult  # noqa: E402
from deeppose.verdicts import Verdict  # noqa: E402


def load_groups(folder: Path) -> dict[str, list[TimingResult]]:
    """Batch exponent label (`cpu/b3`) -> the group's results."""
    groups: dict[str, list[TimingResult]] = {}
    for path in sorted(folder.glob("*/*/*/b*.json")):
        result = TimingResult.read(path)
        groups.setdefault(f"{result.job.device}/b{result.job.batch_exp}", []).append(result)
    return groups


def verdicts(results: list[TimingResult]) -> dict[str, tuple[Verdict, str]]:
    """Every comparison of one group, its controls included, by the report's rule
    (deeppose.compare_stats.compare): name -> (verdict, its ratio and interval as printed)."""
    first = results[0]
    blocks = [b for r in results for b in (*r.blocks, *r.control_blocks, *r.planted_blocks)]
    frameworks = tuple(dict.fromkeys(r.job.framework for r in results))
    losses = tuple(dict.fromkeys(r.job.loss for r in results))
    group = Group(first.job.device, first.job.batch_exp, frameworks, losses)
    pairs = list(group.comparisons())
    pairs += [(twin(cell), cell) for cell in first.controls]
    if first.planted_cell:
        pairs.append((planted(first.planted_cell), first.planted_cell))
    found = {}
    for a, b in pairs:
        found_pair = compare(blocks, a, b, first.design.margin, first.design.decision_level)
        found[f"{a} / {b}"] = (found_pair.verdict, format_interval(found_pair.ratio))
    return found


def control_of(name: str) -> str | None:
    """What a comparison named `a / b` (verdicts' keys) controls: "aa" for an A/A twin against its
    cell, "planted" for the positive control, None for a comparison of cells."""
    replica = Arm.parse(name.split(" / ")[0]).replica
    return "planted" if replica == PLANTED else "aa" if replica else None


def proportion(k: int, n: int) -> str:
    """k of n with its exact interval (deeppose.compare_stats.clopper_pearson)."""
    if n == 0:
        return "n/a"
    rate = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.1%} [{rate.low:.1%}, {rate.high:.1%}]"


def timed_share(folder: Path, cost: Path | None) -> str:
    """Seconds inside timed runs (every turn and loss run of every block) against the stage's wall time."""
    timed = 0.0
    for path in folder.glob("*/*/*/b*.json"):
        result = TimingResult.read(path)
        for block in (*result.blocks, *result.control_blocks, *result.planted_blocks):
            timed += (
                sum(block.samples_s)
                + sum(block.loss_s)
                + sum(sum(v) for v in block.optimizer_steps_s.values())
            )
    if cost is None:
        return f"timed runs {timed:.0f} s"
    wall = sum(json.loads(p.read_text())["wall_s"] for p in cost.glob("**/*.json"))
    return f"timed runs {timed:.0f} s of the stage's {wall:.0f} s wall time ({timed / wall:.0%})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--cost-a", type=Path, help="results/cost/time of run A")
    parser.add_argument("--cost-b", type=Path, help="results/cost/time of run B")
    args = parser.parse_args()
    runs = [load_groups(args.a), load_groups(args.b)]
    flips: Counter[str] = Counter()
    contradictions = []
    decided = [0, 0]
    total = 0
    null_false = [0, 0]
    null_n = [0, 0]
    near_null = [0, 0]
    near_n = [0, 0]
    planted_found = [0, 0]
    planted_n = [0, 0]
    for label in sorted(set(runs[0]) & set(runs[1])):
        found = [verdicts(run[label]) for run in runs]
        for name in found[0]:
            va, vb = found[0][name][0], found[1][name][0]
            control = control_of(name)
            if control is None:
                total += 1
                decided[0] += va.decided
                decided[1] += vb.decided
            for i, v in enumerate((va, vb)):
                if control == "aa":
                    null_n[i] += 1
                    null_false[i] += v in (Verdict.SLOWER, Verdict.FASTER)
                elif control == "planted":
                    planted_n[i] += 1
                    planted_found[i] += v is Verdict.SLOWER
                elif "/explicit / " in name and name.split("/")[0] == name.split(" / ")[1].split("/")[0]:
                    near_n[i] += 1
                    near_null[i] += v in (Verdict.SLOWER, Verdict.FASTER)
            differs = {Verdict.SLOWER, Verdict.FASTER}
            if (
                {va, vb} == differs
                or (va in differs and vb is Verdict.EQUIVALENT)
                or (vb in differs and va is Verdict.EQUIVALENT)
            ):
                contradictions.append(
                    f"{label} {name}: {va.value} {found[0][name][1]} / {vb.value} {found[1][name][1]}"
                )
            elif va.decided != vb.decided:
                flips["decided/inconclusive"] += 1
            print(f"{label:7} {name:48} {va.value:12} {vb.value:12}")
    print()
    print(
        f"comparisons per run: {total}; decided: A {decided[0]} ({decided[0] / total:.0%}), B {decided[1]} ({decided[1] / total:.0%})"
    )
    print(f"contradictions: {len(contradictions)}" + "".join(f"\n  {c}" for c in contradictions))
    print(f"decided in one run, inconclusive in the other: {flips['decided/inconclusive']}")
    print(f"A/A twins called different, both runs pooled: {proportion(sum(null_false), sum(null_n))}")
    print(
        f"explicit/autograd (near-A/A) called different: A {near_null[0]}/{near_n[0]}, B {near_null[1]}/{near_n[1]}"
    )
    print(
        f"planted control found (slower): A {planted_found[0]}/{planted_n[0]}, B {planted_found[1]}/{planted_n[1]}"
    )
    print(f"run A: {timed_share(args.a, args.cost_a)}")
    print(f"run B: {timed_share(args.b, args.cost_b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
