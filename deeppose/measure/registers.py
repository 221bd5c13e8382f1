"""Register-resident x86-64 kernels run from Python through ctypes: the cores' clock and their fp32
FMA throughput, with no compiler and no memory traffic.

    from deeppose.measure import registers
    registers.clock_hz(threads=2)                   # the all-core clock, Hz
    registers.fma_kernel("avx2").run(threads=2)     # seconds for fma_kernel(...).flops(threads) FLOPs

The clock: a loop of ADD_CHAIN dependent `add rax, rdx` (register to register: some cores fold
`add reg, imm` at rename, none folds this), one cycle each on every x86-64 core since the P6; the
loop's own `dec`/`jnz` run beside the chain. Cycles = adds, so the clock is adds / seconds, taken
while every core runs the chain: the all-core clock, which under a hypervisor the kernel's
"cpu MHz" (the nominal clock) does not report.

The FMA throughput: FMA_CHAINS independent accumulators, more than the FMA latency (4 cycles) times
the FMA pipes (2), so the pipes never wait, updated by `vfmadd231ps` from two source registers,
FMA_UNROLL times per loop, on 256-bit (AVX2) or 512-bit (AVX-512) registers; every register starts
at zero (`vzeroall`), so no denormal slows it. 2 FLOPs per lane and instruction. Nothing touches
memory: no cache or bandwidth limit, only the FMA pipes and the clock.

The code is written into an executable anonymous mapping. Where the CPU is not x86-64, lacks the
instruction set, or the system refuses an executable mapping, `unavailable` says why and nothing
runs. ctypes releases the GIL during a foreign call, so one Python thread per core runs the code on
every core at once.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import struct
import threading
import time
from dataclasses import dataclass

from deeppose.measure.machine import first_cpu

ADD_CHAIN = 100  # dependent adds per loop: the loop's dec/jnz hide beside them
FMA_CHAINS = 12  # independent accumulators: > 4 cycles latency x 2 pipes
FMA_UNROLL = 4  # FMA_CHAINS FMAs each, per loop
LANES = {"avx2": 8, "avx512": 16}  # float32 lanes per register
FLAGS = {"avx2": ("avx2", "fma"), "avx512": ("avx512f",)}  # /proc/cpuinfo flags each needs
TARGET_S = 0.1  # a call's length once calibrated: long next to the thread start (~0.1 ms)

_MOV_RCX_RDI = bytes.fromhex("4889f9")  # mov rcx, rdi (the loop count, first argument)
_DEC_RCX = bytes.fromhex("48ffc9")  # dec rcx
_XOR_EAX = bytes.fromhex("31c0")  # xor eax, eax
_MOV_EDX_1 = bytes.fromhex("ba01000000")  # mov edx, 1
_ADD_RAX_RDX = bytes.fromhex("4801d0")  # add rax, rdx
_VZEROALL, _VZEROUPPER, _RET = bytes.fromhex("c5fc77"), bytes.fromhex("c5f877"), b"\xc3"
_SOURCE_A, _SOURCE_B = 14, 15  # the FMAs' two source registers; accumulators are 0..FMA_CHAINS-1


def _loop(prologue: bytes, body: bytes, epilogue: bytes) -> bytes:
    """prologue; rcx = rdi; do { body } while (--rcx); epilogue; ret (rdi >= 1)."""
    back = -(len(body) + len(_DEC_RCX) + 6)  # jnz rel32 (6 bytes), relative to its end
    return prologue + _MOV_RCX_RDI + body + _DEC_RCX + b"\x0f\x85" + struct.pack("<i", back) + epilogue + _RET


def add_chain_code() -> bytes:
    """uint64 f(uint64 loops): ADD_CHAIN dependent adds per loop; returns the adds done."""
    return _loop(_XOR_EAX + _MOV_EDX_1, _ADD_RAX_RDX * ADD_CHAIN, b"")


def vfmadd231ps(isa: str, dest: int) -> bytes:
    """`vfmadd231ps dest, SOURCE_A, SOURCE_B` on ymm (VEX) or zmm (EVEX) registers, dest < 16."""
    high = dest >= 8  # the register number's fourth bit, stored inverted
    modrm = 0xC0 | (dest & 7) << 3 | (_SOURCE_B & 7)
    vvvv = (~_SOURCE_A & 0xF) << 3
    if isa == "avx2":  # VEX.256.66.0F38.W0 B8 /r
        return bytes([0xC4, (0x42 if high else 0xC2), vvvv | 0x05, 0xB8, modrm])
    # EVEX.512.66.0F38.W0 B8 /r: P0 = R X B R' 0 0 m m (inverted R, X, B, R'), P1 = W vvvv 1 pp,
    # P2 = z L'L b V' aaa (V' inverted; no mask)
    return bytes([0x62, (0x52 if high else 0xD2), vvvv | 0x05, 0x48, 0xB8, modrm])


def fma_code(isa: str) -> bytes:
    """void f(uint64 loops): FMA_UNROLL x FMA_CHAINS independent FMAs per loop, from zeroed registers."""
    body = b"".join(vfmadd231ps(isa, chain) for _ in range(FMA_UNROLL) for chain in range(FMA_CHAINS))
    return _loop(_VZEROALL + _XOR_EAX, body, _VZEROUPPER)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    return set(first_cpu(cpuinfo).get("flags", "").split())


def unavailable(isa: str | None = None, cpuinfo: str | None = None) -> str | None:
    """Why the add chain (isa None) or the FMA kernel of `isa` cannot run here; None when it can."""
    if platform.machine().lower() not in ("x86_64", "amd64") or platform.system() != "Linux":
        return f"machine code for x86-64 Linux; this is {platform.machine()} {platform.system()}"
    missing = [flag for flag in FLAGS.get(isa, ()) if flag not in cpu_flags(cpuinfo)]
    if missing:
        return f"the CPU lacks {', '.join(missing)} (/proc/cpuinfo flags)"
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()
    except (OSError, AttributeError) as error:
        return f"no executable memory mapping allowed ({error})"
    return None


class _Code:
    """Machine code in an executable mapping, callable as uint64 f(uint64); kept alive with it."""

    def __init__(self, code: bytes) -> None:
        self._map = mmap.mmap(-1, len(code), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._map.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address)


def on_every_core(call: ctypes._CFuncPtr, loops: int, threads: int) -> list[float]:
    """`call(loops)` in `threads` threads started together; each thread's own seconds."""
    if loops < 1:
        raise ValueError(f"loops must be >= 1, got {loops}")
    seconds = [0.0] * threads
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        t0 = time.perf_counter_ns()
        call(loops)
        seconds[i] = (time.perf_counter_ns() - t0) / 1e9

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return seconds


