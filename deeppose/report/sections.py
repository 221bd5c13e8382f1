"""The report's sections, in the study's order, and `SECTIONS`: the one list that defines them.

Every sentence that states a result is written here by code from the numbers in
`deeppose.report.analysis`; the fixed text only explains the method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from deeppose import paths
from deeppose.compare_stats import COMPARE_LEVEL, THRESHOLD, format_interval, round_to_interval
from deeppose.fairness import asymmetries
from deeppose.grid import DEVICES, Job
from deeppose.report import fmt
from deeppose.report.analysis import (
    ABOUT_ONE,
    AGREE_WITHIN,
    AccuracyGap,
    LEVEL,
    REFERENCE,
    STUDY,
    Analysis,
    AutodiffEffect,
    Sample,
    TrainSummary,
    verdict,
)
from deeppose.report.breakdown_section import render_breakdown
from deeppose.report.figures import draw_core_times, draw_flops, draw_learning_curves, draw_memory
from deeppose.report.fmt import MISSING, framework_name, join_words
from deeppose.report.load import Loaded
from deeppose.report.markdown import Context, Section, jobs_on, missing_note, show_figure
from deeppose.results import PrepareSummary
from deeppose.timing_block import LOSS_REPEATS

CI = f"{round(LEVEL * 100)} % CI"
COMPARE_CI = f"{round(COMPARE_LEVEL * 100)} % CI"


# --- helpers ----------------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    """A parameter or data-summary value as written in its file (JSON for lists, booleans, null)."""
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value, sort_keys=True)
    return str(value)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value) rows, in the data's own order; a list of more than
    three objects (such as every dropped sample) is only counted."""
    if isinstance(data, dict) and data:
        rows = []
        for key, value in data.items():
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(data, list) and len(data) > 3 and all(isinstance(item, dict) for item in data):
        return [(prefix, f"{len(data)} entries (see the file)")]
    return [(prefix, _scalar(data))]


def _label(job: Job) -> str:
    return f"{framework_name(job.framework)} {job.loss}"


def _spread(sample: Sample) -> str:
    """IQR / median, flagged when noisy."""
    return fmt.sig(sample.iqr_over_median) + (" (noisy)" if sample.noisy else "")


# --- 1. set-up ---------------------------------------------------------------------------------
def render_setup(ctx: Context) -> str:
    results = ctx.results
    params = results.params
    parts = ["### Parameters", _parameters_line(params.raw)]
    rows = [(f"`{k}`", v) for k, v in flatten(params.raw)]
    parts.append(_details(f"Every parameter of `{params.path.as_posix()}`", fmt.table(["parameter", "value"], rows)))

    parts.append("### Data")
    prepared = results.prepared
    if prepared.ok:
        parts.append(_data_line(prepared.record))
        fields = {k: v for k, v in prepared.data.items() if k not in ("provenance", "kind", "schema_version")}
        rows = [(f"`{k}`", v) for k, v in flatten(fields)]
        parts.append(_details(f"Every field of `{prepared.path.as_posix()}`", fmt.table(["field", "value"], rows)))
    else:
        parts.append(f"No data summary: `{prepared.path.as_posix()}`: {prepared.missing}.")
    preview = paths.preview_image()
    if preview.exists():
        link = preview.relative_to(paths.report_markdown().parent).as_posix()
        parts.append(f"![Samples of the prepared training data]({link})")

    parts.append("### Environment")
    parts.append("As recorded in each result file; values that differ between the results of one row are all shown.")
    parts.append(_environment_table(ctx))
    parts.append(_environment_lines(ctx))
    for device in results.devices:
        parts.append(_fairness(ctx, device))
    ctx.headline("peak_flops_per_s", value=ctx.analysis.peak_flops_per_s)
    parts += ["### What this run cost", _cost_table(ctx)]
    return "\n\n".join(parts)


def _cost_table(ctx: Context) -> str:
    """Wall time per stage from the jobs' cost records: the price of each parameter choice."""
    rows, total, recorded = [], 0.0, 0
    for stage, costs in ctx.results.costs.items():
        done = [c for c in costs if c is not None]
        wall = sum(c.wall_s + c.startup_s for c in done)
        total += wall
        recorded += len(done)
        rows.append([
            f"`{stage}`", f"{len(done)} of {len(costs)}", f"{wall:.0f} s" if done else "—",
            f"{sum(c.startup_s for c in done):.1f} s" if done else "—",
            f"{max(c.max_rss_mb for c in done) / 1024:.1f} GiB" if done else "—",
        ])
    rows.append(["all of the above", str(recorded), f"**{total:.0f} s**", "", ""])
    ctx.headline("pipeline_wall_s", value=round(total))
    return (
        fmt.table(["stage", "jobs recorded", "wall time", "of which process start-up", "peak memory"], rows)
        + "\n\nEach job's own record (`results/cost/`), written by `python -m deeppose` when the job "
        "succeeds: the wall time from process start to its output, and its peak resident memory. Not "
        "included: installing the environment (`make setup`), the workflow engine's own time and "
        "this report. Jobs that another run measured keep that run's figures."
    )


FAIRNESS_FIELDS = ("dtype", "threads", "kernel_library", "kernel_isa", "fp32_math", "runtime_checks",
                   "optimizer_kernel")


