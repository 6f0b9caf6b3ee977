"""Cubins and PTX in the disk cache (KILN_CACHE_DIR), keyed by the CUDA C source, the architecture,
the NVRTC version and kiln's version: a hit skips NVRTC, any change of the key compiles again."""
import pytest

from kiln import config
from kiln.runtime import cuda_driver, llvm_backend, nvrtc_compiler
from kiln.runtime.nvrtc_compiler import CompiledCuda

SRC = 'extern "C" __global__ void k(float* a) { a[0] = 1.0f; }'


@pytest.fixture
def compiles(monkeypatch, tmp_path):
    """Count NVRTC compiles (a stand-in compiler: the cache, not NVRTC, is under test)."""
    calls = []

    def fake(source, name, arch):
        calls.append((source, arch))
        cubin = None if arch.startswith("compute_") else b"\x7fELF" + arch.encode() + bytes(range(256))
        return CompiledCuda(f"// ptx of {len(calls)} for {arch}", cubin, arch, "nvrtc 13.0")
    monkeypatch.setattr(cuda_driver, "compile_cuda", fake)
    monkeypatch.setattr(nvrtc_compiler, "available", lambda: "nvrtc 13.0")
    with config.override(cache_dir=str(tmp_path / "cache"), cache=True):
        yield calls
    llvm_backend._caches.pop(str(tmp_path / "cache"), None)


def test_a_hit_returns_the_stored_ptx_and_cubin(compiles):
    a = cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    b = cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    assert len(compiles) == 1
    assert (b.ptx, b.cubin, b.arch, b.compiler) == (a.ptx, a.cubin, "sm_90", "nvrtc 13.0")


def test_the_key_holds_source_architecture_and_nvrtc_version(compiles, monkeypatch):
    cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    cuda_driver.compile_cached(SRC, "k.cu", "sm_80")                    # another architecture
    cuda_driver.compile_cached(SRC.replace("1.0f", "2.0f"), "k.cu", "sm_90")  # another source
    assert len(compiles) == 3
    monkeypatch.setattr(nvrtc_compiler, "available", lambda: "nvrtc 13.1")  # another NVRTC
    cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    assert len(compiles) == 4
    cuda_driver.compile_cached(SRC, "other-name.cu", "sm_90")             # the file name is not in the key
    assert len(compiles) == 4
    import kiln
    monkeypatch.setattr(kiln, "__version__", kiln.__version__ + ".next")   # another kiln
    cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    assert len(compiles) == 5


def test_entries_outlive_the_process_and_ptx_only_entries_round_trip(compiles, tmp_path):
    p = cuda_driver.compile_cached(SRC, "k.cu", "compute_90")
    assert p.cubin is None
    llvm_backend._caches.clear()   # a new process: the cache is read back from disk
    q = cuda_driver.compile_cached(SRC, "k.cu", "compute_90")
    assert len(compiles) == 1 and q.cubin is None and q.ptx == p.ptx
    assert any((tmp_path / "cache").rglob("*"))


def test_kiln_cache_0_compiles_every_time(compiles):
    with config.override(cache=False):
        cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
        cuda_driver.compile_cached(SRC, "k.cu", "sm_90")
    assert len(compiles) == 2
