"""deeppose.report.ceilings and the roofline figure: ceilings never below a rate the run achieved,
one denominator and no share above 100 %, points under their roofs, a theoretical peak only from a
measured clock, and figure bytes that do not depend on the CPU's last bits.

The fixture project (tests/report_project.py) records a `peak` stage best of PEAK = 150 GFLOP/s
while its breakdown layers run faster: the case the issue saw (a conv layer at 130 % of "peak").
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from report_project import (
    BANDWIDTH,
    BREAKDOWN_EXP,
    EXPS,
    MISSING_BREAKDOWN,
    MODES,
    PEAK,
    ROOT,
    write_breakdown,
    write_peak,
)

from deeppose.config import load_params
from deeppose.grid import Job
from deeppose.report import ceilings, layer_figures, plot_style
from deeppose.report.analysis import analyse
from deeppose.report.load import Loaded, load_results


def make_ceiling_project(root: Path) -> Path:
    """report_project's grid on cpu with its breakdown and `peak` results (no training or timing
    results: the ceilings come from the peak record and the breakdown's layers and kernel runs)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["grid"].update(
        frameworks=["pytorch", "chainer"], loss_modes=list(MODES), devices=["cpu"], batch_exponents=list(EXPS)
    )
    raw["breakdown"]["batch_exponents"] = [BREAKDOWN_EXP]
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params("params.yaml")
        for job in params.breakdown_jobs():
            if job != MISSING_BREAKDOWN:
                write_breakdown(params, job)
        write_peak(params)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(results, findings) of the ceiling project."""
    root = make_ceiling_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        results = load_results(load_params("params.yaml"))
        return results, analyse(results)


def shares(findings) -> list[float]:
    found = [c.fraction_of_peak for d in findings.devices for c in d.cells]
    found += [
        x.fraction_of_peak for d in findings.devices for b in d.breakdown for j in b.jobs for x in j.layers
    ]
    return [s for s in found if s is not None]


def test_the_ceiling_is_never_below_a_rate_achieved_in_the_run(project):
    results, findings = project
    compute, traffic = ceilings.achieved_rates(results, "cpu")
    top = max(a.rate for a in compute)
    assert top > PEAK  # the fixture is the case: the old ceiling (PEAK) lay below it
    p = findings.setup.peak
    assert p.ceiling == top and p.best_observed == PEAK and p.lower_bound
    best = max(compute, key=lambda a: a.rate)
    assert p.label.startswith(f"lower bound (achieved by {best.what};") and "150 GFLOP/s" in p.label
    # the bandwidth ceiling likewise: the triad, or the traffic a layer must have moved
    assert p.bandwidth == max([BANDWIDTH] + [a.rate for a in traffic]) and p.bandwidth_measured == BANDWIDTH


def test_a_timing_cell_above_every_other_rate_sets_the_ceiling(project):
    results, _ = project
    fast = SimpleNamespace(flops_per_s=1e13, batch_size=32)
    job = Job("pytorch", "autograd", "cpu", 5)
    timing = {job: Loaded(Path("t.json"), fast)}  # type: ignore[arg-type]
    p = ceilings.peak(dataclasses.replace(results, timing=timing))
    assert p.ceiling == 1e13 and p.lower_bound
    assert "achieved by PyTorch autograd core process, batch 32 (timing)" in p.label
    assert ceilings.share(1e13, p, "cpu") == 1.0


def test_no_share_above_100_percent_and_one_denominator(project):
    _, findings = project
    found = shares(findings)
    assert found and max(found) <= 1.0
    p = findings.setup.peak
    # the ceiling is the fastest process's layer (0.99 times the pooled time, BREAKDOWN_SPREAD): the
    # pooled layer printed beside it reaches 99 %
    assert max(found) == pytest.approx(0.99) and ", process " in p.label
    for d in findings.devices:
        for c in d.cells:
            if c.fraction_of_peak is not None:
                assert c.fraction_of_peak == c.flops_per_s / p.ceiling  # the one denominator
    with pytest.raises(ValueError, match="exceeds the ceiling"):
        ceilings.share(p.ceiling * 1.01, p, "cpu")
    assert ceilings.share(p.ceiling, p, "cuda") is None  # another device's rate has no share here


def test_no_printed_percentage_of_peak_exceeds_100(project):
    from deeppose.report import sections

    _, findings = project
    markdown = sections.document(findings, set(), "")
    assert "130 %" not in markdown
    cells = [line for line in markdown.splitlines() if line.startswith("|") and " %" in line]
    percents = [float(x) for line in cells for x in re.findall(r"([\d.]+) %\)", line)]
    assert percents and max(percents) <= 100


def test_roofline_points_lie_under_their_roofs(project):
    _, findings = project
    p = findings.setup.peak
    checked = 0
    for d in findings.devices:
        for b in d.breakdown:
            for fw, phase, intensity, gflops, layer in layer_figures.roofline_points(b):
                assert gflops <= plot_style.plotted(p.ceiling / 1e9), (fw, layer, phase)
                assert gflops <= plot_style.plotted(p.bandwidth * intensity / 1e9) * (1 + 1e-3), (fw, layer)
                checked += 1
    assert checked


def test_theoretical_peak_only_from_a_measured_clock(project):
    results, findings = project
    p = findings.setup.peak
    # the fixture's record holds the kernel's reported (nominal) clock: no theoretical peak from it
    assert p.theoretical is None and p.implied_clock_hz == pytest.approx(p.ceiling / (2 * 32))
    assert p.theoretical_note.startswith("not given: the clock was not measured; the kernel reports 2.00 GHz")
    assert f"at least {p.implied_clock_hz / 1e9:.2f} GHz" in p.theoretical_note
    clock = 1.5 * p.implied_clock_hz  # a measured clock at which the ceiling is 2/3 of the theoretical peak
    how = results.peak.record.theoretical | {
        "clock_source": "measured",
        "clock_hz": clock,
        "flops_per_s": 2 * clock * 32,
        "how": "2 cores x the measured clock x 32",
    }
    value, note, _ = ceilings._theoretical(how, p.ceiling)
    assert value == 2 * clock * 32 and note == how["how"]
    value, note, _ = ceilings._theoretical(how | {"flops_per_s": p.ceiling / 2}, p.ceiling)
    assert value == p.ceiling / 2 and "below the ceiling" in note


def test_no_peak_record_no_ceiling(project):
    results, _ = project
    missing = dataclasses.replace(results.peak, record=None, missing="no result file")
    p = ceilings.peak(dataclasses.replace(results, peak=missing))
    assert p.ceiling is None and p.missing == "no result file" and p.kernels == {}
    assert ceilings.share(1e9, p, "cpu") is None


def _nudged(findings, factor: float):
    """The findings with every rate and ceiling scaled by `factor`: another CPU's last bits."""
    p = findings.setup.peak
    peak = dataclasses.replace(p, ceiling=p.ceiling * factor, bandwidth=p.bandwidth * factor)
    devices = []
    for d in findings.devices:
        batches = []
        for b in d.breakdown:
            jobs = tuple(
                dataclasses.replace(
                    j,
                    layers=tuple(
                        dataclasses.replace(x, flops_per_s=x.flops_per_s and x.flops_per_s * factor)
                        for x in j.layers
                    ),
                )
                for j in b.jobs
            )
            roof = tuple(dataclasses.replace(r, intensity=r.intensity * factor) for r in b.roofline)
            batches.append(dataclasses.replace(b, jobs=jobs, roofline=roof))
        devices.append(dataclasses.replace(d, breakdown=tuple(batches)))
    return dataclasses.replace(
        findings, setup=dataclasses.replace(findings.setup, peak=peak), devices=tuple(devices)
    )


