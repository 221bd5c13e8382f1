"""Where the timing noise is on this machine: runs in one process, fresh processes seconds apart,
two live processes taking turns run by run, and rounds minutes apart (Kalibera & Jones,
"Rigorous benchmarking in reasonable time", 2013).

    python benchmarks/noise.py                       # PyTorch and Chainer at batch 2 and 16, 3 rounds
    python benchmarks/noise.py --exps 3 --rounds 4 --out benchmarks/archive/<date>-noise

In each round every configuration (framework x batch size, in a seeded random order, so that
rounds are minutes apart) runs once in a fresh worker process that has imported the framework
and built the batch and weights, and forks from there (as the timing stage's block server does):

* `sequential`: `--processes` fresh processes one after another, `--runs` timed runs each after
  one untimed run: the spread of runs within a process and of process medians seconds apart;
* `turns`: two live processes of the same cell (an A/A pair) taking turns run by run in ABBA
  order: the spread of the pair's log ratio when its runs are seconds apart, and the CPU time
  the waiting process used while the other ran (spinning threads).

Every figure is a standard deviation of natural-log times (0.05 is about 5 %), with the number of
values it rests on. Output: a JSON file of every raw sample and the summary, and the summary on
stdout. Run it on a quiet machine: it measures the machine as much as the frameworks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- worker: one configuration of one round, in its own process ----------------------------
def worker(
    framework: str, exp: int, processes: int, runs: int, turns: int, params_path: str
) -> dict[str, Any]:
    from deeppose.backends import backend_class
    from deeppose.config import load_params
    from deeppose.core import core_data, core_inputs
    from deeppose.grid import Job
    from deeppose.measure import allocator
    from deeppose.measure.harness import measure
    from deeppose.measure.turns import LiveArm, alternating_order

    params = load_params(params_path)
    allocator.pin(params.allocator.mmap_threshold_mib)
    backend_class(framework)  # the import, before any fork
    data = core_data(params, exp, synthetic=True)
    job = Job(framework, "autograd", "cpu", exp)

    class Core:
        """The core process of the cell in a live child, one timed run per turn."""

        def __init__(self) -> None:
            backend, (images, targets, visible) = core_inputs(params, job, True, data)
            self.backend = backend
            self.core = lambda: backend.forward_backward(images, targets, visible, "autograd")
            backend.zero_grad()
            self.core()  # the untimed first run, as the timing stage's

        def run(self) -> float:
            backend = self.backend
            timed = measure(self.core, repeats=1, setup=backend.zero_grad, sync=backend.synchronize)
            return timed.samples_s[0]

        def finish(self) -> dict[str, Any]:
            return {}

    sequential = []
    for _ in range(processes):
        arm = LiveArm(Core)
        sequential.append([arm.turn().seconds for _ in range(runs)])
        arm.finish()
    pair = [LiveArm(Core), LiveArm(Core)]
    taken: list[list[dict[str, float]]] = [[], []]
    for index in alternating_order([0, 1], turns):
        taken[index].append(dataclasses.asdict(pair[index].turn()))
    for arm in pair:
        arm.finish()
    return {"sequential": sequential, "turns": taken}


# --- analysis ---------------------------------------------------------------------------------
def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def _pooled_within(groups: list[list[float]]) -> float | None:
    """Pooled standard deviation within groups (each centred on its own mean)."""
    ss = sum(sum((v - statistics.fmean(g)) ** 2 for v in g) for g in groups if len(g) >= 2)
    df = sum(len(g) - 1 for g in groups if len(g) >= 2)
    return math.sqrt(ss / df) if df else None


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration: the noise at each level, as SDs of log times, and the pair SDs."""
    by_config: dict[str, list[dict[str, Any]]] = {}
    for entry in rounds:
        by_config.setdefault(entry["config"], []).append(entry)
    summary = {}
    for config, entries in by_config.items():
        logs = [[[math.log(s) for s in process] for process in e["sequential"]] for e in entries]
        process_medians = [[statistics.median(p) for p in rnd] for rnd in logs]
        runs_within = _pooled_within([p for rnd in logs for p in rnd])
        processes_within_round = _pooled_within(process_medians)
        round_means = [statistics.fmean(m) for m in process_medians]
        # pairs: two fresh processes seconds apart (neighbours), and one process position a round apart
        neighbours = [rnd[i + 1] - rnd[i] for rnd in process_medians for i in range(len(rnd) - 1)]
        rounds_apart = [
            process_medians[r + 1][0] - process_medians[r][0] for r in range(len(process_medians) - 1)
        ]
        turn_pairs = []
        run_pairs = []
        waiting_cores = []
        for e in entries:
            a, b = ([math.log(t["s"]) for t in side] for side in e["turns"])
            turn_pairs.append(statistics.median(a) - statistics.median(b))
            run_pairs += [x - y for x, y in zip(a, b)]
            waiting_cores += [
                t["waiting_cpu_s"] / t["waiting_s"]
                for side in e["turns"]
                for t in side[1:]
                if t["waiting_s"] > 0
            ]
        mean_run_s = statistics.fmean(s for e in entries for p in e["sequential"] for s in p)
        summary[config] = {
            "mean_run_s": mean_run_s,
            "sd_runs_within_process": runs_within,
            "sd_process_medians_within_round": processes_within_round,
            "sd_round_means": _sd(round_means),
            "rms_pair_fresh_processes_seconds_apart": _rms(neighbours),
            "rms_pair_one_process_rounds_apart": _rms(rounds_apart),
            "rms_pair_live_turns": _rms(turn_pairs),
            "rms_pair_run_by_run": _rms(run_pairs),
            "waiting_side_cores_mean": statistics.fmean(waiting_cores) if waiting_cores else None,
            "waiting_side_cores_max": max(waiting_cores) if waiting_cores else None,
            "n": {
                "rounds": len(entries),
                "processes_per_round": len(logs[0]),
                "runs_per_process": len(logs[0][0]),
                "neighbour_pairs": len(neighbours),
                "turn_pairs": len(turn_pairs),
            },
        }
    return summary


