"""Render second: the report's sections in the study's order, each a pure function of `Findings`
and of the names of the figures drawn. Nothing here computes a number; fixed text explains methods."""

from __future__ import annotations

import json
from typing import Any

from deeppose.compare_stats import COMPARE_LEVEL, THRESHOLD, Interval, format_interval
from deeppose.report import fmt
from deeppose.report.analysis import (
    ABOUT_ONE, AGREE_WITHIN, CONFIRM_SHARE, LEVEL, REFERENCE, Bound, Device, Findings, LayerVerdict, StudyVerdict,
)
from deeppose.report.fmt import MISSING, framework_name as name, join_words
from deeppose.timing_block import LOSS_REPEATS

CI, COMPARE_CI = f"{round(LEVEL * 100)} % CI", f"{round(COMPARE_LEVEL * 100)} % CI"
SEE_SUMMARY = "see *Jobs without results* in the Summary"
MS = 1e-3  # a column in milliseconds
METRICS = {"loss": "test loss", "pcp": "PCP@0.5", "pdj": "PDJ@0.2", "pck": "PCK@0.2"}


def _figure(figures: set[str], file: str, alt: str) -> str:
    return f"![{alt}](figures/{file})" if file in figures else ""


def _join(parts: list[str]) -> str:
    return "\n\n".join(p for p in parts if p)


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value as written in the file) rows; long lists of objects counted."""
    if isinstance(data, dict) and data:
        return [row for k, v in data.items() for row in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list) and len(data) > 3 and all(isinstance(item, dict) for item in data):
        return [(f"`{prefix}`", f"{len(data)} entries (see the file)")]
    return [(f"`{prefix}`", json.dumps(data, sort_keys=True) if isinstance(data, (dict, list, bool)) or data is None
             else str(data))]


def _missing(d: Device, kind: str, what: str) -> str:
    missing, jobs = d.missing[kind], d.jobs[kind]
    if not missing:
        return ""
    if missing == jobs:
        return f"No {what} result on {d.device} ({jobs} jobs): {SEE_SUMMARY}."
    return f"{missing} of {jobs} {what} jobs on {d.device} have no usable result: {SEE_SUMMARY}."


def _score(metric: str, value: Interval) -> str:
    if value.low is None:
        return fmt.sig(value.estimate) if metric == "loss" else fmt.percent(value.estimate)
    return format_interval(value) if metric == "loss" else format_interval(value, 100, "%")


# --- 1. set-up -------------------------------------------------------------------------------
def setup(f: Findings, figures: set[str]) -> str:
    s, raw = f.setup, f.setup.params
    train, model, timing = raw["train"], raw["model"], raw["timing"]
    optimiser = train["optimizer"] + (f" (lr {train['lr']}, momentum {train['momentum']})"
                                      if train["optimizer"] == "momentum_sgd" else f" (lr {train['lr']})")
    parts = ["### Parameters", (
        f"Data: {raw['data']['source']}, seed {raw['seed']}. Training: {train['epochs']} epochs at batch "
        f"{train['batch_size']}, {optimiser}, dropout {model['dropout']}, LRN {'on' if model['lrn'] else 'off'}, "
        f"augmentation {'on' if train['augment'] else 'off'}, evaluation every {train['eval_every']} epoch(s). Timing: "
        f"{timing['blocks']} blocks of {timing['repeats']} timed runs after {timing['warmup']} warm-up runs at batch "
        f"sizes {', '.join(map(str, f.batch_sizes))}. Threads: {train['threads'] or 'all cores'} (training), "
        f"{timing['threads'] or 'all cores'} (timing)."),
        _details(f"Every parameter of `{s.params_path}`", fmt.table(["parameter", "value"], _flatten(raw))), "### Data"]
    if s.prepared:
        p = s.prepared
        reasons = ", ".join(f"{r}: {n}" for r, n in p["dropped"]["by_reason"].items() if n)
        parts += [fmt.escape(f"Prepared data: source {p['source']}; kept train {p['kept']['train']}, test "
                             f"{p['kept']['test']}; dropped {p['dropped']['total']}" + (f" ({reasons})" if reasons else "")
                             + f"; content hash `{p['sha256'][:16]}…`."),
                  _details("Every field of the data summary", fmt.table(["field", "value"], _flatten(p)))]
    else:
        parts.append(f"No data summary: {s.prepared_missing}.")
    parts += [f"![Samples of the prepared training data]({s.preview})" if s.preview else "", "### Environment",
              "As recorded in each framework's largest timing result (else its training result)."]
    rows = [[name(e.framework), e.device, e.cpu or MISSING,
             " ".join(f"{k.replace('_number', '')} {v}" for k, v in e.cpu_id.items()) or MISSING, e.usable_cores or MISSING, e.cores or MISSING,
             e.gpu or MISSING, e.python or MISSING, e.version or MISSING,
             ", ".join(f"{k} {v}" for k, v in sorted(e.libraries.items())) or MISSING,
             ", ".join(f"{k} {v}" for k, v in e.threads.items()) or MISSING] for e in s.environment]
    parts.append(fmt.table(["framework", "device", "CPU", "CPU vendor, family, model, stepping", "usable cores", "cores",
                            "GPU", "Python", "framework version", "other libraries", "threads (per pool)"], rows,
                           right=(4, 5)))
    commits = join_words([f"`{c}`" for c in s.commits])
    parts.append(_bullets([f"Packages: {', '.join(f'{k} {v}' for k, v in s.packages.items()) or MISSING}.",
                           f"Project commit of the results: {commits}" + (" (different commits)" if len(s.commits) > 1
                           else "") + ("; `+dirty`: tracked files had uncommitted changes" if "dirty" in commits else "")
                           + "."]))
    parts += ["### Machine ceilings", _ceilings(f)]
    for fair in s.fairness:
        rows = [[name(fw), *(json.dumps(c.get(k)) if isinstance(c.get(k), bool) else c.get(k, MISSING)
                             for k in FAIRNESS), ", ".join(f"{k} {v}" for k, v in sorted(fair.env[fw].items())) or "none"]
                for fw, c in fair.common.items()]
        found = [f"`{field}`: " + "; ".join(f"{name(fw)} {json.dumps(v) if not isinstance(v, str) else v}"
                                            for fw, v in values.items()) + f" (may bias: {bias})"
                 for field, values, bias in fair.asymmetries]
        parts += [f"#### What the timing processes ran with on {fair.device}",
                  f"CPU: {fair.cpu}; ISA flags: {', '.join(fair.isa_flags) or MISSING}.",
                  fmt.table(["framework", *FAIRNESS, "steering variables"], rows),
                  f"{len(found)} asymmetr{'y' if len(found) == 1 else 'ies'} between the frameworks' processes:"
                  if found else "No asymmetry between the frameworks' processes.", _bullets(found)]
    rows = [[f"`{c.stage}`", f"{c.recorded} of {c.jobs}", f"{c.wall_s:.0f}" if c.recorded else MISSING,
             f"{c.startup_s:.1f}" if c.recorded else MISSING,
             f"{c.memory_bytes / 2**30:.1f}" if c.memory_bytes else MISSING] for c in s.costs]
    rows.append(["all of the above", str(sum(c.recorded for c in s.costs)), f"**{sum(c.wall_s for c in s.costs):.0f}**",
                 "", ""])
    parts += ["### What this run cost", fmt.table(["stage", "jobs recorded", "wall time (s)", "of which start-up (s)",
                                                   "peak memory (GiB)"], rows, right=(2, 3, 4)),
              "Each job's own record (`results/cost/`), written when the job succeeds: wall time from process start "
              "to its output, and peak resident memory. Not included: installing the environment, the workflow "
              "engine and this report. Jobs that another run measured keep that run's figures."]
    return _join(parts)


FAIRNESS = ("dtype", "threads", "kernel_library", "kernel_isa", "fp32_math", "runtime_checks", "optimizer_kernel")
NOT_MEASURED = "not measured by this run"


def _ceilings(f: Findings) -> str:
    p = f.setup.peak
    if p.missing:
        return f"No measured peak: {p.missing}."
    kernels = ", ".join(f"{k.replace('_', ' ')} {fmt.flops(v)}" for k, v in p.kernels.items() if v)
    how, band = p.theoretical_how or {}, p.bandwidth_detail or {}
    llc = band.get("last_level_cache_bytes")
    rows = [["best observed kernel rate (fp32)", fmt.flops(p.best_observed),
             f"the best of standard kernels at n = {p.n} ({kernels}); the denominator of every \"% of peak\""],
            ["theoretical fp32 peak", fmt.flops(p.theoretical) if p.theoretical else NOT_MEASURED,
             f"{how.get('cpu_model')}: {how.get('how')}"],
            ["memory bandwidth", fmt.flops(p.bandwidth, "B/s") if p.bandwidth else NOT_MEASURED,
             f"STREAM triad a = b + s·c over arrays of {band.get('n')} floats (3 x 4 bytes moved per element)"
             + (f", each at least 4x the last-level cache ({llc / 2**20:.0f} MiB)" if llc else "")
             if p.bandwidth else "STREAM triad in the `peak` stage"],
            ["ridge point (compute / bandwidth)", f"{fmt.sig(p.ridge)} FLOP/byte" if p.ridge else MISSING,
             "layers of lower arithmetic intensity are held back by memory, not arithmetic"]]
    text = fmt.table(["ceiling", "value", "how"], rows, right=(1,))
    if p.implied_clock_hz:
        text += (f"\n\nThe best observed kernel rate exceeds the theoretical peak at the reported clock "
                 f"({fmt.sig(how['clock_hz'] / 1e9)} GHz): the cores run faster than the clock the kernel (here a "
                 f"hypervisor) reports. The observed rate implies at least {fmt.sig(p.implied_clock_hz / 1e9)} GHz "
                 f"({fmt.flops(p.best_observed)} / ({how['cores']} cores x {how['flops_per_cycle_per_core']} FLOP "
                 "per cycle)); no share of the theoretical peak is given.")
    return text


# --- 2. automatic differentiation -----------------------------------------------------------------
AUTODIFF = f"""\
The study's first question: does writing the loss's backward by hand (*explicit*) instead of
composing it from differentiable operations (*autograd*) change the training time? The loss is a tiny
part of an iteration, so it is measured where it can be seen: inside every timing block the loss alone
(forward, then backward into the predictions) runs {LOSS_REPEATS} times, and explicit − autograd is a
{COMPARE_CI} paired by round over the blocks' medians (deeppose.compare_stats). Each training run is one
process at one time, so two runs differ by the machine's drift as much as by their code: their ratio is
shown beside the noise floor the timing's A/A control measured, and no verdict is drawn from it. The
figure puts every run on one time axis: both modes start from the same weights and see the same batches,
so a mode's curve is shifted only along the time axis by a difference in speed."""