def _fairness(ctx: Context, device: str) -> str:
    """What each framework's timing processes ran with, side by side, and every difference."""
    manifests = ctx.analysis.manifests(device)
    if not manifests:
        return ""
    names = list(manifests)
    rows = [[framework_name(n), *(_scalar(manifests[n]["common"].get(f)) for f in FAIRNESS_FIELDS),
             _pairs(manifests[n]["env"]) if manifests[n]["env"] else "none"] for n in names]
    table = fmt.table(["framework", *FAIRNESS_FIELDS, "steering variables"], rows)
    found = asymmetries({framework_name(n): manifests[n] for n in names})
    ctx.headline(device, "fairness_asymmetries", value=[a.field for a in found])
    lines = [f"- `{a.field}`: " + "; ".join(f"{n} {_scalar(v)}" for n, v in a.values.items())
             + f" (may bias: {a.may_bias})" for a in found]
    cpu = next(iter(manifests.values()))["cpu"]
    return "\n\n".join([
        f"#### What the timing processes ran with on {device}",
        f"CPU: {fmt.escape(cpu.get('model'))}; ISA flags: {fmt.escape(', '.join(cpu.get('isa_flags', [])) or MISSING)}.",
        table,
        f"{len(found)} asymmetr{'y' if len(found) == 1 else 'ies'} between the frameworks' processes:" if found
        else "No asymmetry between the frameworks' processes.",
        "\n".join(lines),
    ])


