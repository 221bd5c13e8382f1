"""Stage `peak`: the fp32 compute ceiling in replicated blocks (small kernels to keep the tests fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from deeppose import cli, model, peak
from deeppose.measure import registers
from deeppose.peak import KERNELS
from deeppose.records import paths

REPO = Path(__file__).resolve().parents[1]


# Small kernels and the fewest blocks that give a spread: seconds instead of a minute.
TINY = {"size": 128, "batch": 1, "processes": 1, "blocks": 2, "warmup": 0, "repeats": 2}


def write_params(folder: Path, threads: int = 0, **peak_design: int) -> Path:
    """params.yaml with the tiny peak design (`peak_design` overrides its keys) and `threads`."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["timing"]["threads"] = threads
    raw["peak"] = TINY | peak_design
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_peak_result_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, threads=0)
    assert cli.main(["peak", "--params", str(params)]) == 0
    assert "GFLOP/s" in capsys.readouterr().out
    result = json.loads(paths.matmul_peak().read_text())
    assert set(result) == {
        "kind",
        "schema_version",
        "device",
        "n",
        "kernels",
        "rates_flops_per_s",
        "best",
        "peak_flops_per_s",
        "bandwidth",
        "bandwidth_bytes_per_s",
        "theoretical",
        "theoretical_flops_per_s",
        "threads",
        "environment",
        "provenance",
    }
    assert result["device"] == "cpu" and result["n"] == 128
    assert set(result["kernels"]) == set(KERNELS)
    layers = model.layer_flops(1)
    for name, record in result["kernels"].items():
        if name in peak.REGISTER and "unavailable" in record:
            assert result["rates_flops_per_s"][name] is None
            continue
        assert len(record["blocks"]) == 2  # every sample of every block kept, with where it ran
        assert [(b["process"], b["block"]) for b in record["blocks"]] == [(0, 0), (0, 1)]
        assert all(len(b["samples_s"]) == 2 for b in record["blocks"])
        rates = [b["flops"] / np.median(b["samples_s"]) for b in record["blocks"]]  # its own FLOPs
        assert record["block_rates_flops_per_s"] == pytest.approx(rates)
        assert record["flops_per_s"] == pytest.approx(max(rates))  # the best block's
        assert record["spread"] == pytest.approx((max(rates) - min(rates)) / np.median(rates))
        assert result["rates_flops_per_s"][name] == record["flops_per_s"]
        if name in peak.NETWORK:
            layer, phase = name.rsplit("_", 1)
            assert record["flops"] == layers[layer][phase] and record["batch"] == 1
    assert set(peak.NETWORK) == {f"{layer}_{phase}" for layer in layers for phase in ("forward", "backward")}
    assert result["kernels"]["numpy_matmul"]["flops"] == 2 * 128**3  # 2 n^3
    assert result["kernels"]["torch_conv3x3"]["flops"] == 2 * 16 * 32 * 32 * 16**2 * 9  # n/8 channels
    assert result["peak_flops_per_s"] == max(r for r in result["rates_flops_per_s"].values() if r)
    assert result["rates_flops_per_s"][result["best"]] == result["peak_flops_per_s"]
    assert result["threads"]["requested"] == len(os.sched_getaffinity(0))
    # each block runs the kernels in its own seeded order
    orders = [
        [b["position"] for b in r["blocks"]] for r in result["kernels"].values() if r and r.get("blocks")
    ]
    assert any(order[0] != order[1] for order in orders)
    triad = result["bandwidth"]
    assert triad["n"] >= peak.TRIAD_MIN_ELEMENTS and triad["bytes"] == 12 * triad["n"]
    assert len(triad["blocks"]) == 2 and result["bandwidth_bytes_per_s"] == triad["bytes_per_s"]
    how = result["theoretical"]
    assert result["theoretical_flops_per_s"] == how["flops_per_s"]
    if registers.unavailable() is None:  # the clock was measured, on every core in every block
        assert len(how["clock_samples_hz"]) == 2 * result["threads"]["requested"]
        assert 0.3e9 < how["clock_hz"] < 7e9 and how["clock_source"].startswith("measured")


ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2596.146
flags\t\t: fpu avx2 avx512f fma