def loss_effect_sentence(d: Device, e: Any) -> str:
    c = e.c
    head = f"{name(e.framework)} on {d.device}: "
    loss = (f"the explicit backward changes the loss's own forward + backward by "
            f"{format_interval(c.difference, 1e6, 'µs')} at batch {e.batch_size}"
            f"{f', {fmt.percent(e.share_of_iteration)} of a training iteration' if e.share_of_iteration is not None else ''}"
            f" ({c.verdict.value.replace('_', ' ')}, {c.rounds} rounds)" if c else
            "no timing group measured the loss alone")
    if e.train_time_ratio is None:
        return head + loss + f"; no training comparison, {join_words(e.absent)} not run."
    train = f"whole training runs: explicit / autograd = {fmt.sig(e.train_time_ratio)}"
    floor = (f"; identical arms in the timing's A/A control came up to {fmt.percent(e.noise_floor)} apart"
             if e.noise_floor is not None else "")
    return head + loss + f"; {train} (one run each, no verdict{floor})."


def autodiff(f: Findings, figures: set[str]) -> str:
    parts = [AUTODIFF]
    if not {"autograd", "explicit"} <= set(f.loss_modes):
        parts.append(f"Not measured: the grid's loss modes are {join_words(f.loss_modes)}; both are needed.")
    for d in f.devices:
        parts += [f"### {d.device}", _missing(d, "training", "training")]
        if not d.training:
            continue
        rows = [[name(r.framework), r.loss, r.setup, r.iterations, fmt.scaled(r.train_time_s, 1),
                 fmt.scaled(r.per_iteration_s, MS), fmt.scaled(r.compute.mean, MS), fmt.scaled(r.compute.std, MS),
                 fmt.scaled(r.compute.median, MS), fmt.sig(r.compute.iqr_over_median) + (" (noisy)" if r.compute.noisy else ""),
                 f"{r.compute.n} ({r.compute.source})"] for r in d.training]
        parts += [fmt.table(["framework", "loss", "set-up", "iterations", "training time (s)", "wall per iteration (ms)",
                             "compute per iteration, mean (ms)", "std (ms)", "median (ms)", "IQR / median",
                             "samples (source)"],
                            rows, right=tuple(range(3, 10))),
                  "Training time excludes evaluations; wall per iteration includes data fetching (the study's "
                  "measure); compute is forward + loss + backward + update.",
                  _figure(figures, f"learning_curves_{d.device}.png", f"Training loss against elapsed time on {d.device}"),
                  _bullets([loss_effect_sentence(d, e) for e in d.loss_effects])]
    return _join(parts)