def _details(summary: str, body: str) -> str:
    """A block folded on GitHub (the blank lines let the Markdown inside render)."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _parameters_line(raw: dict[str, Any]) -> str:
    """The parameters a reader needs first, in one sentence (params.yaml's schema fixes the keys)."""
    train, model, timing, grid = raw["train"], raw["model"], raw["timing"], raw["grid"]
    sizes = ", ".join(str(2**e) for e in sorted(grid["batch_exponents"]))
    return (
        f"Data: {raw['data']['source']}, seed {raw['seed']}. Training: {train['epochs']} epochs at batch "
        f"{train['batch_size']}, {train['optimizer']} (lr {train['lr']}, momentum {train['momentum']}), "
        f"dropout {model['dropout']}, LRN {'on' if model['lrn'] else 'off'}, augmentation "
        f"{'on' if train['augment'] else 'off'}, evaluation every {train['eval_every']} epoch(s). Timing: "
        f"{timing['repeats']} timed runs after {timing['warmup']} warm-up runs at batch sizes {sizes}. "
        f"Threads: {train['threads'] or 'all cores'} (training), {timing['threads'] or 'all cores'} (timing)."
    )


def _data_line(summary: PrepareSummary) -> str:
    """Source, kept and dropped counts from the prepare stage's summary."""
    kept = ", ".join(f"{split} {summary.kept[split]}" for split in ("train", "test"))
    detail = ", ".join(f"{reason}: {n}" for reason, n in summary.dropped["by_reason"].items() if n)
    dropped = f"dropped {summary.dropped['total']}" + (f" ({detail})" if detail else "")
    facts = [f"source {summary.source}", f"kept {kept}", dropped, f"content hash `{summary.sha256[:16]}…`"]
    return fmt.escape(f"Prepared data: {'; '.join(facts)}.")


def _environment_table(ctx: Context) -> str:
    results = ctx.results
    everything = [*results.train.items(), *results.timing.items()]
    rows = []
    for device in results.devices:
        for fw in results.frameworks:
            loaded = [r for job, r in everything if r.ok and job.framework == fw and job.device == device]
            if not loaded:
                rows.append([framework_name(fw), device, *[MISSING] * 6])
                continue
            versions = [r.data.get("versions") if isinstance(r.data.get("versions"), dict) else {} for r in loaded]
            rows.append([
                framework_name(fw), device,
                _distinct(_env(r, "cpu") for r in loaded),
                _distinct(f"{_env(r, 'usable_cores')} of {_env(r, 'cores')}" for r in loaded),
                _distinct(v.get("gpu", MISSING) for v in versions),
                _distinct(_env(r, "python") for r in loaded),
                _distinct(_pairs({k: x for k, x in v.items() if k != "gpu"}) for v in versions),
                _distinct(_threads(r.data.get("threads")) for r in loaded),
            ])
    headers = ["framework", "device", "CPU", "cores (usable of all)", "GPU", "Python", "versions", "threads in force"]
    return fmt.table(headers, rows)


def _environment_lines(ctx: Context) -> str:
    results = ctx.results
    loaded = [r for r in [*results.train.values(), *results.timing.values()] if r.ok]
    lines = [f"- Packages: {_distinct(_pairs(_env(r, 'packages', {})) for r in loaded)}."]
    commits = sorted({str(_env(r, "commit")) for r in loaded})
    if commits:
        line = f"- Project commit of the results: {join_words([f'`{c}`' for c in commits])}"
        if len(commits) > 1:
            line += " (the results come from different commits)"
        if any(c.endswith("+dirty") for c in commits):
            line += "; `+dirty`: tracked files had uncommitted changes"
        lines.append(line + ".")
    peak = results.peak
    if peak.ok:
        rates = peak.data.get("rates_flops_per_s") or {}
        kernels = [f"{name.replace('_', ' ')} {fmt.flops(rate)}" for name, rate in rates.items() if rate]
        lines.append(
            f"- Measured fp32 peak (n = {peak.data.get('n', MISSING)}), the best of standard kernels: "
            f"{fmt.flops(ctx.analysis.peak_flops_per_s)}" + (f" ({', '.join(kernels)})" if kernels else "") + "."
        )
    else:
        lines.append(f"- No measured peak: `{peak.path.as_posix()}`: {peak.missing}.")
    return "\n".join(lines)


def _env(loaded: Loaded, key: str, default: Any = MISSING) -> Any:
    env = loaded.data.get("environment")
    return env.get(key, default) if isinstance(env, dict) else default


def _pairs(data: Any) -> str:
    if not isinstance(data, dict) or not data:
        return MISSING
    return ", ".join(f"{k} {v}" for k, v in sorted(data.items()))


def _threads(threads: Any) -> str:
    """`requested=2, torch_intra_op=2; openblas 2, openmp 2` from a backend's thread_info()."""
    if not isinstance(threads, dict):
        return MISSING
    scalars = ", ".join(f"{k}={v}" for k, v in sorted(threads.items()) if not isinstance(v, (dict, list)))
    native = threads.get("native") if isinstance(threads.get("native"), list) else []
    libraries = ", ".join(f"{lib.get('library')} {lib.get('num_threads')}" for lib in native if isinstance(lib, dict))
    return "; ".join(part for part in (scalars, libraries) if part) or MISSING


def _distinct(values: Iterable[Any]) -> str:
    seen = list(dict.fromkeys(str(value) for value in values))
    return " / ".join(seen) if seen else MISSING


# --- 2. automatic differentiation ---------------------------------------------------------------
AUTODIFF_METHOD = f"""\
The study's first question: does writing the loss's backward by hand (*explicit*) instead of
composing it from differentiable operations (*autograd*) change the training time? The loss is a
tiny part of an iteration, so it is measured where it can be seen: inside every timing block the
loss alone (forward, then backward into the network's predictions) runs
{LOSS_REPEATS} times, and explicit − autograd is a {COMPARE_CI} paired by round over the blocks'
medians (deeppose.compare_stats), in microseconds and as a share of a training iteration.
The table gives each training run's wall time (evaluations excluded), that time per iteration
(data fetching included: the study's measure) and the per-iteration compute time (forward + loss +
backward + update). Each training run is one process at one time, so two runs differ by the
machine's drift as much as by their code: their ratio is shown for the record, beside the noise
floor that the timing's A/A control measured (how far apart two identical arms came), and no verdict
is drawn from it. The figure plots training loss against elapsed time on a log time axis, as the
study did: both modes start from the same weights and see the same batches, so their curves lie on
top of each other, shifted only along the time axis by any difference in speed."""


def autodiff_sentence(effect: AutodiffEffect, analysis: Analysis) -> str:
    """The code-written finding for one framework on one device."""
    name = f"{framework_name(effect.framework)} on {effect.device}"
    parts = []
    found = analysis.loss_effect(effect.framework, effect.device)
    if found is not None:
        exp, c = found
        share = ""
        train = effect.autograd
        if c.difference.estimate is not None and train is not None and train.compute is not None:
            share = f", {fmt.percent(c.difference.estimate / train.compute.mean)} of a training iteration"
        parts.append(
            f"the explicit backward changes the loss's own forward + backward by "
            f"{format_interval(c.difference, 1e6, 'µs')} at batch {2**exp}{share} "
            f"({c.verdict.value.replace('_', ' ')}, {len(c.rounds_used)} rounds)"
        )
    else:
        parts.append("no timing group measured the loss alone")
    if effect.train_time_ratio is not None:
        floor = analysis.noise_floor(effect.device)
        floor_text = (f"; identical arms in the timing's A/A control came up to {fmt.percent(floor)} apart"
                      if floor is not None else "")
        parts.append(f"whole training runs: explicit / autograd = {fmt.ratio(effect.train_time_ratio)} "
                     f"(one run each, no verdict{floor_text})")
    else:
        missing = [loss for loss in ("autograd", "explicit") if getattr(effect, loss) is None]
        parts.append(f"no training comparison, {join_words(missing)} not run")
    return f"{name}: " + "; ".join(parts) + "."


def render_autodiff(ctx: Context) -> str:
    results, analysis = ctx.results, ctx.analysis
    parts = [AUTODIFF_METHOD]
    if not {"autograd", "explicit"} <= set(results.loss_modes):
        parts.append(f"Not measured: the grid's loss modes are {join_words(results.loss_modes)}; "
                     "the comparison needs both autograd and explicit.")
    for device in results.devices:
        parts.append(f"### {device}")
        name, alt = f"learning_curves_{device}.png", f"Training loss against elapsed time on {device}"
        runs = [s for job in jobs_on(results.train, device) if (s := analysis.train.get(job))]
        if not runs:
            parts.append(missing_note(results.train, device, "training"))
            show_figure(ctx, name, alt, None, f"no training result on {device}")
            ctx.conclude(device, f"No training result on {device}: the loss modes are not compared there.")
            continue
        parts.append(_training_table(ctx, device))
        parts.append(missing_note(results.train, device, "training"))
        if any(results.train[s.job].iterations for s in runs):
            parts.append(show_figure(ctx, name, alt, lambda device=device: draw_learning_curves(analysis, device)))
        else:
            show_figure(ctx, name, alt, None, f"no training log on {device}")
            parts.append(f"No training log on {device}: no learning curves.")
        sentences = []
        for effect in analysis.autodiff(device):
            sentences.append(autodiff_sentence(effect, analysis))
            ctx.conclude(device, sentences[-1])
            _autodiff_headlines(ctx, effect)
        parts.append("\n".join(f"- {s}" for s in sentences))
        for s in runs:
            ctx.headline(device, "train_time_s", s.job.framework, s.job.loss, value=s.total_s)
            ctx.headline(device, "seconds_per_iteration", s.job.framework, s.job.loss, value=s.per_iteration_s)
    return "\n\n".join(p for p in parts if p)


def _training_table(ctx: Context, device: str) -> str:
    rows = []
    for job in jobs_on(ctx.results.train, device):
        s = ctx.analysis.train.get(job)
        if s is None:
            rows.append([framework_name(job.framework), job.loss, "not run", *[MISSING] * 6])
            continue
        c = s.compute
        rows.append([
            framework_name(job.framework), job.loss, str(s.iterations), fmt.seconds(s.total_s),
            fmt.seconds(s.per_iteration_s),
            *((fmt.mean_std(c.mean, c.std), fmt.seconds(c.median), _spread(c), f"{c.n} ({c.source})") if c
              else [MISSING] * 4),
        ])
    headers = ["framework", "loss", "iterations", "training time", "wall per iteration",
               "compute per iteration (mean ± std)", "median", "IQR / median", "samples (source)"]
    return fmt.table(headers, rows, right=(2, 3, 4, 5, 6, 7))


def _autodiff_headlines(ctx: Context, effect: AutodiffEffect) -> None:
    device, fw = effect.device, effect.framework
    ctx.headline(device, "explicit_over_autograd_train_time", fw, value=effect.train_time_ratio)
    found = ctx.analysis.loss_effect(fw, device)
    if found is not None:
        exp, c = found
        ctx.headline(device, "explicit_minus_autograd_loss_s", fw, value=interval_summary(c.difference, c.verdict))
        ctx.headline(device, "explicit_minus_autograd_loss_s", fw, "batch", value=2**exp)


# --- 3. network implementation ------------------------------------------------------------------
NETWORK_METHOD = f"""\
The study's second question: how much of the difference comes from the network's own
implementation? The *core process* is forward + loss + backward on a batch already on the device,
with the device synchronised before the clock is read, gradients cleared and garbage collected
outside the timed region, warm-up runs dropped. Batch sizes are 2^n. All cells of one device and
batch size form a group measured together: `timing.blocks` rounds in which every cell runs one
block (a fresh process, `timing.repeats` samples) in a seeded random order, so drift hits all alike
and cells pair by round. A block is flagged *disturbed* when its samples spread (IQR/median > 10 %),
hold an outlier (max/median > 1.25) or other processes used more than a tenth of a core meanwhile;
only the last, which a rerun can cure, is rerun (every attempt kept) and left out of the statistics;
a block noisy on its own is the cell's own behaviour, and counts.
A cell's time is the median of its block medians with a {CI} from the blocks (t on logarithms);
ratios come with a {COMPARE_CI} paired by round, and a verdict needs the interval to exclude 1 *and*
the ratio to be beyond 1 ± {fmt.sig(100 * THRESHOLD)} %. One cell per group is measured twice as two
arms: the *A/A control*, which shows what noise alone does to the same rule. Figures are printed to
the precision their interval supports. Achieved FLOP/s divides the batch's forward and backward FLOPs
by the cell's time (median of block medians) and is set against the machine's measured fp32 peak."""


def interval_summary(interval: Any, verdict: Any | None = None) -> dict[str, Any]:
    """An interval for summary.json, rounded as the report prints it."""
    summary: dict[str, Any] = {"n": interval.n, "level": interval.level}
    if interval.estimate is not None and interval.low is not None and interval.high is not None:
        half = (interval.high - interval.low) / 2
        summary.update(estimate=round_to_interval(interval.estimate, half).value,
                       low=round_to_interval(interval.low, half).value, high=round_to_interval(interval.high, half).value)
    elif interval.estimate is not None:
        summary["estimate"] = float(f"{interval.estimate:.2g}")
    if verdict is not None:
        summary["verdict"] = verdict.value
    return summary


def _control_headlines(ctx: Context) -> str:
    """summary.json's A/A control: every pair, and how often the rule called identical arms different."""
    pairs = []
    for (device, exp), group in sorted(ctx.analysis.groups.items()):
        c = group.analysis.control
        framework, loss = c.b.split("/")
        pairs.append({"framework": framework, "loss": loss, "device": device, "batch_size": 2**exp,
                      "ratio": interval_summary(c.ratio), "difference_s": interval_summary(c.difference),
                      "significant": c.verdict.value in ("faster", "slower"), "blocks_disagree": group.analysis.disagree})
    ctx.headline("aa_control", value=pairs)
    rate = ctx.analysis.control.false_positive_rate
    ctx.headline("aa_false_positive_rate", value=rate)
    if rate is None:
        return ""
    return (f"Over the run's {len(pairs)} A/A pairs the rule called {ctx.analysis.control.false_positives} "
            f"different: a false-positive rate of {fmt.percent(rate)} (the rule's simulated rate at "
            f"{ctx.results.params.raw['timing']['blocks']} blocks is in deeppose/compare_stats.py).")


def render_network(ctx: Context) -> str:
    results, analysis = ctx.results, ctx.analysis
    parts = [NETWORK_METHOD, _control_headlines(ctx)]
    for device in results.devices:
        parts.append(f"### {device}")
        core_name, core_alt = f"core_time_{device}.png", f"Core-process time against batch size on {device}"
        flops_name, flops_alt = f"flops_{device}.png", f"Achieved FLOP/s against batch size on {device}"
        cells = [c for job in jobs_on(results.timing, device) if (c := analysis.timing.get(job))]
        if not cells:
            parts.append(missing_note(results.timing, device, "timing"))
            show_figure(ctx, core_name, core_alt, None, f"no timing result on {device}")
            show_figure(ctx, flops_name, flops_alt, None, f"no timing result on {device}")
            ctx.conclude(device, f"No timing result on {device}: the core processes are not compared there.")
            continue
        parts.append(show_figure(ctx, core_name, core_alt, lambda device=device: draw_core_times(analysis, device)))
        memory_name, memory_alt = f"memory_{device}.png", f"Peak memory of the core process against batch size on {device}"
        if any(c.memory_bytes is not None for c in cells):
            parts.append(show_figure(ctx, memory_name, memory_alt, lambda device=device: draw_memory(analysis, device)))
        else:
            show_figure(ctx, memory_name, memory_alt, None, f"no memory figure on {device}")
        parts.append(_core_table(ctx, device))
        parts += _compile_sentences(ctx, device)
        parts.append(missing_note(results.timing, device, "timing"))
        parts.append(f"Ratios of core-process times on {device}, paired by round, with verdicts:")
        parts.append(_ratio_table(ctx, device))
        control = _control_table(ctx, device)
        if control:
            parts += [f"A/A control on {device}: one cell measured as two arms under the same rules "
                      "(a verdict here is a false alarm; *blocks disagree*: a cell's blocks differ more than "
                      "their samples' spread explains, so its interval carries drift):", control]
        flops_table = _flops_table(ctx, device)
        if flops_table:
            parts.append(show_figure(ctx, flops_name, flops_alt, lambda device=device: draw_flops(analysis, device)))
            peak = analysis.peak_for(device)
            peak_text = f"measured peak {fmt.flops(peak)}" if peak else f"no measured peak for {device}"
            parts += [f"Achieved throughput against the measured peak ({peak_text}):", flops_table]
        else:
            show_figure(ctx, flops_name, flops_alt, None, f"no FLOP counts on {device}")
        for sentence in _network_conclusions(ctx, device, cells):
            ctx.conclude(device, sentence)
    return "\n\n".join(p for p in parts if p)


def _core_table(ctx: Context, device: str) -> str:
    results, analysis = ctx.results, ctx.analysis
    cells = [c for job in jobs_on(results.timing, device) if (c := analysis.timing.get(job))]
    steps = list(dict.fromkeys(name for c in cells for name in c.optimizer_steps))
    rows = []
    for e in results.batch_exponents:
        for fw in results.frameworks:
            for loss in results.loss_modes:
                c = analysis.timing_cell(fw, loss, device, e)
                if c is None:
                    rows.append([str(2**e), framework_name(fw), loss, "not run", *[MISSING] * (5 + len(steps))])
                    continue
                row = [
                    str(c.batch_size), framework_name(fw), loss, str(c.blocks), format_interval(c.time, 1e3, "ms"),
                    fmt.mean_std(c.core.mean, c.core.std) if c.core else MISSING, str(c.disturbed),
                    fmt.seconds(c.loss.median) if c.loss else MISSING,
                    f"{c.memory_bytes / 2**20:.0f} MiB" if c.memory_bytes is not None else MISSING,
                ]
                row += [fmt.seconds(s.median) if (s := c.optimizer_steps.get(name)) else MISSING for name in steps]
                rows.append(row)
                if e == results.batch_exponents[-1]:  # summary.json keeps the largest batch only
                    ctx.headline(device, "core_time_s", fw, loss, f"b{c.batch_size}", value=interval_summary(c.time))
    headers = ["batch", "framework", "loss", "blocks", f"time ({CI})", "mean ± std of samples",
               "disturbed attempts", "loss alone (median)", "peak memory (median)"]
    headers += [f"{name} update (median, not in core)" for name in steps]
    return fmt.table(headers, rows, right=tuple(range(3, len(headers))))


def _compile_sentences(ctx: Context, device: str) -> list[str]:
    """For each compiling framework: its first call, its steady step, and after how many steps the
    compile has paid for itself against eager PyTorch at the same batch size and loss mode."""
    analysis, results = ctx.analysis, ctx.results
    sentences = []
    for fw in results.frameworks:
        for loss in results.loss_modes:
            for e in results.batch_exponents:
                c = analysis.timing_cell(fw, loss, device, e)
                eager = analysis.timing_cell(REFERENCE, loss, device, e)
                if c is None or c.compile is None or c.time.estimate is None:
                    continue
                step, first = c.time.estimate, c.compile.median
                text = (f"{framework_name(fw)} ({loss}, batch {c.batch_size}): {fmt.seconds(first)} to compile "
                        f"(first call, median of {c.compile.n} blocks), then {fmt.seconds(step)} per step")
                if eager is not None and eager.time.estimate is not None:
                    saved = eager.time.estimate - step
                    text += (f"; break-even with eager {framework_name(REFERENCE)} after {math.ceil(first / saved)} steps"
                             if saved > 0 else f"; never ahead of eager {framework_name(REFERENCE)} "
                             f"({fmt.seconds(eager.time.estimate)} per step)")
                ctx.headline(device, "compile_s", fw, loss, f"b{c.batch_size}", value=first)
                sentences.append(text + ".")
    if not sentences:
        return []
    caches = {fw: info for job, loaded in results.timing.items()
              if loaded.ok and job.device == device and (info := loaded.record.compile)
              for fw in [job.framework]}
    notes = [f"{framework_name(fw)}: " + (", ".join(f"{k} {v}" for k, v in info.items() if "cache" in k)
                                          or "no cache setting recorded") for fw, info in caches.items()]
    return ["Compile time, measured in every block before its steady-state runs:\n\n"
            + "\n".join(f"- {s}" for s in sentences) + ("\n\nCaches: " + "; ".join(notes) + "." if notes else "")]


def _comparison_cell(c: Any) -> str:
    if c is None:
        return MISSING
    return f"{format_interval(c.ratio)} {c.verdict.value.replace('_', ' ')}"


def _ratio_table(ctx: Context, device: str) -> str:
    """framework / PyTorch per loss mode, and explicit / autograd per framework (in effect an A/A
    pair: the loss is a fraction of a percent of the core process), with verdicts."""
    results, analysis = ctx.results, ctx.analysis
    columns = [(f"{fw}/{loss}", f"{REFERENCE}/{loss}", f"{framework_name(fw)} / {framework_name(REFERENCE)}, {loss}")
               for fw in analysis.compared_frameworks for loss in results.loss_modes]
    if {"autograd", "explicit"} <= set(results.loss_modes):
        columns += [(f"{fw}/explicit", f"{fw}/autograd", f"{framework_name(fw)} explicit / autograd")
                    for fw in results.frameworks]
    rows = []
    for e in results.batch_exponents:
        row = [str(2**e)]
        for a, b, _ in columns:
            c = analysis.comparison(device, e, a, b)
            row.append(_comparison_cell(c))
            if c is not None:
                ctx.headline(device, "comparisons", f"{a} over {b}", f"b{2**e}", value=interval_summary(c.ratio, c.verdict))
        rows.append(row)
    return fmt.table(["batch"] + [title for _, _, title in columns], rows, right=tuple(range(1, len(columns) + 1)))


def _control_table(ctx: Context, device: str) -> str:
    rows = []
    for (d, e), group in sorted(ctx.analysis.groups.items()):
        if d != device:
            continue
        c = group.analysis.control
        rows.append([str(2**e), c.b, _comparison_cell(c), str(len(c.rounds_used)),
                     "yes" if group.analysis.disagree else "no"])
    if not rows:
        return ""
    return fmt.table(["batch", "A/A cell", f"twin / cell ({COMPARE_CI})", "rounds", "blocks disagree"], rows,
                     right=(0, 2, 3))


def _flops_table(ctx: Context, device: str) -> str:
    """'' when no timing result on `device` counts FLOPs."""
    results, analysis = ctx.results, ctx.analysis
    rows = []
    for e in results.batch_exponents:
        for fw in results.frameworks:
            for loss in results.loss_modes:
                c = analysis.timing_cell(fw, loss, device, e)
                if c is None or c.flops_per_s is None:
                    continue
                fraction = analysis.fraction_of_peak(c)
                rows.append(
                    [str(c.batch_size), framework_name(fw), loss, fmt.flops(c.flops_per_s), fmt.percent(fraction)]
                )
                if e == results.batch_exponents[-1]:
                    ctx.headline(device, "fraction_of_peak", fw, loss, f"b{c.batch_size}", value=fraction)
    if not rows:
        return ""
    return fmt.table(["batch", "framework", "loss", "achieved", "fraction of peak"], rows, right=(0, 3, 4))


def _network_conclusions(ctx: Context, device: str, cells: list) -> list[str]:
    results, analysis = ctx.results, ctx.analysis
    sentences = []
    for fw in analysis.compared_frameworks:
        for loss in results.loss_modes:
            sentence = _trend_sentence(analysis, fw, loss, device, results.batch_exponents)
            if sentence:
                sentences.append(sentence)
    sentences += _core_share_sentences(analysis, device)
    disturbed = [c for c in cells if c.disturbed]
    if disturbed:
        which = ", ".join(f"{_label(c.job)} batch {c.batch_size} ({c.disturbed})" for c in disturbed)
        sentences.append(f"Block attempts flagged disturbed on {device} (those other processes disturbed were "
                         f"rerun; all are kept): {which}.")
    return sentences


def _trend_sentence(analysis: Analysis, fw: str, loss: str, device: str, exps: list[int]) -> str | None:
    points = [(2**e, r) for e in exps if (r := analysis.core_ratio(fw, loss, device, e)) is not None]
    if not points:
        return None
    name = f"{framework_name(fw)} / {framework_name(REFERENCE)} core-process time ({loss}) on {device}"
    if len(points) == 1:
        return f"{name}: {fmt.ratio(points[0][1])} at batch {points[0][0]}."
    (b0, r0), (b1, r1) = points[0], points[-1]
    if abs(r1 / r0 - 1) <= ABOUT_ONE:
        text = f"{name} is about the same at batch {b0} ({fmt.ratio(r0)}) and at batch {b1} ({fmt.ratio(r1)})"
    else:
        direction = "rises" if r1 > r0 else "falls"
        text = f"{name} {direction} from {fmt.ratio(r0)} at batch {b0} to {fmt.ratio(r1)} at batch {b1}"
    low, high = min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])
    inner = [f"{word} {fmt.ratio(r)} at batch {b}" for word, (b, r) in (("lowest", low), ("highest", high))
             if (b, r) not in (points[0], points[-1])]
    return text + (f"; {', '.join(inner)}" if inner else "") + "."


