"""deeppose.measure.fairness and deeppose.asymmetries: manifests (hand-made and one real collection) and their
asymmetries."""

from __future__ import annotations

import copy
import json

import pytest

from deeppose import asymmetries
from deeppose.measure import fairness

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC 9R45 (Zen 5)
stepping\t: 1
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 popcnt avx f16c avx2 bmi2 avx512f avx512_vnni amx_tile lm
processor\t: 1
model name\t: other
"""


def manifest(framework: str, **common: object) -> dict:
    """A hand-made manifest as `collect` writes it, with `common` fields overridden."""
    base = {
        "framework": framework,
        "device": "cpu",
        "cpu": {"model": "AMD EPYC 9R45", "isa_flags": ["avx2", "avx512f"]},
        "env": {"OMP_NUM_THREADS": "2"},
        "native": {
            "numpy/openblas": {
                "version": "0.3.23",
                "num_threads": 2,
                "architecture": "Haswell",
                "threading_layer": "pthreads",
                "file": "libopenblas.so",
            }
        },
        "numpy": "1.26.4",
        "common": {
            "dtype": "float32",
            "threads": 2,
            "kernel_library": "numpy + OpenBLAS",
            "kernel_isa": "AVX2",
            "fp32_math": "ieee",
            "runtime_checks": False,
        },
    }
    base["common"].update(common)
    return base


def test_cpu_description_reads_model_and_isa_flags() -> None:
    described = fairness.cpu_description(CPUINFO)
    assert described["model"] == "AMD EPYC 9R45 (Zen 5)"
    assert (described["vendor"], described["family"], described["model_number"], described["stepping"]) == (
        "AuthenticAMD",
        26,
        2,
        1,
    )
    assert described["isa_flags"] == sorted(
        [
            "sse",
            "sse2",
            "ssse3",
            "fma",
            "sse4_1",
            "sse4_2",
            "avx",
            "f16c",
            "avx2",
            "bmi2",
            "avx512f",
            "avx512_vnni",
            "amx_tile",
        ]
    )


def test_steering_env_keeps_only_library_variables() -> None:
    environ = {
        "OPENBLAS_CORETYPE": "Haswell",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OMP_NUM_THREADS": "1",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_VERBOSE": "0",
        "KMP_AFFINITY": "compact",
        "HOME": "/root",
        "PATH": "/bin",
        "CHAINER_TYPE_CHECK": "0",
    }
    assert set(fairness.steering_env(environ)) == set(environ) - {"HOME", "PATH"}


@pytest.mark.parametrize(
    ("architecture", "isa"),
    [("Haswell", "AVX2"), ("SkylakeX", "AVX512"), ("Zen", "AVX2"), ("NewThing", "NewThing")],
)
def test_openblas_architecture_to_isa(architecture: str, isa: str) -> None:
    native = {
        "torch/openmp": {},
        "scipy/openblas": {"architecture": "Prescott"},
        "numpy/openblas": {"architecture": architecture},
    }
    assert fairness.openblas_isa(native) == isa  # numpy's, which Chainer's CPU path uses
    assert fairness.openblas_isa({"system/openblas": {"architecture": architecture}}) == isa


def test_asymmetries_name_each_differing_field_and_what_it_biases() -> None:
    pytorch = manifest("pytorch", kernel_library="oneDNN + MKL", kernel_isa="AVX512")
    pytorch["pytorch"] = {"cpu_capability": "AVX512", "intra_op_threads": 2}
    chainer = manifest("chainer", runtime_checks=True)
    chainer["env"]["OPENBLAS_CORETYPE"] = "Haswell"
    chainer["chainer"] = {"type_check": True}
    found = {a.field: a for a in asymmetries.asymmetries({"pytorch/cpu": pytorch, "chainer/cpu": chainer})}
    assert set(found) == {
        "common.kernel_library",
        "common.kernel_isa",
        "common.runtime_checks",
        "env.OPENBLAS_CORETYPE",
    }
    isa = found["common.kernel_isa"]
    assert isa.values == {"pytorch/cpu": "AVX512", "chainer/cpu": "AVX2"}
    assert isa.comparisons == ("pytorch/cpu vs chainer/cpu",) and "vector" in isa.may_bias
    assert found["env.OPENBLAS_CORETYPE"].values == {"pytorch/cpu": None, "chainer/cpu": "Haswell"}
    assert "small batches" in found["common.runtime_checks"].may_bias
    # identical manifests: nothing to report; a second machine: everything about the CPU
    assert asymmetries.asymmetries({"a": pytorch, "b": copy.deepcopy(pytorch)}) == []
    elsewhere = copy.deepcopy(pytorch)
    elsewhere["cpu"]["model"] = "Intel Xeon"
    (moved,) = asymmetries.asymmetries({"here": pytorch, "there": elsewhere})
    assert moved.field == "cpu.model" and "different machines" in moved.may_bias


def test_asymmetries_pair_only_the_manifests_that_differ() -> None:
    found = asymmetries.asymmetries(
        {
            "pytorch/cpu": manifest("pytorch", threads=2),
            "chainer/cpu": manifest("chainer", threads=2),
            "numpy/cpu": manifest("numpy", threads=1),
        }
    )
    (threads,) = found
    assert threads.field == "common.threads"
    assert threads.comparisons == ("pytorch/cpu vs numpy/cpu", "chainer/cpu vs numpy/cpu")


def test_real_collection_of_both_frameworks() -> None:
    torch = pytest.importorskip("torch")
    from deeppose.backends.chainer_import import import_chainer

    import_chainer()
    manifests = {f"{name}/cpu": fairness.collect(name) for name in ("numpy", "pytorch", "chainer")}
    json.dumps(manifests, allow_nan=False)  # plain JSON values
    pytorch, chainer = manifests["pytorch/cpu"], manifests["chainer/cpu"]
    assert pytorch["common"]["kernel_isa"] == torch.backends.cpu.get_cpu_capability()
    assert pytorch["pytorch"]["intra_op_threads"] == pytorch["common"]["threads"] == torch.get_num_threads()
    assert chainer["chainer"]["type_check"] is True and chainer["common"]["runtime_checks"] is True
    assert chainer["common"]["kernel_library"] in ("numpy + OpenBLAS", "iDeep (oneDNN)")
    assert (
        pytorch["cpu"]["model"] and manifests["numpy/cpu"]["common"]["kernel_library"] == "numpy + OpenBLAS"
    )
    found = {a.field for a in asymmetries.asymmetries(manifests)}
    assert "common.runtime_checks" in found  # Chainer type-checks every call by default; PyTorch does not
    assert not any(field.startswith(("cpu.", "device")) for field in found)  # one machine, one device
    with pytest.raises(ValueError, match="allowed"):
        fairness.collect("tensorflow")


TWO_CPUS = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
flags\t\t: fpu avx2 avx512f

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: another
"""