# --- 3. network implementation ----------------------------------------------------------------------
NETWORK = f"""\
The study's second question: how much of the difference comes from the network's own
implementation? The *core process* is forward + loss + backward on a batch already on the device,
synchronised before the clock is read; gradients are cleared and garbage collected outside the timed
region, warm-up runs dropped. All cells of one device and batch size form a group measured together:
`timing.blocks` rounds in which every cell runs one block (a fresh process, `timing.repeats` samples) in a
seeded random order, so drift hits all alike and cells pair by round. A block is *disturbed* when its
samples spread (IQR/median > 10 %), hold an outlier (max/median > 1.25) or other processes used more than
a tenth of a core; only the last, which a rerun can cure, is rerun (every attempt kept) and left out.
A cell's time is the median of its block medians with a {CI} from the blocks (t on logarithms); ratios
come with a {COMPARE_CI} paired by round, and a verdict needs the interval to exclude 1 *and* the ratio
beyond 1 ± {fmt.sig(100 * THRESHOLD)} %. One cell per group is measured twice as an *A/A control*, which
shows what noise alone does to the same rule. Figures are printed to the precision their interval
supports. Achieved FLOP/s divides the batch's forward and backward FLOPs by the cell's time and is set
against the best observed kernel rate (Set-up, *Machine ceilings*)."""


def _comparison(r: Any) -> str:
    return f"{format_interval(r.ratio)} {r.verdict.value.replace('_', ' ')}" if r else MISSING


