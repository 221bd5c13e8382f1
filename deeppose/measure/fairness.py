"""Fairness manifests: what each framework's process actually ran with, and where two differ.

A framework comparison is only as fair as the conditions of its two sides. On one machine the
two frameworks may still run different kernels: numpy's OpenBLAS (all of Chainer's matrix
products on CPU) may be pinned to AVX2 by `OPENBLAS_CORETYPE=Haswell` while PyTorch's oneDNN and
MKL use AVX-512 (seen on an AMD EPYC Zen 4 here); PyTorch lets cuDNN convolutions use TF32 by default and
CuPy does not; Chainer checks the types of every function call unless told not to. None of this
shows in a time, so each timed process records a manifest and `deeppose.asymmetries` lists the fields in
which manifests differ, each with the comparisons it may bias.

A manifest is a plain dict of JSON values:

    framework, device    what it describes
    cpu                  model string and ISA flags from /proc/cpuinfo
    env                  every set variable that steers the libraries (ENV_PREFIXES)
    native               threadpoolctl's view per "<package>/<library>": version, threads, OpenBLAS
                         architecture
    common               the same questions answered for every framework, so they compare:
                         dtype, threads, kernel_library, kernel_isa, fp32_math, runtime_checks,
                         optimizer_kernel, allocator (deeppose.measure.allocator)
    pytorch / chainer    the framework's own switches, when asked for

Collect it in the process that timed, after the timing: threadpoolctl sees only libraries
already loaded.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import threadpoolctl

from deeppose.measure import allocator
from deeppose.measure.machine import first_cpu  # the one parser of /proc/cpuinfo; peak reads it here

FRAMEWORKS = ("numpy", "pytorch", "pytorch_compile", "chainer", "jax")
ENV_PREFIXES = (
    "OPENBLAS_",
    "GOTO_",
    "MKL_",
    "OMP_",
    "GOMP_",
    "KMP_",
    "ONEDNN_",
    "DNNL_",
    "XLA_",
    "TORCHINDUCTOR_",
    "CHAINER_",
    "CUPY_",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32",
    "CUBLAS_",
    "MALLOC_",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
)
ISA_FLAG = re.compile(
    r"^(sse\w*|ssse3|avx\w*|fma\w*|f16c|amx\w*|bmi\d|adx|sha_ni|gfni|vaes|vpclmulqdq|vnni\w*)$"
)
# OpenBLAS's `architecture` (threadpoolctl) -> the widest vector ISA that kernel family uses.
OPENBLAS_ISA = {
    "haswell": "AVX2",
    "zen": "AVX2",
    "skylakex": "AVX512",
    "cooperlake": "AVX512",
    "sapphirerapids": "AVX512",
    "sandybridge": "AVX",
    "bulldozer": "AVX",
    "piledriver": "AVX",
    "steamroller": "AVX",
    "excavator": "AVX",
    "nehalem": "SSE4",
    "core2": "SSE3",
    "penryn": "SSE4",
    "dunnington": "SSE4",
    "atom": "SSE3",
    "barcelona": "SSE3",
    "prescott": "SSE3",
}
BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}
CHAINER_CONFIG = (
    "type_check",
    "use_ideep",
    "use_cudnn",
    "use_cudnn_tensor_core",
    "cudnn_deterministic",
    "autotune",
    "lazy_grad_sum",
    "debug",
)


# --- collection ---------------------------------------------------------------------------
def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def cpu_description(cpu: str | Mapping[str, str] | None = None) -> dict[str, Any]:
    """Model string, vendor, family/model/stepping numbers (the model string under a hypervisor is
    often just "AMD EPYC", which does not tell Zen 4 from Zen 5) and the vector/crypto ISA flags of
    the first CPU. Only what is constant: the clock varies between reads on bare metal. `cpu`:
    /proc/cpuinfo's text (read when None) or its first processor's fields (`first_cpu`)."""
    fields = cpu if isinstance(cpu, Mapping) else first_cpu(cpu)
    return {
        "model": fields.get("model name"),
        "vendor": fields.get("vendor_id"),
        "family": _int(fields.get("cpu family")),
        "model_number": _int(fields.get("model")),
        "stepping": _int(fields.get("stepping")),
        "isa_flags": sorted(f for f in fields.get("flags", "").split() if ISA_FLAG.match(f)),
    }


def steering_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in sorted(environ) if k.startswith(ENV_PREFIXES)}


def _owner(filepath: str) -> str:
    """The package that shipped a library: the folder under site-packages (numpy.libs -> numpy)."""
    parts = Path(filepath).parts
    if "site-packages" in parts[:-1]:
        return parts[parts.index("site-packages") + 1].removesuffix(".libs")
    return "system"


def native_libraries() -> dict[str, dict[str, Any]]:
    """threadpoolctl's libraries keyed "<package>/<internal api>" (numpy/openblas, torch/openmp):
    a process may load several of one kind, and numpy's BLAS is the one Chainer's CPU path uses."""
    found: dict[str, dict[str, Any]] = {}
    for info in threadpoolctl.threadpool_info():
        filepath = str(info.get("filepath", ""))
        key = f"{_owner(filepath)}/{info.get('internal_api', 'unknown')}"
        key = (
            key
            if key not in found
            else next(f"{key}{i}" for i in itertools.count(2) if f"{key}{i}" not in found)
        )
        found[key] = {
            "version": info.get("version"),
            "num_threads": info.get("num_threads"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "file": filepath.rsplit("/", 1)[-1],
        }
    return found


def openblas_isa(native: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The ISA of numpy's OpenBLAS kernel family (else the first OpenBLAS's), or its architecture
    name when this table does not know it."""
    candidates = sorted(
        (not name.startswith("numpy/"), name)
        for name, info in native.items()
        if name.split("/")[-1].startswith("openblas") and info.get("architecture")
    )
    if not candidates:
        return None
    arch = str(native[candidates[0][1]]["architecture"])
    return OPENBLAS_ISA.get(arch.lower(), arch)