def test_roofline_png_is_the_same_on_any_cpu(project):
    _, findings = project
    d = findings.devices[0]
    b = d.breakdown[0]

    def digest(f) -> str:
        return hashlib.sha256(
            plot_style.png(lambda: layer_figures.roofline_figure(f, f.devices[0], b))
        ).hexdigest()

    first = digest(findings)
    assert digest(findings) == first  # regenerated: the same bytes
    # a last-bit difference in every computed value (as numpy's AVX-512 and AVX2 code give) changes nothing
    nudged = _nudged(findings, 1 + 2**-50)
    assert nudged.setup.peak.ceiling != findings.setup.peak.ceiling
    b = nudged.devices[0].breakdown[0]
    assert digest(nudged) == first


def test_roofline_coordinates_are_rounded(project):
    _, findings = project
    d = findings.devices[0]
    figure = layer_figures.roofline_figure(findings, d, d.breakdown[0])
    ax = figure.axes[0]
    values = [*ax.get_xlim(), *ax.get_ylim()]
    for line in ax.get_lines():
        values += [float(v) for v in (*line.get_xdata(), *line.get_ydata())]
    for collection in ax.collections:
        values += [float(v) for v in collection.get_offsets().ravel()]
    assert len(values) > 10
    for v in values:
        if math.isfinite(v) and v not in (0.0, 1.0):  # axhline/axvline span the axes in [0, 1]
            assert v == plot_style.plotted(v), v


def test_a_peak_stage_above_every_achieved_rate_is_the_ceiling(project):
    results, _ = project
    record = dataclasses.replace(
        results.peak.record,
        peak_flops_per_s=1e13,
        best="conv2_forward",
        kernels={"conv2_forward": {"blocks": [{}] * 6, "spread": 2.719, "flops_per_s": 1e13}},
        rates_flops_per_s={"conv2_forward": 1e13},
    )
    p = ceilings.peak(dataclasses.replace(results, peak=dataclasses.replace(results.peak, record=record)))
    assert p.ceiling == p.best_observed == 1e13 and not p.lower_bound
    assert p.label.startswith(
        "the `peak` stage's best kernel, conv2 forward, the best of 6 blocks (spread 270 %)"
    )