def network(f: Findings, figures: set[str]) -> str:
    parts = [NETWORK]
    if f.false_positive_rate is not None:
        parts.append(f"Over the run's {f.aa_pairs} A/A pairs the rule called {f.false_positives} different: a "
                     f"false-positive rate of {fmt.percent(f.false_positive_rate)} (the rule's simulated rate at "
                     f"{f.setup.params['timing']['blocks']} blocks is in deeppose/compare_stats.py).")
    for d in f.devices:
        parts += [f"### {d.device}", _missing(d, "timing", "timing")]
        if not d.cells:
            continue
        steps = list(dict.fromkeys(name for c in d.cells for name in c.steps_s))
        rows = [[c.batch_size, name(c.framework), c.loss, c.blocks, format_interval(c.time, MS),
                 fmt.scaled(c.mean_s, MS), fmt.scaled(c.std_s, MS), c.disturbed,
                 fmt.scaled(c.loss_alone_s, 1e-6), f"{c.memory_bytes / 2**20:.0f}" if c.memory_bytes is not None else MISSING,
                 *(fmt.scaled(c.steps_s.get(name), MS) for name in steps)] for c in d.cells]
        parts += [_figure(figures, f"core_time_{d.device}.png", f"Core-process time against batch size on {d.device}"),
                  _figure(figures, f"memory_{d.device}.png", f"Peak memory of the core process on {d.device}"),
                  fmt.table(["batch", "framework", "loss", "blocks", f"time, {CI} (ms)", "mean of samples (ms)",
                             "std (ms)", "disturbed attempts", "loss alone, median (µs)", "peak memory (MiB)",
                             *(f"{name} update, median, not in core (ms)" for name in steps)], rows,
                            right=(0, *range(3, 10 + len(steps))))]
        parts.append(_compile_sentences(d))
        columns = list(dict.fromkeys((r.a, r.b) for r in d.ratios))
        by = {(r.batch_size, r.a, r.b): r for r in d.ratios}
        title = {(a, b): f"{name(a.split('/')[0])} / {name(b.split('/')[0])}, {a.split('/')[1]}" if a.split("/")[1] ==
                 b.split("/")[1] else f"{name(a.split('/')[0])} explicit / autograd" for a, b in columns}
        parts += [f"Ratios of core-process times on {d.device}, paired by round, with verdicts:",
                  fmt.table(["batch", *(title[k] for k in columns)],
                            [[b, *(_comparison(by.get((b, *k))) for k in columns)] for b in f.batch_sizes
                             if any((b, *k) in by for k in columns)], right=tuple(range(1, len(columns) + 1)))
                  if columns else ""]
        if d.controls:
            parts += [f"A/A control on {d.device}: one cell measured as two arms under the same rules (a verdict here "
                      "is a false alarm; *blocks disagree*: a cell's blocks differ more than their samples' spread "
                      "explains, so its interval carries drift):",
                      fmt.table(["batch", "A/A cell", f"twin / cell ({COMPARE_CI})", "rounds", "blocks disagree"],
                                [[r.batch_size, r.b, _comparison(r), r.rounds, "yes" if r.disagree else "no"]
                                 for r in d.controls], right=(0, 2, 3))]
        rated = [c for c in d.cells if c.flops_per_s]
        parts += [_figure(figures, f"flops_{d.device}.png", f"Achieved FLOP/s against batch size on {d.device}"),
                  f"Achieved throughput against the best observed kernel rate ({fmt.flops(f.setup.peak.best_observed)}):",
                  fmt.table(["batch", "framework", "loss", "achieved (GFLOP/s)", "% of best observed"],
                            [[c.batch_size, name(c.framework), c.loss, fmt.sig(c.flops_per_s / 1e9),
                              fmt.sig(100 * c.fraction_of_peak) if c.fraction_of_peak else MISSING] for c in rated],
                            right=(0, 3, 4))] if rated else []
    return _join(parts)


def _compile_sentences(d: Device) -> str:
    """Per compiling framework and cell: "X s to compile, then Y per step; break-even after N steps"."""
    lines = []
    for c in d.cells:
        if c.compile_s is None:
            continue
        text = (f"{name(c.framework)} ({c.loss}, batch {c.batch_size}): {fmt.seconds(c.compile_s)} to compile, then "
                f"{fmt.seconds(c.time.estimate)} per step")
        if c.eager_s is not None and c.break_even is not None:
            text += f"; break-even with eager PyTorch ({fmt.seconds(c.eager_s)} per step) after {c.break_even} steps"
        elif c.eager_s is not None:
            text += f"; never ahead of eager PyTorch ({fmt.seconds(c.eager_s)} per step)"
        lines.append(text + ".")
    caches = {name(c.framework): ", ".join(f"{k} {v}" for k, v in c.caches.items()) or "none recorded"
              for c in d.cells if c.compile_s is not None}
    if not lines:
        return ""
    return ("Compile time: the first call (trace, compile and one run), measured in every block before its "
            "steady-state runs (median of blocks), against eager PyTorch at the same batch size and loss mode:\n\n"
            + _bullets(lines) + "\n\nCaches: " + "; ".join(f"{fw}: {text}" for fw, text in caches.items()) + ".")


# --- 4. per-layer breakdown ---------------------------------------------------------------------
BREAKDOWN = f"""\
The study concluded that "the dominant influence on the learning time is the implementation of each
layer such as convolution" without timing the layers. Here each framework's own profiler
(torch.profiler; Chainer's function and link hooks) timed every top-level call of one core process, and
`deeppose.layer_groups` grouped the calls into the same layers for every framework (median over
repeats). The layers must add up to the core time measured without the profiler in the same stage,
within the stated tolerance (the *sum rule*); the remainder is shown as overhead. A verdict on the
study's conclusion *confirms* when convolutions explain at least {fmt.percent(CONFIRM_SHARE)} of a
framework's extra time over PyTorch, *partly confirms* when the layers together (not the overhead) do,
and *refutes* otherwise."""
VERDICT_TEXT = {
    LayerVerdict.CONFIRMS: "This confirms the study's conclusion for this machine: the implementation of the layers, "
                           "convolution above all, dominates the difference in learning time.",
    LayerVerdict.PARTLY: "This partly confirms the study's conclusion: the layers' implementations explain most of the "
                         "difference, but convolution alone does not.",
    LayerVerdict.REFUTES: "This refutes the study's conclusion for this machine: most of the difference lies outside "
                          "the layers, in framework overhead.",
}


