"""The machine's ceilings, computed once: the denominator of every "% of peak" and the roofs of the
roofline (Williams et al. 2009).

A measured ceiling is a rate some kernel reached, not a bound the hardware sets: so the compute
ceiling is the largest of the `peak` stage's best kernel rate and every rate achieved in the same run
on its device (labelled a lower bound when one of those is higher), and the bandwidth ceiling the
STREAM triad's or the least traffic a layer must have moved. Every roofline point then lies under
both roofs and no "% of peak" exceeds 100 %. The theoretical peak is given only where the clock was
measured: a hypervisor reports the nominal clock. Without a `peak` record there is no ceiling: one of
achieved rates alone would make the best layer 100 % by definition.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deeppose import roofline
from deeppose.fmt import flops, framework_name, sig
from deeppose.records.peak import PeakResult
from deeppose.report.load import Loaded, Results

SHARE = 'the denominator of every "% of peak"'


@dataclass(frozen=True)
class Achieved:
    """A rate reached in this run, and what reached it."""

    rate: float  # FLOP/s, or B/s for traffic
    what: str


@dataclass(frozen=True)
class Peak:
    """The ceilings of the `peak` stage's device; every field empty without a peak (`missing` says why)."""

    ceiling: float | None = None  # FLOP/s: the denominator of every "% of peak"
    label: str | None = None  # what set it: the peak stage's kernel, or "lower bound (achieved by ...)"
    lower_bound: bool = False  # a rate achieved in the run exceeded the peak stage's
    best_observed: float | None = None  # FLOP/s: the peak stage's best kernel rate
    kernel: str | None = None
    n: int | None = None
    kernels: dict[str, float | None] = dataclasses.field(default_factory=dict)  # each kernel's rate
    spread: float | None = None  # the best kernel's block rates: (max - min) / median
    theoretical: float | None = None  # cores x measured clock x FLOPs per cycle; None where not measured
    theoretical_how: dict[str, Any] | None = None
    theoretical_note: str | None = None  # how it was computed, or why it is not given
    implied_clock_hz: float | None = None  # the clock the ceiling needs at least
    bandwidth: float | None = None  # B/s: the bandwidth ceiling
    bandwidth_label: str | None = None
    bandwidth_lower_bound: bool = False
    bandwidth_measured: float | None = None  # B/s, the STREAM triad
    bandwidth_detail: dict[str, Any] | None = None
    device: str | None = None
    missing: str | None = None

    @property
    def ridge(self) -> float | None:
        """The intensity (FLOP/byte) from which memory traffic no longer caps the rate."""
        if self.ceiling is None or not self.bandwidth:
            return None
        return self.ceiling / self.bandwidth


def share(rate: float | None, peak: Peak, device: str) -> float | None:
    """`rate` over the compute ceiling: the one "% of peak". None off its device; above 1 is a bug."""
    if rate is None or device != peak.device or not peak.ceiling:
        return None
    fraction = rate / peak.ceiling
    if fraction > 1:
        raise ValueError(f"{flops(rate)} exceeds the ceiling {flops(peak.ceiling)}: it was left out of it")
    return fraction


def achieved_rates(results: Results, device: str) -> tuple[list[Achieved], list[Achieved]]:
    """Every FLOP rate achieved on `device`, and the memory traffic each rated layer-phase must have had."""
    compute, traffic = [], []
    for job, loaded in sorted(results.timing.items(), key=lambda i: i[0].label):
        r = loaded.record
        if job.device == device and loaded.ok and r.flops_per_s:
            what = f"{framework_name(job.framework)} {job.loss} core process, batch {r.batch_size} (timing)"
            compute.append(Achieved(r.flops_per_s, what))
    for job, loaded in sorted(results.breakdown.items(), key=lambda i: i[0].label):
        r = loaded.record
        if job.device != device or not loaded.ok:
            continue
        where = f"breakdown {job.label}"
        for kernel, rate in sorted((r.peak.get("rates_flops_per_s") or {}).items()):
            if rate:
                compute.append(Achieved(rate, f"the kernel {kernel} ({where})"))
        intensity = {key: t.intensity for key, t in roofline.layer_traffic(r.batch_size).items()}
        # the pooled layers and each process's own: every one is a rate this run achieved
        rows = [(row, where) for row in r.layers]
        rows += [(row, f"{where}, process {i}") for i, p in enumerate(r.processes) for row in p.layers]
        for row, source in rows:
            rate = row.get("flops_per_s")
            if not rate:
                continue
            what = f"{framework_name(job.framework)} {row['layer']} {row['phase']} ({source})"
            compute.append(Achieved(rate, what))
            if (row["layer"], row["phase"]) in intensity:
                traffic.append(Achieved(rate / intensity[row["layer"], row["phase"]], what))
    return compute, traffic


