"""What code generation needs to know about the host CPU: cache sizes and vector registers.

Cache sizes come from Linux's `/sys/devices/system/cpu/cpu0/cache/index*/` (level, type,
size); the vector width and register count from LLVM's view of the host CPU features
(`llvmlite.binding.get_host_cpu_features`), the same features the backend compiles for.
Where either is unavailable (another OS, a container hiding sysfs), conservative defaults
stand in: 32 KiB L1d, 512 KiB L2, 8 MiB L3, 128-bit vectors with 16 registers.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"
_DEFAULT_CACHES = {1: 32 << 10, 2: 512 << 10, 3: 8 << 20}


@dataclass(frozen=True)
class HostInfo:
    """Per-core data cache sizes in bytes, the widest vector in bits, vector registers."""
    l1d: int
    l2: int
    l3: int
    vector_bits: int
    vector_registers: int
    has_fma: bool

    def lanes(self, itemsize: int) -> int:
        """Elements of `itemsize` bytes in one vector register."""
        return max(1, self.vector_bits // (8 * itemsize))


def parse_cache_size(text: str) -> int:
    """`32K` / `1024K` / `32M` / `65536` (sysfs `size`) in bytes."""
    t = text.strip().upper()
    mult = 1
    if t.endswith("K"):
        mult, t = 1 << 10, t[:-1]
    elif t.endswith("M"):
        mult, t = 1 << 20, t[:-1]
    elif t.endswith("G"):
        mult, t = 1 << 30, t[:-1]
    return int(t) * mult


def read_cache_sizes(root: str = _CACHE_DIR) -> dict[int, int]:
    """{level: bytes} of the data / unified caches sysfs lists under `root` (defaults for the
    levels it does not list)."""
    sizes = dict(_DEFAULT_CACHES)
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("index"))
    except OSError:
        return sizes
    for e in entries:
        try:
            with open(os.path.join(root, e, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, e, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, e, "size")) as f:
                size = parse_cache_size(f.read())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size > 0:
            sizes[level] = size
    return sizes


def vector_shape(features: str) -> tuple[int, int, bool]:
    """(vector bits, vector registers, fma) from an LLVM feature string (`+avx2,-avx512f,...`)."""
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    fma = "fma" in on or "avx512f" in on or "neon" in on
    if "avx512f" in on:
        return 512, 32, fma
    if "avx" in on or "avx2" in on:
        return 256, 16, fma
    if "neon" in on or "sve" in on:
        return 128, 32, True
    return 128, 16, fma


@functools.lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """The host this process generates code for (read once)."""
    caches = read_cache_sizes()
    try:
        import llvmlite.binding as llvm
        bits, regs, fma = vector_shape(llvm.get_host_cpu_features().flatten())
    except Exception:  # noqa: BLE001 - a host LLVM cannot describe: the portable defaults
        bits, regs, fma = 128, 16, False
    return HostInfo(caches[1], caches[2], caches[3], bits, regs, fma)
