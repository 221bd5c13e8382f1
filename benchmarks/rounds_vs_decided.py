"""What each extra round bought in one timing run: the run replayed as if it had stopped after k
rounds, for every k up to what it ran, with the comparisons decided at k and the wall time the
groups had used by then.

    python benchmarks/rounds_vs_decided.py RESULTS_TIME

RESULTS_TIME is a `results/time` folder. Verdicts use each group's recorded margin and per-look
level (deeppose.compare_stats.compare, as the report does), so a row is what a design with a cap of
k rounds would have printed on the same measurements; a group that stopped before k keeps its own
rounds. The wall time of a round is from its first block's start to its last block's end, retries
included; set-up before the first round (server start, imports) is not in it. This is the trade
the timing issue's two targets (decided share, wall time) pull apart on.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing_runs import control_of, load_groups, verdicts  # noqa: E402

from deeppose.records.timing import BlockRecord, TimingResult  # noqa: E402
from deeppose.verdicts import Verdict  # noqa: E402


def first_rounds(result: TimingResult, k: int) -> TimingResult:
    """The result as if its group had run rounds 0..k-1 only."""

    def keep(blocks: tuple[BlockRecord, ...]) -> tuple[BlockRecord, ...]:
        return tuple(b for b in blocks if b.round < k)

    return dataclasses.replace(
        result,
        blocks=keep(result.blocks),
        control_blocks=keep(result.control_blocks),
        planted_blocks=keep(result.planted_blocks),
    )


def round_walls(results: list[TimingResult]) -> dict[int, float]:
    """Round -> seconds from its first block's start to its last block's end, retries included."""
    spans: dict[int, list[float]] = defaultdict(list)
    for r in results:
        for b in (*r.blocks, *r.control_blocks, *r.planted_blocks):
            spans[b.round] += [b.started_at, b.ended_at]
    return {round_: max(times) - min(times) for round_, times in spans.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    groups = load_groups(args.results)
    if not groups:
        print(f"{args.results}: no timing results (*/*/*/b*.json)", file=sys.stderr)
        return 2
    most = max(len({b.round for r in rs for b in r.blocks}) for rs in groups.values())
    first = min(r.design.first_rounds for rs in groups.values() for r in rs)
    print(f"{'rounds':>6} {'decided':>14} {'A/A different':>14} {'planted found':>14} {'wall s':>7}")
    for k in range(max(first, 2), most + 1):
        decided = total = null_false = null_n = found = planted_n = 0
        wall = 0.0
        for results in groups.values():
            cut = [first_rounds(r, k) for r in results]
            wall += sum(w for round_, w in round_walls(results).items() if round_ < k)
            for name, (verdict, _) in verdicts(cut).items():
                control = control_of(name)
                if control == "aa":
                    null_n += 1
                    null_false += verdict in (Verdict.SLOWER, Verdict.FASTER)
                elif control == "planted":
                    planted_n += 1
                    found += verdict is Verdict.SLOWER
                else:
                    total += 1
                    decided += verdict.decided
        print(
            f"{k:>6} {f'{decided}/{total} ({decided / total:.0%})':>14} {f'{null_false}/{null_n}':>14} "
            f"{f'{found}/{planted_n}':>14} {wall:>7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
