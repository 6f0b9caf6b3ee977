"""The cuda backend without a device (lowering, stages, clear errors) and, where one is lent, on it:
compiled programs agree with the reference interpreter, and bad input is a clear Python error."""
import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.runtime import cuda_driver
from kiln.runtime.interpreter import run_graph
from kiln.runtime.nvrtc_compiler import available

needs_nvrtc = pytest.mark.skipif(available() is None, reason="needs NVRTC (kiln[cuda]) or nvcc")


def _softmax(x):
    return F.softmax(x * 2, dim=-1)


def test_availability_is_consistent():
    reason = kiln.cuda.unavailable_reason()
    assert kiln.cuda.is_available() is (reason is None)
    if reason is not None:
        assert kiln.cuda.device_count() == 0
        kiln.cuda.synchronize()  # nothing to wait for


def test_lower_needs_no_device():
    lowered = kiln.compile(_softmax, backend="cuda").lower(kiln.ShapeDtype((8, 64)))
    src = lowered.as_text("cuda")
    assert '__global__ void kiln_softmax_k0_s0' in src and "kiln_block_reduce" in src
    assert "kernel kiln_softmax_k0" in lowered.as_text("kernels")
    with pytest.raises(ValueError, match="belongs to the llvm backend"):
        lowered.as_text("llvm")


@needs_nvrtc
def test_ptx_stage():
    ptx = kiln.compile(_softmax, backend="cuda").lower(kiln.ShapeDtype((8, 64))).as_text("ptx")
    assert ".entry kiln_softmax_k0_s0" in ptx and ".target sm_" in ptx


def test_running_without_a_device_says_why():
    if kiln.cuda.is_available():
        pytest.skip("a CUDA device is present")
    f = kiln.compile(_softmax, backend="cuda")
    with pytest.raises(RuntimeError, match="needs a CUDA device, and none is usable"):
        f(kiln.randn(4, 8))
    # the process stays usable, and the CPU backends still run the same function
    np.testing.assert_allclose(kiln.compile(_softmax)(kiln.ones(2, 3)).numpy(), np.full((2, 3), 1 / 3), rtol=1e-6)


def test_cuda_tensors_say_why():
    if kiln.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="device cuda is not available: no CUDA device is usable"):
        kiln.zeros(3, device="cuda")
    with pytest.raises(RuntimeError, match="device cuda is not available"):
        kiln.ones(2).cuda()
    with pytest.raises(RuntimeError, match="device cuda:0 is not available"):
        kiln.ones(2).to("cuda:0")


def test_driver_errors_name_cuda_codes():
    pytest.importorskip("cuda.bindings")
    from cuda.bindings import driver
    with pytest.raises(cuda_driver.CudaError, match="cuFake failed: CUDA_ERROR_INVALID_VALUE") as e:
        cuda_driver.check((driver.CUresult.CUDA_ERROR_INVALID_VALUE,), "cuFake")
    assert e.value.code == "CUDA_ERROR_INVALID_VALUE"
    with pytest.raises(cuda_driver.CudaOutOfMemoryError, match="CUDA_ERROR_OUT_OF_MEMORY"):
        cuda_driver.check((driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY,), "cuMemAlloc")
    assert cuda_driver.check((driver.CUresult.CUDA_SUCCESS, 7), "cuOk") == 7


def test_allocator_size_classes():
    assert cuda_driver._round(1) == 512 and cuda_driver._round(513) == 1024
    assert cuda_driver._round((1 << 20) + 1) == 2 << 20


# -- on a device ---------------------------------------------------------------------------------

GPU_CASES = {
    "softmax": (_softmax, [(300, 1000)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b), [(64, 4096), (4096,), (4096,)]),
    "gelu": (lambda x: F.gelu(x * 1.5 + 0.5, approximate="tanh"), [(1 << 20,)]),
    "matmul": (lambda a, b: kiln.relu(a @ b + 1), [(128, 256), (256, 64)]),
    "sum": (lambda x: x.sum(dim=0), [(1000, 33)]),
}


@pytest.mark.parametrize("name", list(GPU_CASES))
def test_compiled_on_gpu_matches_reference(needs_gpu, name):
    fn, shapes = GPU_CASES[name]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    f = kiln.compile(fn, backend="cuda")
    got = f(*[kiln.from_numpy(x) for x in xs])
    (ex,) = f.lower(*[kiln.ShapeDtype(s) for s in shapes])._executables()
    ref = run_graph(ex.graph, xs)
    np.testing.assert_allclose(got.numpy(), ref[0], rtol=1e-4, atol=1e-5)


def test_bad_index_on_gpu_then_usable(needs_gpu):
    f = kiln.compile(lambda x, i: x[i] * 2, backend="cuda")
    x = kiln.randn(6, 9)
    with pytest.raises(IndexError, match="index 8 is out of bounds for dimension 0 with size 6"):
        f(x, kiln.tensor([0, 8, 1]))
    np.testing.assert_allclose(f(x, kiln.tensor([5, 0])).numpy(), x.numpy()[[5, 0]] * 2, rtol=1e-6)


def test_out_of_memory_is_a_clear_error(needs_gpu):
    with pytest.raises(cuda_driver.CudaOutOfMemoryError, match="CUDA out of memory"):
        cuda_driver.alloc(1 << 50)
    buf = cuda_driver.alloc(1024)  # still usable
    assert buf.ptr


def test_compile_error_is_a_clear_error(needs_gpu):
    from kiln.runtime.nvrtc_compiler import CudaCompileError, compile_cuda
    with pytest.raises(CudaCompileError, match="NVRTC_ERROR_COMPILATION"):
        compile_cuda("__global__ void k( {", "bad.cu", arch=cuda_driver.device_arch())


def test_round_trip_copies(needs_gpu):
    for n in (3, 1 << 21):  # direct and pinned-staged copies
        a = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        np.testing.assert_array_equal(cuda_driver.DeviceArray.from_numpy(a).numpy(), a)


def test_gpu_check_without_a_device_says_so(capsys):
    from kiln.cuda import check
    if kiln.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert check.main(["--out", "/nonexistent/never-written.md"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_check_report_table():
    from kiln.cuda.check import report
    text = report("NVIDIA H200", "5 passed", [
        {"workload": "softmax 16384²", "kiln_ms": 0.8, "kiln_GBps": 2700.0, "torch_eager_ms": None},
        {"workload": "matmul", "kiln_ms": None, "error": "CudaError: boom"}])
    assert "# kiln GPU check on NVIDIA H200" in text and "5 passed" in text
    assert "| softmax 16384² | 0.800 | 2700.0 | — | — |" in text and "failed: CudaError: boom" in text
