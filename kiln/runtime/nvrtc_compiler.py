"""CUDA C -> PTX / cubin with NVRTC (NVIDIA's `cuda-bindings`, the optional `cuda` extra).

Needs no GPU: the sweep test and `as_text("ptx")` compile here. `nvcc --ptx` is the fallback
where the NVRTC wheel is absent. Errors name NVRTC's own result code and carry its log.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ARCH = "sm_90"


class CudaCompileError(RuntimeError):
    """NVRTC (or nvcc) rejected a CUDA C program; the message holds the compiler's log."""


@dataclass
class CompiledCuda:
    ptx: str
    cubin: bytes | None   # None when compiled for a virtual architecture or by the nvcc fallback
    arch: str
    compiler: str         # "nvrtc 13.0" | "nvcc"


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return None
    try:
        nvrtc.nvrtcVersion()
    except Exception:  # the bindings without the libnvrtc wheel
        return None
    return nvrtc


def available() -> str | None:
    """The CUDA C compiler usable here ("nvrtc 13.0", "nvcc"), or None."""
    nv = _nvrtc()
    if nv is not None:
        _, major, minor = nv.nvrtcVersion()
        return f"nvrtc {major}.{minor}"
    return "nvcc" if shutil.which("nvcc") else None


def _check(nvrtc, result, what: str, log: str = "") -> None:
    err = result[0] if isinstance(result, tuple) else result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, msg = nvrtc.nvrtcGetErrorString(err)
        raise CudaCompileError(f"{what} failed: {err.name} ({msg.decode()})" + (f"\n{log}" if log else ""))


def compile_cuda(source: str, name: str = "kiln.cu", arch: str = DEFAULT_ARCH, cubin: bool = True,
                 extra_options: tuple[str, ...] = ()) -> CompiledCuda:
    """Compile `source` for `arch` (sm_XX: PTX and a cubin; compute_XX: PTX only)."""
    nvrtc = _nvrtc()
    if nvrtc is None:
        return _compile_nvcc(source, name, arch, extra_options)
    arch_flag = arch if arch.startswith(("sm_", "compute_")) else f"sm_{arch}"
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch_flag}".encode(), b"--std=c++17"] + [o.encode() for o in extra_options]
        res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        err, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = log.decode(errors="replace").rstrip("\x00 \n")
        _check(nvrtc, res, f"NVRTC compile of {name} for {arch_flag}", log_text)
        err, size = nvrtc.nvrtcGetPTXSize(prog)
        _check(nvrtc, err, "nvrtcGetPTXSize")
        ptx = b" " * size
        _check(nvrtc, nvrtc.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        binary = None
        if cubin and arch_flag.startswith("sm_"):
            err, size = nvrtc.nvrtcGetCUBINSize(prog)
            _check(nvrtc, err, "nvrtcGetCUBINSize")
            binary = b" " * size
            _check(nvrtc, nvrtc.nvrtcGetCUBIN(prog, binary), "nvrtcGetCUBIN")
        _, major, minor = nvrtc.nvrtcVersion()
        return CompiledCuda(ptx.decode().rstrip("\x00"), binary, arch_flag, f"nvrtc {major}.{minor}")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _compile_nvcc(source: str, name: str, arch: str, extra_options: tuple[str, ...] = ()) -> CompiledCuda:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise CudaCompileError("no CUDA C compiler: install kiln's `cuda` extra (cuda-bindings and the "
                               "nvidia-cuda-nvrtc wheel) or put nvcc on PATH")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / name
        src.write_text(source)
        out = Path(d) / "out.ptx"
        gpu = arch.replace("compute_", "sm_")
        r = subprocess.run([nvcc, f"-arch={gpu}", "--ptx", "-std=c++17", *extra_options, "-o", str(out), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise CudaCompileError(f"nvcc compile of {name} for {gpu} failed (exit {r.returncode})\n{r.stderr}")
        return CompiledCuda(out.read_text(), None, gpu, "nvcc")