def _highest(measured: float | None, achieved: list[Achieved]) -> tuple[float | None, Achieved | None]:
    """The ceiling and, where an achieved rate set it, that rate."""
    top = max(achieved, key=lambda a: a.rate, default=None)
    if top is not None and (measured is None or top.rate > measured):
        return top.rate, top
    return measured, None


def _theoretical(how: dict[str, Any], ceiling: float | None) -> tuple[float | None, str, float | None]:
    """(theoretical peak, its note, the clock the ceiling implies) from the peak record's `theoretical`."""
    per_cycle, cores = how.get("flops_per_cycle_per_core"), how.get("cores")
    implied = ceiling / (cores * per_cycle) if ceiling and per_cycle and cores else None
    needs = f"; the ceiling needs at least {implied / 1e9:.2f} GHz" if implied else ""
    measured = bool(how.get("clock_source")) and how.get("flops_per_s")
    if not per_cycle:
        return None, f"not given: {how.get('how') or 'unknown microarchitecture'}", None
    if not measured:
        nominal = how.get("nominal_clock_hz", how.get("clock_hz"))
        reported = f"; the kernel reports {nominal / 1e9:.2f} GHz, a nominal clock" if nominal else ""
        basis = f" ({cores} cores x {per_cycle} FLOP per cycle)" if implied else ""
        note = f"not given: the clock was not measured{reported}{needs}{basis}"
        return None, note, implied
    value = float(how["flops_per_s"])
    if ceiling and ceiling > value:
        faster = "below the ceiling, so the cores ran faster than while the clock was measured"
        return value, f"{how['how']}: {faster}{needs}", implied
    return value, str(how["how"]), implied


def peak(results: Results, device: str | None = None) -> Peak:
    """The ceilings from the `peak` record and every rate of the run on its device."""
    loaded: Loaded = results.peak
    r = loaded.record
    if not isinstance(r, PeakResult):
        return Peak(missing=loaded.missing)
    device = device or r.device
    compute, traffic = achieved_rates(results, device)
    ceiling, by = _highest(r.peak_flops_per_s, compute)
    best = (r.kernels.get(r.best) or {}) if r.best else {}
    spread = best.get("spread")
    if by:
        measured = flops(r.peak_flops_per_s) if r.peak_flops_per_s else "not measured"
        label = f"lower bound (achieved by {by.what}; the `peak` stage's best kernel: {measured}); {SHARE}"
    elif r.best:
        blocks = (
            ""
            if spread is None
            else f", the best of {len(best['blocks'])} blocks (spread {sig(100 * spread, 2)} %)"
        )
        label = f"the `peak` stage's best kernel, {r.best.replace('_', ' ')}{blocks}; {SHARE}"
    else:
        label = None
    bandwidth, by_traffic = _highest(r.bandwidth_bytes_per_s, traffic)
    band = r.bandwidth or {}
    if by_traffic:
        triad = flops(r.bandwidth_bytes_per_s, "B/s") if r.bandwidth_bytes_per_s else "not measured"
        band_label = f"lower bound (the traffic {by_traffic.what} must have moved; STREAM triad: {triad})"
    elif bandwidth:
        cache = band.get("last_level_cache_bytes")
        band_label = (
            f"STREAM triad a = b + s·c over arrays of {band.get('n')} floats (3 x 4 bytes moved per element)"
            + (f", each at least 4x the last-level cache ({cache / 2**20:.0f} MiB)" if cache else "")
        )
    else:
        band_label = "not measured by this run (STREAM triad in the `peak` stage)"
    theoretical, note, implied = _theoretical(r.theoretical, ceiling)
    measured = (r.peak_flops_per_s, r.best, r.n, dict(r.rates_flops_per_s), spread)
    clock = (theoretical, r.theoretical | {"how": note}, note, implied)
    bandwidths = (bandwidth, band_label, by_traffic is not None, r.bandwidth_bytes_per_s, r.bandwidth)
    return Peak(ceiling, label, by is not None, *measured, *clock, *bandwidths, device)