def test_one_parser_of_proc_cpuinfo_serves_the_fingerprint_the_manifest_and_the_environment(monkeypatch):
    """Issue 25: /proc/cpuinfo was parsed three times (machine._cpuinfo, fairness.first_cpu,
    environment.cpu_model); now machine.first_cpu is the only parser and the outputs are unchanged."""
    import inspect
    import pathlib

    from deeppose.measure import environment, machine

    package = pathlib.Path(machine.__file__).parent.parent
    readers = sorted(
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if '"/proc/cpuinfo"' in path.read_text()
    )
    assert readers == ["deeppose/measure/machine.py"]
    assert fairness.first_cpu is machine.first_cpu
    fields = machine.first_cpu(TWO_CPUS)
    assert fields["model name"] == "AMD EPYC 9R14" and fields["cpu family"] == "25" and "processor" in fields
    assert machine.fingerprint(TWO_CPUS)["cpu"] == "AMD EPYC 9R14"
    assert fairness.cpu_description(TWO_CPUS)["model"] == "AMD EPYC 9R14"
    monkeypatch.setattr(machine, "_read", lambda path: TWO_CPUS if path == "/proc/cpuinfo" else "")
    assert environment.cpu_model() == "AMD EPYC 9R14"
    assert "first_cpu" in inspect.getsource(environment.cpu_model)