def _core_share_sentences(analysis: Analysis, device: str) -> list[str]:
    """How much of a training iteration the core process explains, at the training batch size
    (the study's step from its core-process figure to its training times)."""
    sentences = []
    for job, s in analysis.train.items():
        size = s.batch_size
        if job.device != device or not size or size & (size - 1) or not s.per_iteration_s:
            continue  # other device, or a training batch size that is no power of 2
        cell = analysis.timing_cell(job.framework, job.loss, device, size.bit_length() - 1)
        if cell is not None:
            sentences.append(
                f"{_label(job)} on {device}: the core process at the training batch size ({size}) takes "
                f"{fmt.seconds(cell.time.estimate)}, {fmt.percent(cell.time.estimate / s.per_iteration_s)} of a training "
                f"iteration ({fmt.seconds(s.per_iteration_s)})."
            )
    return sentences


# --- 4. accuracy ---------------------------------------------------------------------------------
ACCURACY_METHOD = """\
The study reported only the loss. Here every run is also scored on the test split with PCP@0.5,
PDJ@0.2 and PCK@0.2 (higher is better), next to a baseline that always predicts the mean
training pose: a network that has learnt something beats it. Test loss and PCP@0.5 carry 95 %
intervals from resampling the test images (BCa bootstrap), and so does their difference from the
baseline, paired by image: "beats it" means that interval excludes zero on the better side."""

