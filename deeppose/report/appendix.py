"""The appendix's sentences and tables, built in Python so that the template only places them."""

from __future__ import annotations

import json
from typing import Any

from deeppose import fmt
from deeppose.report.setup import Fairness, Setup

FAIRNESS = (
    "dtype threads kernel_library kernel_isa fp32_math runtime_checks optimizer_kernel allocator".split()
)


def pairs(items: Any, sep: str = ", ") -> str:
    """A mapping (or its items) as "key value" pairs: steering variables, an allocator policy."""
    return sep.join(f"{k} {v}" for k, v in dict(items).items())


def setting(v: Any) -> Any:
    return v if isinstance(v, str) or v is None else pairs(v) if isinstance(v, dict) else json.dumps(v)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value as written in the file) rows; long lists of objects counted."""
    if isinstance(data, dict) and data:
        return [pair for k, v in data.items() for pair in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list) and len(data) > 3 and all(isinstance(item, dict) for item in data):
        return [(prefix, f"{len(data)} entries (see the file)")]
    plain = isinstance(data, (dict, list, bool)) or data is None
    return [(prefix, json.dumps(data, sort_keys=True) if plain else str(data))]


def details(summary: str, key: str, data: Any) -> str:
    """Every field of `data` in a folded table."""
    rows = [[f"`{k}`", v] for k, v in flatten(data)]
    return f"<details><summary>{summary}</summary>\n\n{fmt.table([key, 'value'], rows)}\n\n</details>"


def parameters(raw: dict[str, Any], batch_sizes: Any) -> str:
    """The parameters a reader needs, in one sentence."""
    train, timing, model = raw["train"], raw["timing"], raw["model"]
    momentum = f", momentum {train['momentum']}" if train["optimizer"] == "momentum_sgd" else ""
    return (
        f"Data: {raw['data']['source']}, seed {raw['seed']}. Training: {train['epochs']} epochs at batch "
        f"{train['batch_size']}, {train['optimizer']} (lr {train['lr']}{momentum}), dropout "
        f"{model['dropout']}, "
        f"LRN {'on' if model['lrn'] else 'off'}, augmentation {'on' if train['augment'] else 'off'}, "
        f"evaluation every {train['eval_every']} epoch(s). Timing: {timing['blocks']} blocks of "
        f"{timing['repeats']} timed runs after {timing['warmup']} warm-up runs at batch sizes "
        f"{', '.join(map(str, batch_sizes))}. Threads: {train['threads'] or 'all cores'} (training), "
        f"{timing['threads'] or 'all cores'} (timing)."
    )


def data(s: Setup) -> str:
    """What the prepare stage kept and dropped, with every field folded below."""
    p = s.prepared
    if not p:
        return f"No data summary: {s.prepared_missing}."
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(p["dropped"]["by_reason"].items()) if v)
    return (
        f"Prepared data: source {p['source']}; kept train {p['kept']['train']}, test {p['kept']['test']}; "
        f"dropped {p['dropped']['total']}{f' ({reasons})' if reasons else ''}; content hash "
        f"`{p['sha256'][:16]}…`.\n\n" + details("Every field of the data summary", "field", p)
    )


def environment(s: Setup) -> str:
    """The machine and the software of every framework's largest timing result, and the commits."""
    machine, software = [], []
    for e in s.environment:
        name = fmt.framework_name(e.framework)
        cpu_id = pairs(e.cpu_id, " ").replace("_number", "") or fmt.MISSING
        machine.append([name, e.device, e.cpu, cpu_id, e.usable_cores, e.cores, e.gpu])
        software.append(
            [name, e.device, e.python, e.version, pairs(sorted(e.libraries.items())), pairs(e.threads)]
        )
    commits = fmt.join_words([f"`{c}`" for c in s.commits])
    if len(s.commits) > 1:
        commits += " (different commits)"
    if any("dirty" in c for c in s.commits):
        commits += "; `+dirty`: tracked files had uncommitted changes"
    machine, software = (
        [[fmt.MISSING if c in (None, "") else c for c in row] for row in t] for t in (machine, software)
    )
    head = "framework|device|CPU|CPU vendor, family, model, stepping|usable cores|cores|GPU".split("|")
    lib = ["framework", "device", "Python", "framework version", "other libraries", "threads (per pool)"]
    return (
        fmt.table(head, machine, right=[4, 5])
        + "\n\n"
        + fmt.table(lib, software)
        + f"\n\n- Packages: {pairs(s.packages) or fmt.MISSING}.\n- Project commit of the results: {commits}."
    )