def _rms(differences: list[float]) -> float | None:
    """Root mean square of paired log differences: the spread of a pair's log ratio when the two
    members measure the same thing (its mean is 0 in expectation, so it is not subtracted)."""
    return math.sqrt(statistics.fmean(d * d for d in differences)) if differences else None


def print_summary(summary: dict[str, Any]) -> None:
    keys = [
        ("sd_runs_within_process", "runs within a process"),
        ("sd_process_medians_within_round", "process medians, seconds apart"),
        ("sd_round_means", "round means, minutes apart"),
        ("rms_pair_fresh_processes_seconds_apart", "pair: two fresh processes seconds apart"),
        ("rms_pair_live_turns", "pair: two live processes taking turns"),
        ("rms_pair_one_process_rounds_apart", "pair: one slot, rounds apart"),
        ("rms_pair_run_by_run", "pair: single runs, turn by turn"),
        ("waiting_side_cores_mean", "waiting side: cores used (mean)"),
        ("waiting_side_cores_max", "waiting side: cores used (max)"),
    ]
    configs = list(summary)
    print(f"{'SD of log time':42}" + "".join(f"{c:>16}" for c in configs))
    print(f"{'mean run (s)':42}" + "".join(f"{summary[c]['mean_run_s']:>16.3f}" for c in configs))
    for key, label in keys:
        row = [summary[c][key] for c in configs]
        print(f"{label:42}" + "".join(f"{'-' if v is None else f'{v:.3f}':>16}" for v in row))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["pytorch", "chainer"])
    parser.add_argument("--exps", nargs="+", type=int, default=[1, 4], help="batch size exponents")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per round, in sequence")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per process")
    parser.add_argument("--turns", type=int, default=6, help="runs per live process taking turns")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", type=Path, default=None, help="folder for noise.json")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "EXP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, exp = args.worker[0], int(args.worker[1])
        print(json.dumps(worker(framework, exp, args.processes, args.runs, args.turns, args.params)))
        return 0
    configs = [(fw, exp) for fw in args.frameworks for exp in args.exps]
    rng = np.random.Generator(np.random.PCG64(0))
    rounds = []
    started = time.time()
    for r in range(args.rounds):
        for i in rng.permutation(len(configs)):
            fw, exp = configs[int(i)]
            command = [sys.executable, __file__, "--worker", fw, str(exp)]
            command += [
                "--processes",
                str(args.processes),
                "--runs",
                str(args.runs),
                "--turns",
                str(args.turns),
            ]
            command += ["--params", args.params]
            begun = time.time()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            entry = json.loads(done.stdout.strip().splitlines()[-1])
            rounds.append({"config": f"{fw}/b{exp}", "round": r, "started_at": begun, **entry})
            print(f"round {r} {fw}/b{exp}: {time.time() - begun:.0f} s", file=sys.stderr, flush=True)
    summary = summarise(rounds)
    print_summary(summary)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        record = {
            "command": " ".join(sys.argv),
            "cpu": cpu,
            "cores": os.cpu_count(),
            "wall_s": time.time() - started,
            "summary": summary,
            "rounds": rounds,
        }
        (args.out / "noise.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