SCORES = ("loss", "pcp", "pdj", "pck")
GAP_SCORES = ("loss", "pcp")  # with per-image intervals against the mean pose
HEADLINE_SCORES = ("loss", "pck")  # the ones summary.json keeps


def render_accuracy(ctx: Context) -> str:
    results, analysis = ctx.results, ctx.analysis
    rows, absent = [], []
    for device in results.devices:
        runs = [s for job in jobs_on(results.train, device) if (s := analysis.train.get(job))]
        if not runs:
            absent.append(device)
            continue
        for job in jobs_on(results.train, device):
            s = analysis.train.get(job)
            if s is None:
                rows.append([framework_name(job.framework), job.loss, device, "not run", *[MISSING] * 6])
                continue
            rows.append([framework_name(job.framework), job.loss, device, fmt.sig(s.final_train_loss),
                         *[_score(s.final_test, key, s.gaps.get(key)) for key in SCORES],
                         *[_gap(s.gaps.get(key)) for key in GAP_SCORES]])
            for key in HEADLINE_SCORES:
                ctx.headline(device, "test", job.framework, job.loss, key, value=s.final_test.get(key))
        baseline = next((s.baseline_test for s in runs if s.baseline_test), None)
        if baseline:
            rows.append(["mean pose (baseline)", MISSING, device, MISSING, *[_score(baseline, key) for key in SCORES],
                         MISSING, MISSING])
            for key in HEADLINE_SCORES:
                ctx.headline(device, "test", "baseline", key, value=baseline.get(key))
            differing = [s for s in runs if s.baseline_test and s.baseline_test != baseline]
            if differing:
                ctx.conclude(device, f"The mean-pose baseline differs between runs on {device} ({len(differing)} "
                             f"of {len(runs)} differ from the first): the runs did not all see the same test data.")
        ctx.conclude(device, _accuracy_sentence(runs, baseline, device))
    parts = [ACCURACY_METHOD]
    if rows:
        headers = ["framework", "loss", "device", "final training loss", f"test loss ({CI})", f"PCP@0.5 ({CI})",
                   "PDJ@0.2", "PCK@0.2", f"test loss − mean pose ({CI})", f"PCP@0.5 − mean pose ({CI})"]
        parts.append(fmt.table(headers, rows, right=tuple(range(3, 10))))
    if absent:
        parts.append(f"No training result on {join_words(absent)}.")
    return "\n\n".join(parts)


