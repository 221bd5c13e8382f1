"""Stage `peak`: the fp32 matrix-multiply ceiling (small matrices to keep the tests fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from deeppose import cli, peak
from deeppose.peak import KERNELS
from deeppose.records import paths
from deeppose.stats import STAT_KEYS

REPO = Path(__file__).resolve().parents[1]


def write_params(folder: Path, threads: int) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["timing"]["threads"] = threads
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_peak_result_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, threads=0)
    assert (
        cli.main(["peak", "--params", str(params), "--size", "256", "--warmup", "1", "--repeats", "3"]) == 0
    )
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
    assert result["device"] == "cpu" and result["n"] == 256
    assert set(result["kernels"]) == set(KERNELS)
    for name, record in result["kernels"].items():
        assert set(record) == {"samples_s", "stats", "flops", "flops_per_s"}
        assert len(record["samples_s"]) == 3 and set(record["stats"]) == set(STAT_KEYS)
        assert record["stats"]["median"] == pytest.approx(np.median(record["samples_s"]))
        assert record["flops_per_s"] == pytest.approx(record["flops"] / record["stats"]["median"])
        assert result["rates_flops_per_s"][name] == record["flops_per_s"]
    assert result["kernels"]["numpy_matmul"]["flops"] == 2 * 256**3  # 2 n^3
    assert result["kernels"]["torch_conv3x3"]["flops"] == 2 * 16 * 32 * 32 * 32**2 * 9  # n/8 channels
    assert result["peak_flops_per_s"] == max(result["rates_flops_per_s"].values())
    assert result["rates_flops_per_s"][result["best"]] == result["peak_flops_per_s"]
    assert result["threads"]["requested"] == len(os.sched_getaffinity(0))
    triad = result["bandwidth"]
    assert triad["n"] >= peak.TRIAD_MIN_ELEMENTS and triad["bytes"] == 12 * triad["n"]
    assert result["bandwidth_bytes_per_s"] == pytest.approx(triad["bytes"] / np.median(triad["samples_s"]))
    assert result["theoretical_flops_per_s"] == result["theoretical"]["flops_per_s"]


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


def test_theoretical_peak_is_cores_times_clock_times_flops_per_cycle() -> None:
    zen4 = peak.theoretical_peak(2, ZEN4)
    assert zen4["microarchitecture"] == "Zen 4" and zen4["flops_per_cycle_per_core"] == 32  # 2 x 256-bit FMA
    assert zen4["clock_hz"] == pytest.approx(2.596146e9)  # the first CPU's clock, not the second's
    assert zen4["flops_per_s"] == pytest.approx(2 * 2.596146e9 * 32)
    zen5 = peak.theoretical_peak(
        4, ZEN4.replace("cpu family\t: 25", "cpu family\t: 26").replace(": 17", ": 2")
    )
    assert zen5["microarchitecture"] == "Zen 5" and zen5["flops_per_s"] == pytest.approx(4 * 2.596146e9 * 64)


@pytest.mark.parametrize("change", [("cpu family\t: 25", "cpu family\t: 23"), ("cpu MHz\t\t: 2596.146", "")])
def test_unknown_microarchitecture_or_clock_gives_no_theoretical_peak(change: tuple[str, str]) -> None:
    unknown = peak.theoretical_peak(2, ZEN4.replace(*change))
    assert unknown["flops_per_s"] is None


@pytest.mark.parametrize(("option", "value"), [("--size", "0"), ("--repeats", "1"), ("--warmup", "-1")])
def test_bad_options_are_one_line_errors(
    option: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["peak", "--params", str(REPO / "params.yaml"), option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0]
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
            "--size",
            "128",
            "--repeats",
            "2",
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