def attribution_sentence(device: str, batch: int, a: Any) -> str:
    other, where = name(a.framework), f"On {device} at batch {batch} ({a.loss} loss)"
    totals = (f"{other}'s core process took {fmt.seconds(a.other_s)} against PyTorch's {fmt.seconds(a.reference_s)} "
              f"({fmt.sig(a.other_s / a.reference_s)}x)")
    if a.verdict is LayerVerdict.CANNOT_TEST:
        return (f"{where}, {totals}: {other} is not slower, so there is no extra time to attribute and the study's "
                "conclusion cannot be tested on this machine.")
    share = {k: fmt.percent(v / a.extra_s) for k, v in a.parts_s.items()}
    text = (f"{where}, {totals}. Convolutions account for {share['conv']} of {other}'s extra time "
            f"({fmt.seconds(a.extra_s)}), fully-connected layers for {share['fc']}, element-wise layers (ReLU, pooling, "
            f"dropout, loss, reshapes) for {share['elementwise']} and unattributed overhead for {share['overhead']}; "
            f"the largest single difference is {a.largest.layer} {a.largest.phase} "
            f"({fmt.seconds(a.largest.other_s - a.largest.reference_s, signed=True)}). {VERDICT_TEXT[a.verdict]}")
    if a.uncertain:
        text += (f" (The layers of {join_words([name(x) for x in a.uncertain])} do not add up to the measured core "
                 "time within the stated tolerance, so this attribution is uncertain.)")
    return text


def breakdown(f: Findings, figures: set[str]) -> str:
    parts = [BREAKDOWN, _bullets([f"{name(fw)}: no per-layer breakdown: {why}." for fw, why in f.no_breakdown.items()])]
    for d in f.devices:
        parts.append(_missing(d, "breakdown", "per-layer breakdown") if not d.breakdown else "")
        for b in d.breakdown:
            batch, peak = b.batch_size, f.setup.peak.best_observed
            rows = [[name(j.framework), j.loss, fmt.scaled(j.core_s, MS), fmt.scaled(j.profiled_s, MS),
                     fmt.scaled(j.layers_s, MS), fmt.scaled(j.overhead_s, MS, signed=True), fmt.sig(100 * j.gap),
                     f"{'yes' if j.sum_rule_ok else 'NO'} (±{fmt.percent(j.tolerance)})"] for j in b.jobs]
            rows += [[name(fw), loss, "not run", *[MISSING] * 5] for fw, loss in b.absent]
            parts += [f"### {d.device}, batch {batch}",
                      _figure(figures, f"breakdown_{d.device}_b{batch}.png",
                              f"Per-layer time of one core process, {d.device}, batch {batch}"),
                      fmt.table(["Framework", "Loss", "Core time (ms)", "Profiled core (ms)", "Σ layers (ms)",
                                 "Overhead (ms)", "Gap / core (%)", "Sum rule met"], rows, right=(2, 3, 4, 5, 6)), _missing(d, "breakdown", "per-layer breakdown")]
            for a in b.attributions:
                extra = a.extra_s if a.extra_s > 0 else None
                rows = [[x.layer, x.phase, fmt.scaled(x.reference_s, MS), fmt.scaled(x.other_s, MS),
                         fmt.sig(x.other_s / x.reference_s) if x.reference_s > 0 else MISSING,
                         fmt.scaled(x.other_s - x.reference_s, MS, signed=True),
                         fmt.sig(100 * (x.other_s - x.reference_s) / extra) if extra else MISSING] for x in a.top]
                rows += [["overhead", "both", fmt.scaled(a.reference_overhead_s, MS), fmt.scaled(a.other_overhead_s, MS),
                          MISSING, fmt.scaled(a.parts_s["overhead"], MS, signed=True),
                          fmt.sig(100 * a.parts_s["overhead"] / extra) if extra else MISSING],
                         ["core process", "both", fmt.scaled(a.reference_s, MS), fmt.scaled(a.other_s, MS),
                          fmt.sig(a.other_s / a.reference_s), fmt.scaled(a.extra_s, MS, signed=True),
                          "100" if extra else MISSING]]
                parts += [f"Layers that differ most, {name(a.framework)} against PyTorch ({a.loss} loss):",
                          fmt.table(["Layer", "Phase", "PyTorch (ms)", f"{name(a.framework)} (ms)",
                                     f"{name(a.framework)}/PyTorch", "Difference (ms)", "Share of extra time (%)"], rows, right=(2, 3, 4, 5, 6)),
                          attribution_sentence(d.device, batch, a)]
            parts += [f"Per-layer breakdown on {d.device} at batch {batch}: {name(fw)} is not compared with PyTorch "
                      f"({loss} loss), a job not run." for fw, loss in b.not_compared]
            rated = [j for j in b.jobs if j.loss == b.rate_loss]
            rows = [[x.layer, x.phase, fmt.sig(x.flops / 1e9) if x.flops else MISSING,
                     *(f"{fmt.sig((y.flops_per_s or 0) / 1e9)} ({fmt.percent(y.fraction_of_peak)})" if y.flops_per_s
                       else MISSING for j in rated for y in j.layers if (y.layer, y.phase) == (x.layer, x.phase))]
                    for x in rated[0].layers if x.flops]
            over = sorted({f"{name(j.framework)} {x.layer} {x.phase}" for j in rated for x in j.layers
                           if (x.fraction_of_peak or 0) > 1})
            parts += [_figure(figures, f"breakdown_peak_{d.device}_b{batch}.png",
                              f"Achieved FLOP/s per layer, {d.device}, batch {batch}"),
                      f"Achieved GFLOP/s per layer ({b.rate_loss} loss; the layers do not depend on the loss mode), with "
                      f"the share of the best observed kernel rate ({fmt.flops(peak)}) in brackets:",
                      fmt.table(["Layer", "Phase", "GFLOP", *(name(j.framework) for j in rated)], rows,
                                right=tuple(range(2, 3 + len(rated)))),
                      f"Above 100 %: {join_words(over)}: the best observed kernel rate is what a standard kernel "
                      "reached in the `peak` stage, not a hard ceiling." if over else "",
                      _figure(figures, f"roofline_{d.device}_b{batch}.png", f"Roofline, {d.device}, batch {batch}"),
                      _roofline_text(f, b)]
    return _join(parts)