def _score(scores: dict[str, float], key: str, gap: AccuracyGap | None = None) -> str:
    if gap is not None:
        return format_interval(gap.trained) if key == "loss" else format_interval(gap.trained, 100, "%")
    value = scores.get(key)
    return fmt.sig(value) if key == "loss" else fmt.percent(value)


def _gap(gap: AccuracyGap | None) -> str:
    if gap is None:
        return MISSING
    shown = format_interval(gap.difference) if gap.metric == "loss" else format_interval(gap.difference, 100, "points")
    return f"{shown}: {'beats it' if gap.beats_baseline else 'does not beat it'}"


def _accuracy_sentence(runs: list[TrainSummary], baseline: dict[str, float] | None, device: str) -> str:
    losses = [(s, s.final_test["loss"]) for s in runs if "loss" in s.final_test]
    if not losses:
        return f"No test scores on {device}."
    text = f"Test loss on {device} {_span([v for _, v in losses], fmt.sig)}"
    if baseline and "loss" in baseline:
        worse = [s for s, _ in losses if not all(g.beats_baseline for g in s.gaps.values()) or not s.gaps]
        text += f" against the mean-pose baseline's {fmt.sig(baseline['loss'])}: "
        if worse:
            text += (f"{len(worse)} of {len(losses)} runs do not beat it on both test loss and PCP@0.5 with 95 % "
                     f"intervals that exclude it ({join_words([_label(s.job) for s in worse])})")
        else:
            text += f"all {len(losses)} runs beat it on test loss and PCP@0.5, with 95 % intervals that exclude it"
    pck = [s.final_test["pck"] for s in runs if "pck" in s.final_test]
    if pck:
        text += f"; PCK@0.2 {_span(pck, fmt.percent)}"
        if baseline and "pck" in baseline:
            text += f" (baseline {fmt.percent(baseline['pck'])})"
    return text + "."