def _calibrated(call: ctypes._CFuncPtr, threads: int, target_s: float) -> int:
    """Loops for a call of about `target_s` on every core at once."""
    loops = 1000
    while True:
        took = max(on_every_core(call, loops, threads))
        if took >= target_s / 10:
            return max(int(loops * target_s / took), 1)
        loops *= 10


@dataclass
class Clock:
    """The add chain, calibrated to TARGET_S; `hz` runs it once on every core."""

    threads: int
    target_s: float = TARGET_S

    def __post_init__(self) -> None:
        code = _Code(add_chain_code())
        if code.call(3) != 3 * ADD_CHAIN:  # the code adds what it should
            raise RuntimeError("the add chain returned a wrong count")
        self._code = code
        self.loops = _calibrated(code.call, self.threads, self.target_s)

    def hz(self) -> list[float]:
        """Each core's clock (cycles = adds) during one call on every core at once."""
        adds = self.loops * ADD_CHAIN
        return [adds / s for s in on_every_core(self._code.call, self.loops, self.threads)]


@dataclass
class FmaKernel:
    """The FMA loop of `isa`, calibrated to TARGET_S on `threads` cores; `run` times one call on every
    core at once (its wall time, for flops() FLOPs)."""

    isa: str
    threads: int
    target_s: float = TARGET_S

    def __post_init__(self) -> None:
        self._code = _Code(fma_code(self.isa))
        self.loops = _calibrated(self._code.call, self.threads, self.target_s)

    def flops(self) -> int:
        return 2 * LANES[self.isa] * FMA_CHAINS * FMA_UNROLL * self.loops * self.threads

    def run(self) -> None:
        on_every_core(self._code.call, self.loops, self.threads)