def _roofline_text(f: Findings, b: Any) -> str:
    text = ("The roofline sets each layer's achieved FLOP/s against its arithmetic intensity: its FLOPs over the "
            "bytes it must move at least once in fp32 (weights, input and output activations, and in backward the "
            "gradients; `deeppose.roofline`). Below the ridge point a layer is bounded by memory bandwidth, above "
            "it by arithmetic. ")
    if f.setup.peak.bandwidth is None:
        return text + "The memory bandwidth was not measured by this run, so no layer is classed memory-bound here."
    fc = [layer for layer in b.memory_bound if layer.startswith("fc")]
    if not b.memory_bound:
        return text + f"At batch {b.batch_size} every layer lies above the ridge point: all are compute-bound."
    return text + (f"At batch {b.batch_size} {join_words(list(b.memory_bound))} lie below the ridge point in both phases: "
                   "they are memory-bound, so their percentage of the compute peak understates how well they run"
                   + (" (the fully connected layers move every weight once per batch of only a few images)." if fc else "."))


# --- 5. accuracy ------------------------------------------------------------------------------
ACCURACY = """\
The study reported only the loss. Here every run is also scored on the test split, next to a baseline
that always predicts the mean training pose: a network that has learnt something beats it. Conventions
(deeppose.metrics): PCP@0.5 (strict) over the 10 standard sticks (the eight limb segments, the head from
neck to top, and the torso from the shoulders' midpoint to the hips' midpoint, as LSP has no pelvis
joint); PDJ@0.2 of the torso diameter (the longer torso diagonal); PCK@0.2 of |left shoulder − right
hip|. Filtering: only joints annotated as visible are scored (the prepared data keep LSP's visibility
flag, not which occluded joints were annotated), and the test images are those the prepare stage kept
(the crop must hold every visible joint). The standard LSP protocol scores every annotated joint, occluded
ones too, so the numbers are close to, not the same as, published ones. Intervals are 95 % BCa bootstrap
intervals over test images; the difference from the baseline and between frameworks is paired by image,
and "beats it" or "differ" means that interval excludes zero."""


def accuracy(f: Findings, figures: set[str]) -> str:
    parts, rows = [ACCURACY], []
    metrics = [m for m in METRICS if any(m in r.scores for d in f.devices for r in d.training)]
    for d in f.devices:
        for r in d.training:
            rows.append([name(r.framework), r.loss, d.device, fmt.sig(r.final_train_loss),
                         *(_score(m, r.scores[m]) if m in r.scores else MISSING for m in metrics),
                         *(f"{format_interval(g.difference, *(() if m == 'loss' else (100, 'points')))}: "
                           f"{'beats it' if g.beats else 'does not beat it'}" if (g := r.gaps.get(m)) else MISSING
                           for m in ("loss", "pcp"))])
        if d.baseline:
            rows.append(["mean pose (baseline)", MISSING, d.device, MISSING,
                         *(_score(m, Interval(d.baseline.get(m), None, None, 0, LEVEL, "")) for m in metrics),
                         MISSING, MISSING])
        if d.baseline_differs:
            parts.append(f"The mean-pose baseline differs between runs on {d.device} ({d.baseline_differs} runs): the "
                         "runs did not all see the same test data.")
    if rows:
        parts.insert(1, fmt.table(["framework", "loss", "device", "final training loss",
                                   *(f"{METRICS[m]} ({CI})" for m in metrics),
                                   f"test loss − mean pose ({CI})", f"PCP@0.5 − mean pose ({CI})"],
                                  rows, right=tuple(range(3, 6 + len(metrics)))))
    for d in f.devices:
        parts += [_missing(d, "training", "training"), _bullets([framework_difference(d, x) for x in d.accuracy_differences])]
    return _join(parts)