def _span(values: list[float], show: Callable[[float], str]) -> str:
    low, high = show(min(values)), show(max(values))
    return f"is {low} in every run" if low == high else f"ranges from {low} to {high}"


# --- 5. the original study ----------------------------------------------------------------------
STUDY_METHOD = f"""\
The study (PyTorch 0.1.10 and Chainer 1.19, 2017) published the figures below. Absolute times
depend on the machine, the data set and the batch size, so only ratios are compared. The rule:
a ratio **agrees** when it lies within {round(AGREE_WITHIN * 100)} % of the study's; otherwise it is on
the **same side of 1** when both are above {1 + ABOUT_ONE:.2f}, both below {1 - ABOUT_ONE:.2f} or both
in between; otherwise it **disagrees**. Chainer / PyTorch is the wall time per training iteration
(the study's "time of 1 epoch", which its own numbers show to be per iteration at batch 32)."""

VERDICTS = (
    ("agrees", "Agrees"),
    ("same side of 1", "Same side of 1 but more than 10 % apart"),
    ("disagrees", "Disagrees"),
    ("n/a", "Not compared (not run here, or not measured by the study)"),
)


def render_study(ctx: Context) -> str:
    results, analysis = ctx.results, ctx.analysis
    rows, by_verdict = [], {}
    for device in DEVICES:
        if device not in results.devices:
            for quantity, key in (
                ("Chainer / PyTorch, training time per iteration (autograd)", "chainer_over_pytorch_per_iteration"),
                ("explicit / autograd, training time (PyTorch)", "explicit_over_autograd_train_time"),
            ):
                rows.append([device, quantity, fmt.ratio(STUDY[key][device]), "not in this run's grid", "n/a"])
            continue
        for quantity, study, ours in analysis.study_ratios(device):
            v = verdict(ours, study)
            rows.append([device, quantity, fmt.ratio(study) if study is not None else "not measured",
                         fmt.ratio(ours) if ours is not None else "not run", v])
            values = f" ({fmt.ratio(ours)} vs {fmt.ratio(study)})" if v != "n/a" else ""
            by_verdict.setdefault(v, []).append(f"{quantity} on {device}{values}")
        for fw in analysis.compared_frameworks:
            for loss in results.loss_modes:
                ctx.headline(device, f"{fw}_over_{REFERENCE}_per_iteration", loss,
                             value=analysis.per_iteration_ratio(fw, loss, device))
    parts = [STUDY_METHOD, fmt.table(["device", "ratio", "study", "this run", "verdict"], rows, right=(2, 3))]
    lines = []
    for v, label in VERDICTS:
        if by_verdict.get(v):
            lines.append(f"{label}: {'; '.join(by_verdict[v])}.")
            if v != "n/a":
                ctx.conclude("general", f"Against the study (rule in *Against the original study*): {lines[-1]}")
    parts.append("\n".join(f"- {line}" for line in lines))
    parts.append("Absolute figures, for scale only (different hardware, data and batch size):")
    parts.append(_absolute_table(ctx))
    for device in results.devices:
        sentence = _dominance_sentence(analysis, device)
        if sentence:
            parts.append(sentence)
            ctx.conclude(device, sentence)
    return "\n\n".join(p for p in parts if p)