def ceilings(s: Setup) -> str:
    """The compute and bandwidth ceilings and the ridge point between them."""
    p = s.peak
    if p.missing:
        return f"No measured peak: {p.missing}."
    theoretical = fmt.flops(p.theoretical) if p.theoretical else "not given"
    bandwidth = fmt.flops(p.bandwidth, "B/s") if p.bandwidth else "not measured by this run"
    ridge = f"{fmt.sig(p.ridge)} FLOP/byte" if p.ridge else fmt.MISSING
    held = "layers of lower arithmetic intensity are held back by memory, not arithmetic"
    rows = [
        ["compute ceiling (fp32)", fmt.flops(p.ceiling), p.label],
        ["theoretical fp32 peak", theoretical, p.theoretical_note],
        ["memory bandwidth ceiling", bandwidth, p.bandwidth_label],
        ["ridge point (compute / bandwidth)", ridge, held],
    ]
    return fmt.table(["ceiling", "value", "how"], [[c or fmt.MISSING for c in r] for r in rows], right=[1])


def fairness(fair: Fairness, pin: int | None) -> str:
    """What the timing processes ran with, one column per framework; the allocator; the asymmetries."""
    frameworks = list(fair.common)
    rows = [
        [field] + [setting(fair.common[fw].get(field)) or fmt.MISSING for fw in frameworks]
        for field in FAIRNESS
    ]
    rows.append(["steering variables"] + [pairs(sorted(fair.env[fw].items())) or "none" for fw in frameworks])
    table = fmt.table(["setting"] + [fmt.framework_name(fw) for fw in frameworks], rows)
    allocator = (
        f"glibc's allocator was pinned in every measuring process, for both frameworks alike "
        f"(`allocator.mmap_threshold_mib: {pin}`): arrays below {pin} MiB are reused from the heap "
        "instead of being mapped and zeroed afresh every iteration. glibc's default policy moves the "
        "framework ratios, most at the smallest and largest batches (docs/pipeline.md); set it to `null` "
        "to measure with the default."
        if pin is not None
        else "glibc's allocator ran with its default policy (`allocator.mmap_threshold_mib: null`): big "
        "arrays are mapped and zeroed afresh every iteration, at a threshold that moves with each "
        "process's history."
    )
    n = len(fair.asymmetries)
    asymmetries = (
        f"{n} asymmetr{'y' if n == 1 else 'ies'} between the frameworks' processes:\n\n"
        + "\n".join(
            f"- `{field}`: "
            + "; ".join(f"{fmt.framework_name(fw)} {setting(v)}" for fw, v in values.items())
            + f" (may bias: {bias})"
            for field, values, bias in fair.asymmetries
        )
        if n
        else "No asymmetry between the frameworks' processes."
    )
    flags = ", ".join(fair.isa_flags) or fmt.MISSING
    return f"CPU: {fair.cpu}; ISA flags: {flags}.\n\n{table}\n\n{allocator}\n\n{asymmetries}"


def jobs_without_results(f: Any) -> str:
    """Devices outside the grid, every job without a result and the problems noticed in the results."""
    parts = [
        f"Device {device}: not in this run's grid; "
        + (
            f"{n} result file(s) for it under `results/` were not read."
            if n
            else "no result file for it exists under `results/`."
        )
        for device, n in f.off_grid.items()
    ]
    rows = [
        [f"{m.kind} {m.job}", ", ".join(map(str, m.batch_sizes)) or fmt.MISSING, m.reason] for m in f.missing
    ]
    parts.append(
        fmt.table(["job", "batch sizes", "reason"], rows) if rows else "Every job of the grid has a result."
    )
    if f.problems:
        parts.append(
            "### Problems noticed in the results\n\n" + "\n".join(f"- {fmt.escape(p)}" for p in f.problems)
        )
    return "\n\n".join(parts)