def framework_difference(d: Device, x: Any) -> str:
    shown = format_interval(x.difference) if x.metric == "loss" else format_interval(x.difference, 100, "points")
    return (f"{METRICS[x.metric]} on {d.device} ({x.loss}), {name(x.framework)} − PyTorch: {shown}: "
            + ("the frameworks differ." if x.differ else "the frameworks' accuracies do not differ beyond the interval."))


# --- 6. the original study ----------------------------------------------------------------------
STUDY = f"""\
The study (PyTorch 0.1.10 and Chainer 1.19, 2017) published the figures below. Absolute times depend on
the machine, the data and the batch size, so only ratios are compared, and only like with like: its
"time of 1 epoch" is, by its own numbers, seconds per iteration at batch 32 with MomentumSGD. So the
Chainer / PyTorch ratio is taken from timing results at batch 32: core process plus the MomentumSGD
update, when the run timed that optimiser; otherwise it is *not comparable*. The training-time ratio of
this run is shown beside it with the set-up it came from. A ratio **agrees** when within
{round(AGREE_WITHIN * 100)} % of the study's; otherwise it is on the **same side of 1** when both are above
{1 + ABOUT_ONE:.2f}, both below {1 - ABOUT_ONE:.2f} or both between; otherwise it **disagrees**."""
QUANTITY = {("per_iteration", "timing"): "Chainer / PyTorch per iteration, batch 32 (timing)",
            ("per_iteration", "training"): "Chainer / PyTorch per training iteration",
            ("explicit_over_autograd", "training"): "explicit / autograd training time"}


def _quantity(row: Any) -> str:
    text = QUANTITY[row.quantity, row.basis]
    return text if row.quantity == "per_iteration" else f"{text} ({name(row.framework)})"


def dominance_sentence(x: Any) -> str:
    finding = ("as in the study, the network's implementation matters more than how the loss's backward is written"
               if x.framework_matters_more else
               "unlike the study, the loss's backward matters at least as much as the network's implementation")
    return (f"On {x.device} the framework changes the training time per iteration by {fmt.sig(100 * abs(x.framework_ratio - 1))} % "
            f"({name(x.framework)} / PyTorch = {fmt.sig(x.framework_ratio)}, autograd) and the loss's backward by at "
            f"most {fmt.sig(100 * abs(x.loss_ratio - 1))} % (explicit / autograd = {fmt.sig(x.loss_ratio)}, "
            f"{name(x.loss_framework)}): {finding}.")


def study(f: Findings, figures: set[str]) -> str:
    rows = [[r.device, _quantity(r), r.setup or MISSING, fmt.sig(r.study) if r.study else "not measured",
             fmt.sig(r.ours),
             f"{r.verdict.value}: {r.why_not}" if r.why_not else r.verdict.value] for r in f.study]
    absolute = [[a.device, name(a.framework), fmt.sig(a.study_s),
                 fmt.sig(a.iteration_s) if a.iteration_s else "not measured",
                 f"{fmt.sig(a.training_s)} ({a.training_setup})" if a.training_s else "not run"] for a in f.absolute]
    return _join([STUDY, fmt.table(["device", "ratio", "set-up here", "study", "this run", "verdict"], rows, right=(3, 4)),
                  "Absolute figures, for scale only (different hardware, data and set-up):",
                  fmt.table(["device", "framework", "study: per iteration at batch 32 (s)",
                             "core + MomentumSGD update at batch 32 (s)", "wall per training iteration (s)"], absolute, right=(2, 3, 4)),
                  *(dominance_sentence(x) for x in f.dominance)])


# --- 7. summary --------------------------------------------------------------------------------------
def _device_conclusions(f: Findings, d: Device) -> list[str]:
    """The findings of sections 2 to 6 for one device, each in one short line (the sections hold the detail)."""
    lines = [f"{name(e.framework)}: writing the loss's backward by hand costs "
             f"{format_interval(e.c.difference, 1e6, 'µs')} per step ({e.c.verdict.value.replace('_', ' ')}); training "
             f"runs {fmt.sig(e.train_time_ratio)}x (no verdict)." for e in d.loss_effects if e.c and e.train_time_ratio]
    for t in d.trends:
        text = (f"{name(t.framework)} / PyTorch core-process time ({t.loss}) {t.trend.value} from {fmt.sig(t.first[1])} "
                f"at batch {t.first[0]} to {fmt.sig(t.last[1])} at batch {t.last[0]}")
        inner = [f"{word} {fmt.sig(r)} at batch {b}" for word, (b, r) in (("lowest", t.lowest), ("highest", t.highest))
                 if (b, r) not in (t.first, t.last)]
        lines.append(text + (f"; {', '.join(inner)}" if inner else "") + ".")
    lines += [f"{name(r.framework)} {r.loss}: the core process at the training batch size takes {fmt.seconds(r.core_s)}, "
              f"{fmt.percent(r.core_s / r.per_iteration_s)} of a training iteration ({fmt.seconds(r.per_iteration_s)})."
              for r in d.training if r.core_s is not None]
    disturbed = [f"{name(c.framework)} {c.loss} batch {c.batch_size} ({c.disturbed})" for c in d.cells if c.disturbed]
    lines += [f"Block attempts flagged disturbed (those other processes disturbed were rerun; all are kept): "
              f"{', '.join(disturbed)}."] if disturbed else []
    for b in d.breakdown:
        lines += [f"Per-layer breakdown, batch {b.batch_size}, {a.loss} loss: {name(a.framework)} takes "
                  f"{fmt.sig(a.other_s / a.reference_s)}x PyTorch's core time; convolutions explain "
                  f"{fmt.percent(a.parts_s['conv'] / a.extra_s) if a.extra_s > 0 else MISSING} of the extra time: "
                  f"the study's conclusion — {a.verdict.value}" + (" (sum rule missed: uncertain)" if a.uncertain else "")
                  + "." for a in b.attributions]
        if f.setup.peak.bandwidth is not None and b.memory_bound:
            lines.append(f"Memory-bound at batch {b.batch_size} (roofline): {join_words(list(b.memory_bound))}.")
    if d.training and d.baseline:
        worse = [f"{name(r.framework)} {r.loss}" for r in d.training if not r.gaps or not all(g.beats for g in r.gaps.values())]
        lines.append(f"Accuracy: {len(d.training) - len(worse)} of {len(d.training)} runs beat the mean pose on every "
                     f"metric with a paired interval" + (f" (not: {join_words(worse)})" if worse else "") + "; "
                     + ("the frameworks differ on " + join_words(sorted({METRICS[x.metric] for x in d.accuracy_differences
                                                                         if x.differ}))
                        if any(x.differ for x in d.accuracy_differences) else
                        "the frameworks' accuracies do not differ beyond their intervals") + ".")
    lines += [f"Framework effect {fmt.sig(x.framework_ratio)} against loss-backward effect {fmt.sig(x.loss_ratio)} per "
              f"training run: {'as in' if x.framework_matters_more else 'unlike'} the study." for x in f.dominance
              if x.device == d.device]
    return lines or [f"No result on {d.device}."]