def _absolute_table(ctx: Context) -> str:
    results, analysis = ctx.results, ctx.analysis
    rows = []
    for device in DEVICES:
        in_grid = device in results.devices
        for fw in ("chainer", "pytorch"):
            quantity = f"seconds per iteration at batch 32, {framework_name(fw)}"
            study = fmt.seconds(STUDY["seconds_per_iteration_b32"][device][fw])
            if not in_grid:
                rows.append([device, quantity, study, "not in this run's grid"])
                continue
            train = analysis.train_summary(fw, "autograd", device)
            cell = analysis.timing_cell(fw, "autograd", device, 5)
            ours = []
            if train is not None:
                ours.append(f"{fmt.seconds(train.per_iteration_s)} training (batch {train.batch_size})")
            if cell is not None:
                ours.append(f"{fmt.seconds(cell.time.estimate)} core process (batch 32)")
            rows.append([device, quantity, study, "; ".join(ours) or "not run"])
        for loss in ("autograd", "explicit"):
            study = f"{fmt.sig(STUDY['hours_100_epochs'][device][loss])} h (100 epochs of 343 iterations)"
            train = analysis.train_summary("pytorch", loss, device) if in_grid else None
            if train is not None:
                ours = f"{fmt.seconds(train.total_s)} ({train.epochs} epochs, {train.iterations} iterations)"
            else:
                ours = "not run" if in_grid else "not in this run's grid"
            rows.append([device, f"training time, PyTorch {loss}", study, ours])
    return fmt.table(["device", "quantity", "study", "this run"], rows)


def _dominance_sentence(analysis: Analysis, device: str) -> str | None:
    """The study's conclusion, tested: does the framework matter more than the loss's backward?"""
    framework_effects = [
        (fw, r) for fw in analysis.compared_frameworks
        if (r := analysis.per_iteration_ratio(fw, "autograd", device)) is not None
    ]
    loss_effects = [(e.framework, r) for e in analysis.autodiff(device) if (r := e.train_time_ratio) is not None]
    if not framework_effects or not loss_effects:
        return None
    fw, framework_ratio = max(framework_effects, key=lambda p: abs(p[1] - 1))
    loss_fw, loss_ratio = max(loss_effects, key=lambda p: abs(p[1] - 1))
    framework_size, loss_size = abs(framework_ratio - 1), abs(loss_ratio - 1)
    if framework_size > loss_size:
        finding = "as in the study, the network's implementation matters more than how the loss's backward is written"
    else:
        finding = "unlike the study, the loss's backward matters at least as much as the network's implementation"
    return (
        f"On {device} the framework changes the training time per iteration by {fmt.sig(100 * framework_size)} % "
        f"({framework_name(fw)} / {framework_name(REFERENCE)} = {fmt.ratio(framework_ratio)}, autograd) and the "
        f"loss's backward by at most {fmt.sig(100 * loss_size)} % (explicit / autograd = {fmt.ratio(loss_ratio)}, "
        f"{framework_name(loss_fw)}): {finding}."
    )


# --- 6. summary ----------------------------------------------------------------------------------
def render_summary(ctx: Context) -> str:
    results = ctx.results
    parts = ["### Conclusions", "Written by the report's code from the numbers above."]
    for scope in [*results.devices, "general"]:
        sentences = [s for sc, s in ctx.conclusions if sc == scope]
        if sentences:
            title = "Overall" if scope == "general" else scope
            parts.append(f"**{title}**\n\n" + "\n".join(f"- {s}" for s in sentences))
    for device in DEVICES:
        if device not in results.devices:
            found = results.off_grid.get(device, 0)
            extra = (f"{found} result file(s) for {device} exist under `results/` but lie outside the grid and "
                     "were not read." if found else f"No result file for {device} exists under `results/`.")
            grid = join_words(results.devices)
            parts.append(f"**{device}**: not in this run's grid (`grid.devices`: {grid}). {extra}")

    parts.append("### Jobs without results")
    rows = [
        [f"training {_label(job)} {job.device}", MISSING, run.missing]
        for job, run in results.train.items()
        if not run.ok
    ]
    rows += _batched_rows("timing", results.timing) + _batched_rows("per-layer breakdown", results.breakdown)
    if results.peak.missing:
        rows.append(["fp32 peak", MISSING, results.peak.missing])
    parts.append(fmt.table(["job", "batch sizes", "reason"], rows) if rows else "Every job of the grid has a result.")

    ctx.headline("jobs", "train", "expected", value=len(results.train))
    ctx.headline("jobs", "train", "present", value=len(ctx.analysis.train))
    ctx.headline("jobs", "timing", "expected", value=len(results.timing))
    ctx.headline("jobs", "timing", "present", value=len(ctx.analysis.timing))
    ctx.headline("jobs", "breakdown", "expected", value=len(results.breakdown))
    ctx.headline("jobs", "breakdown", "present", value=sum(loaded.ok for loaded in results.breakdown.values()))

    everything = [*results.train.values(), *results.timing.values(), *results.breakdown.values(), results.peak]
    problems = [p for run in everything for p in run.problems]
    if problems:
        parts += ["### Problems noticed in the results", "\n".join(f"- {fmt.escape(p)}" for p in problems)]
    return "\n\n".join(parts)


def _batched_rows(kind: str, results: dict[Job, Loaded]) -> list[list[str]]:
    """One row per job without a result and reason, its batch sizes in one cell."""
    grouped: dict[tuple[Job, str], list[int]] = {}
    for job, loaded in results.items():
        if not loaded.ok:
            grouped.setdefault((Job(job.framework, job.loss, job.device), loaded.missing), []).append(2**job.batch_exp)
    return [[f"{kind} {_label(job)} {job.device}", ", ".join(map(str, sizes)), reason]
            for (job, reason), sizes in grouped.items()]


# The report, in order. To add a section, insert one entry (see deeppose.report.markdown).
SECTIONS: list[Section] = [
    Section("Set-up", render_setup),
    Section("Effect of automatic differentiation", render_autodiff),
    Section("Impact of the network implementation", render_network),
    Section("Per-layer breakdown of the core process", render_breakdown),
    Section("Accuracy", render_accuracy),
    Section("Against the original study", render_study),
    Section("Summary", render_summary, last=True),
]