processor\t: 1
cpu MHz\t\t: 3700.000
"""


def test_theoretical_peak_is_cores_times_measured_clock_times_flops_per_cycle() -> None:
    zen4 = peak.theoretical_peak(2, [3.4e9, 3.5e9, 3.6e9], ZEN4)
    assert zen4["microarchitecture"] == "Zen 4" and zen4["flops_per_cycle_per_core"] == 32  # 2 x 256-bit FMA
    assert zen4["clock_hz"] == pytest.approx(3.6e9)  # the highest sample: interference only lowers it
    assert zen4["nominal_clock_hz"] == pytest.approx(2.596146e9)  # the first CPU's, kept, not used
    assert zen4["flops_per_s"] == pytest.approx(2 * 3.6e9 * 32)
    zen5 = peak.theoretical_peak(
        4, [3e9], ZEN4.replace("cpu family\t: 25", "cpu family\t: 26").replace(": 17", ": 2")
    )
    assert zen5["microarchitecture"] == "Zen 5" and zen5["flops_per_s"] == pytest.approx(4 * 3e9 * 64)


def test_the_reported_clock_alone_gives_no_theoretical_peak() -> None:
    """The kernel's "cpu MHz" is a hypervisor's nominal clock: never used as if measured."""
    nominal = peak.theoretical_peak(2, [], ZEN4, clock_unavailable="no executable mapping")
    assert nominal["flops_per_s"] is None and nominal["clock_hz"] is None
    assert nominal["how"] == "no measured clock (no executable mapping): no theoretical peak"
    unknown = peak.theoretical_peak(2, [3e9], ZEN4.replace("cpu family\t: 25", "cpu family\t: 23"))
    assert unknown["flops_per_s"] is None and "unknown microarchitecture" in unknown["how"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("size", 0, "peak.size: 0 is less than the minimum of 1"),
        ("repeats", 1, "peak.repeats: 1 is less than the minimum of 2"),
        ("warmup", -1, "peak.warmup: -1 is less than the minimum of 0"),
        ("batch", 0, "peak.batch: 0 is less than the minimum of 1"),
        ("processes", 0, "peak.processes: 0 is less than the minimum of 1"),
        ("blocks", 1, "peak.blocks: blocks x processes must be at least 2"),
    ],
)
def test_a_bad_design_is_a_one_line_error_before_anything_runs(
    key: str,
    value: int,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, **{key: value})  # TINY has one process: one block is too few
    assert cli.main(["peak", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "results").exists()


def test_peak_uses_timing_threads(tmp_path: Path) -> None:
    """In a subprocess, so that the one-thread limit stays out of the test process."""
    params = write_params(tmp_path, threads=1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeppose",
            "peak",
            "--params",
            str(params),
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    threads = json.loads((tmp_path / paths.matmul_peak()).read_text())["threads"]
    assert threads["requested"] == 1 and threads["torch_intra_op"] == 1
    assert threads["native"] and all(pool["num_threads"] == 1 for pool in threads["native"])


X86 = registers.unavailable() is None


def test_register_kernels_are_the_instructions_they_claim() -> None:
    """The encodings objdump gives (`objdump -D -b binary -mi386:x86-64`)."""
    assert registers.vfmadd231ps("avx2", 0) == bytes.fromhex("c4c20db8c7")  # ymm0 += ymm14 * ymm15
    assert registers.vfmadd231ps("avx2", 11) == bytes.fromhex("c4420db8df")  # ymm11
    assert registers.vfmadd231ps("avx512", 0) == bytes.fromhex("62d20d48b8c7")  # zmm0 += zmm14 * zmm15
    assert registers.vfmadd231ps("avx512", 8) == bytes.fromhex("62520d48b8c7")  # zmm8
    code = registers.add_chain_code()
    assert code.count(bytes.fromhex("4801d0")) == registers.ADD_CHAIN and code.endswith(b"\xc3")


@pytest.mark.skipif(not X86, reason="x86-64 Linux machine code")
def test_register_kernels_measure_a_plausible_clock_and_fma_rate() -> None:
    assert "lacks avx512f" in (registers.unavailable("avx512", "flags\t\t: fpu avx2 fma\n") or "")
    clock = registers.Clock(1, target_s=0.02)
    hz = max(clock.hz()[0] for _ in range(5))  # the best of five: another process only lowers it
    assert 0.3e9 < hz < 7e9
    if registers.unavailable("avx2") is None:
        fma = registers.FmaKernel("avx2", 1, target_s=0.02)
        seconds = []
        for _ in range(5):
            start = time.perf_counter()
            fma.run()
            seconds.append(time.perf_counter() - start)
        per_cycle = fma.flops() / min(seconds) / max(hz, *(clock.hz()[0] for _ in range(5)))
        # no x86 core retires more than two 256-bit FMAs (32 FLOPs) a cycle; a margin for the clock's drift
        assert 4 < per_cycle < 32 * 1.25


def test_each_block_rate_uses_its_own_flops() -> None:
    """Each process calibrates its FMA loops' length: a block's rate divides that block's FLOPs."""
    rates = peak._rates(
        [{"flops": 100, "samples_s": [1.0, 1.2, 0.8]}, {"flops": 50, "samples_s": [0.5, 0.5]}]
    )
    assert rates["block_rates"] == [100.0, 100.0] and rates["best"] == 100.0 and rates["spread"] == 0.0