def summary(f: Findings, figures: set[str]) -> str:
    parts = ["### Conclusions"]
    parts += [f"**{d.device}**\n\n" + _bullets(_device_conclusions(f, d)) for d in f.devices]
    judged = [r for r in f.study if r.verdict is not StudyVerdict.NOT_COMPARABLE]
    parts.append("**Against the study**\n\n" + _bullets(
        [f"{_quantity(r)} on {r.device}: {fmt.sig(r.ours)} against {fmt.sig(r.study)}: {r.verdict.value}." for r in judged]
        + [f"Not comparable: {join_words([f'{_quantity(r)} on {r.device} ({r.why_not})' for r in f.study if r not in judged])}."]))
    parts += [f"**{device}**: not in this run's grid; " + (f"{n} result file(s) for it under `results/` were not read."
                                                          if n else "no result file for it exists under `results/`.")
              for device, n in f.off_grid.items()]
    rows = [[f"{m.kind} {m.job}", ", ".join(map(str, m.batch_sizes)) or MISSING, m.reason] for m in f.missing]
    parts += ["### Jobs without results",
              fmt.table(["job", "batch sizes", "reason"], rows) if rows else "Every job of the grid has a result."]
    if f.problems:
        parts += ["### Problems noticed in the results", _bullets([fmt.escape(p) for p in f.problems])]
    return _join(parts)


SECTIONS = (("Set-up", setup), ("Effect of automatic differentiation", autodiff),
            ("Impact of the network implementation", network), ("Per-layer breakdown of the core process", breakdown),
            ("Accuracy", accuracy), ("Against the original study", study), ("Summary", summary))


def document(f: Findings, figures: set[str], title: str, changes: str | None = None) -> str:
    """The whole report.md; `changes` (deeppose.compare's markdown) opens it as its own section."""
    sections = ([("Changes since " + changes.split("\n", 1)[0], lambda *_: changes.split("\n", 1)[1])]
                if changes else []) + list(SECTIONS)
    stale = [f"> - `{path}`: {'; '.join(reasons)}" for path, reasons in sorted(f.stale.items())]
    jobs = f.jobs
    intro = (
        "A re-run of the 2017 comparison of PyTorch and Chainer training DeepPose (an AlexNet that regresses 14 "
        "joints), with one loss definition, identical initial weights and batch order in every framework, and "
        f"synchronised timing that excludes data fetching. Written by `python -m deeppose report` from "
        f"`{f.setup.params_path}` and the results under `results/`: {jobs['train']['present']} of "
        f"{jobs['train']['expected']} training jobs, {jobs['timing']['present']} of {jobs['timing']['expected']} timing "
        f"jobs and {jobs['breakdown']['present']} of {jobs['breakdown']['expected']} per-layer breakdown jobs have "
        "results. Every conclusion is written by the report's code from the numbers; the Summary collects them.")
    parts = [f"# {title}"]
    if stale:
        parts.append(f"> **{len(stale)} result(s) below are stale**: produced by other code or parameters than this "
                     "tree's. Rerun the pipeline (`make run`) to refresh them; `python -m deeppose status` lists them.\n>\n"
                     + "\n".join(stale))
    headings = [f"{i}. {t}" for i, (t, _) in enumerate(sections, 1)]
    parts += [intro, "\n".join(f"{h.split('. ', 1)[0]}. [{t}](#{_anchor(h)})" for h, (t, _) in zip(headings, sections))]
    for heading, (_, render) in zip(headings, sections):
        parts += [f"## {heading}", render(f, figures).strip()]
    return "\n\n".join(parts) + "\n"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in "- ").replace(" ", "-")