def _numpy_blas(native: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """numpy's BLAS (or the first BLAS loaded, outside a wheel layout): its name and entry."""
    blas = sorted(
        (not name.startswith("numpy/"), name)
        for name in native
        if name.split("/")[-1].startswith(("openblas", "mkl", "blis"))
    )
    if not blas:
        return None
    name = blas[0][1]
    return BLAS_NAMES.get(name.split("/")[-1].rstrip("0123456789"), name), dict(native[name])


def _pytorch(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pytorch section, common answers) from the torch already imported by the timing."""
    import torch

    mkldnn = torch.backends.mkldnn
    precision = {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "mkldnn_fp32_precision": str(getattr(mkldnn, "fp32_precision", "none")),
    }
    section = {
        "version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_available": bool(mkldnn.is_available()),
        "mkldnn_enabled": bool(mkldnn.enabled),
        "mkl_available": bool(torch.backends.mkl.is_available()),
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "default_dtype": str(torch.get_default_dtype()).replace("torch.", ""),
        "anomaly_detection": bool(torch.is_anomaly_enabled()),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        **precision,
    }
    if device == "cuda":
        section["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        tf32 = [
            op
            for op, on in (
                ("matmul", precision["cuda_matmul_allow_tf32"]),
                ("cudnn conv", precision["cudnn_allow_tf32"]),
            )
            if on
        ]
        common = {
            "kernel_library": "cuBLAS + cuDNN",
            "kernel_isa": None,
            "fp32_math": "tf32: " + ", ".join(tf32) if tf32 else "ieee",
        }
    else:
        common = {
            "kernel_library": "oneDNN + MKL" if mkldnn.is_available() and mkldnn.enabled else "ATen + MKL",
            "kernel_isa": section["cpu_capability"],
            "fp32_math": "ieee"
            if precision["mkldnn_fp32_precision"] in ("none", "ieee")
            else f"mkldnn {precision['mkldnn_fp32_precision']}",
        }
    common.update(
        threads=section["intra_op_threads"],
        runtime_checks=section["anomaly_detection"],
        optimizer_kernel="torch.optim, fused",
    )  # as deeppose/backends/pytorch.py builds it
    return section, common


def _chainer(
    device: str, native: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]
) -> tuple[dict, dict]:
    """(chainer section, common answers): Chainer's config and whether iDeep (oneDNN) is in use."""
    from deeppose.backends.chainer_import import import_chainer

    chainer = import_chainer()
    section: dict[str, Any] = {"version": chainer.__version__}
    section.update({key: _json(getattr(chainer.config, key, None)) for key in CHAINER_CONFIG})
    section["ideep_available"] = bool(chainer.backends.intel64.is_ideep_available())
    ideep = section["ideep_available"] and section["use_ideep"] != "never"
    blas = _numpy_blas(native)
    if device == "cuda":
        common = {
            "kernel_library": "CuPy (cuBLAS + cuDNN)",
            "kernel_isa": None,
            "fp32_math": "tf32: CUPY_TF32" if env.get("CUPY_TF32") == "1" else "ieee",
        }
    elif ideep:
        common = {"kernel_library": "iDeep (oneDNN)", "kernel_isa": None}
    else:
        common = {}  # numpy's BLAS: the machine-wide answers of `collect` stand
    common.update(
        threads=blas[1]["num_threads"] if blas else None,
        runtime_checks=bool(section["type_check"]),
        optimizer_kernel="chainer.optimizers, one array update per parameter",
    )
    return section, common


def _json(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def collect(framework: str = "numpy", device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """The manifest of this process for `framework` ("numpy": the machine, environment and BLAS
    only; "pytorch" and "pytorch_compile" add torch's switches if torch imports; "chainer" adds
    Chainer's config; "jax" the XLA settings in force)."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    import numpy

    native = native_libraries()
    env = steering_env()
    blas = _numpy_blas(native)
    manifest: dict[str, Any] = {
        "framework": framework,
        "device": device,
        "cpu": cpu_description(),
        "env": env,
        "native": native,
        "numpy": numpy.__version__,
        "common": {
            "dtype": dtype,
            "threads": blas[1]["num_threads"] if blas else None,
            "kernel_library": "numpy + " + (blas[0] if blas else "no BLAS loaded"),
            "kernel_isa": openblas_isa(native),
            "fp32_math": "ieee",
            "runtime_checks": False,
            "optimizer_kernel": None,
            "allocator": allocator.describe(),
        },
    }
    if framework in ("pytorch", "pytorch_compile"):
        try:
            section, common = _pytorch(device)
        except ImportError as error:
            manifest["pytorch"] = {"error": f"torch is not importable: {error}"}
        else:
            manifest["pytorch"] = section
            manifest["common"].update(common)
            if framework == "pytorch_compile":
                manifest["common"]["kernel_library"] = (
                    "inductor (generated C++) + " + common["kernel_library"]
                )
    elif framework == "jax":
        import jax

        manifest["jax"] = {
            "version": jax.__version__,
            "x64": bool(jax.config.jax_enable_x64),
            "platform": jax.default_backend(),
            "xla_flags": os.environ.get("XLA_FLAGS"),
        }
        manifest["common"].update(
            kernel_library="XLA CPU (Eigen, generated code)", kernel_isa=None, optimizer_kernel="optax"
        )
    elif framework == "chainer":
        section, common = _chainer(device, native, env)
        manifest["chainer"] = section
        manifest["common"].update(common)
    return manifest
