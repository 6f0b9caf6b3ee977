"""The CPU harness's execution model (cuda_host.h): a block's threads are fibers that take turns
between barriers. These kernels are written by hand so that each checks one property the emitted
kernels rely on: a barrier orders shared-memory writes before reads, a missing barrier shows as
wrong values (not as a silent pass), warp shuffles stay inside their warp, `__shared__` is reused
block after block, a thread that skips a barrier fails the launch, and so does one that does not
finish in the harness's timeout."""
import numpy as np
import pytest
from kiln.cuda.host_harness import HarnessLibrary, compiler

from kiln.codegen.cuda_render import PRELUDE, CudaKernel, CudaStage
from kiln.codegen.kir import BufferParam
from kiln.codegen.lower import LoweredProgram, ProgramBuffer
from kiln.ir import dtypes as dt
from kiln.runtime.cuda_backend import CudaProgram, Launch

pytestmark = pytest.mark.skipif(compiler() is None, reason="the CUDA harness needs g++")

SIG = "(float* __restrict__ out0, long long* __restrict__ kiln_status)"
KERNELS = {
    # each thread writes its slot, then reads its right neighbour's (wrapping): needs the barrier
    "neighbour": "__shared__ float s[64]; s[threadIdx.x] = threadIdx.x + 100.0f * blockIdx.x; __syncthreads(); "
                 "out0[blockIdx.x * blockDim.x + threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];",
    # the same without the barrier
    "racy": "__shared__ float s[64]; s[threadIdx.x] = threadIdx.x + 1.0f; "
            "out0[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];",
    # a shuffle down by 1: the last lane of each warp keeps its own value
    "shuffle": "out0[threadIdx.x] = __shfl_down_sync(0xffffffffu, (float)threadIdx.x, 1);",
    # a block-wide sum through the prelude's kiln_block_reduce (shuffles, shared memory, barriers)
    "reduce": "float v = kiln_block_reduce((float)(threadIdx.x + 1), kiln_op_add()); "
              "if (threadIdx.x == 0) out0[blockIdx.x] = v + blockIdx.x;",
    # several barriers in a loop: a running sum that each round passes one slot to the right
    "rounds": "__shared__ float s[64]; s[threadIdx.x] = 1.0f; __syncthreads(); "
              "for (int r = 0; r < 5; ++r) { float v = s[(threadIdx.x + blockDim.x - 1) % blockDim.x]; "
              "__syncthreads(); s[threadIdx.x] += v; __syncthreads(); } out0[threadIdx.x] = s[threadIdx.x];",
    # a launch that takes far longer than the harness waits (a stand-in for a loop that never ends)
    "slow": "if (threadIdx.x == 0) { usleep(1500000); out0[0] = 1.0f; }",
    # thread 0 leaves before the barrier the others wait at
    "skips": "if (threadIdx.x == 0) return; __syncthreads(); out0[threadIdx.x] = 1.0f;",
}
LAUNCH = {"neighbour": (3, 64), "racy": (1, 64), "shuffle": (1, 64), "reduce": (2, 64), "rounds": (1, 64),
          "skips": (2, 32), "slow": (1, 32)}


def _program(name: str) -> CudaProgram:
    grid, block = LAUNCH[name]
    n = grid * block
    func = f"{name}_s0"
    src = f'{PRELUDE}\nextern "C" __global__ void {func}{SIG} {{ {KERNELS[name]} }}\n'
    prog = LoweredProgram(name, [], [ProgramBuffer("b0", dt.float32, (n,), "output")], [], [], ["b0"])
    params = [BufferParam("out0", dt.float32, 1, "w")]
    return CudaProgram(name, prog, src, [CudaKernel(name, params, [CudaStage(func, "gemm", n, block)], "")],
                       [Launch(func, (0,), grid, block, "gemm")])


@pytest.fixture(scope="module", params=["stack-switch", "ucontext"])
def lib(request):
    """Each test runs with both fiber implementations (x86-64's own switch and the ucontext one
    other machines use)."""
    progs = {name: _program(name) for name in KERNELS if name != "slow"}
    defines = ["KILN_HOST_UCONTEXT"] if request.param == "ucontext" else []
    lib = HarnessLibrary(list(progs.values()), max_grid=3, defines=defines)
    yield lib, progs
    lib.close()


def test_a_barrier_orders_shared_writes_before_reads(lib):
    h, progs = lib
    (out,) = h.run(progs["neighbour"], [])
    t = np.arange(64)
    want = np.concatenate([(t + 1) % 64 + 100.0 * b for b in range(3)])  # shared memory reused per block
    np.testing.assert_array_equal(out, want)


def test_a_missing_barrier_shows_as_wrong_values(lib):
    """Threads run in turn up to a barrier, so a read of a later thread's write before one sees the
    value left there before (0 in a fresh static array): the race is visible every time."""
    h, progs = lib
    (out,) = h.run(progs["racy"], [])
    assert (out[:63] != np.arange(2, 65)).all()
    assert out[63] == 1.0  # thread 63 reads thread 0's slot, written before it


def test_shuffles_stay_inside_a_warp(lib):
    h, progs = lib
    (out,) = h.run(progs["shuffle"], [])
    t = np.arange(64)
    np.testing.assert_array_equal(out, np.where(t % 32 == 31, t, t + 1))


def test_block_reduce_over_two_warps_and_two_blocks(lib):
    h, progs = lib
    (out,) = h.run(progs["reduce"], [])
    assert out[0] == 64 * 65 / 2 and out[1] == 64 * 65 / 2 + 1


def test_barriers_in_a_loop(lib):
    h, progs = lib
    (out,) = h.run(progs["rounds"], [])
    # the sum doubles each round: every slot holds 2^5
    np.testing.assert_array_equal(out, np.full(64, 32.0, np.float32))


def test_a_thread_that_skips_a_barrier_fails_the_launch_then_the_library_is_usable(lib):
    h, progs = lib
    with pytest.raises(RuntimeError, match=r"skips_s0 \(grid 2, block 32\): in block 0, 1 threads finished "
                                           r"while 31 wait at __syncthreads"):
        h.run(progs["skips"], [])
    (out,) = h.run(progs["neighbour"], [])
    assert out[0] == 1.0


def test_a_launch_past_the_timeout_fails_and_the_next_one_runs(lib):
    """The stuck launch's worker thread is abandoned; the next launch gets a fresh one."""
    h, progs = lib
    slow = _program("slow")
    impatient = HarnessLibrary([slow], timeout_s=0.3)
    with pytest.raises(RuntimeError, match=r"slow_s0 \(grid 1, block 32\) did not finish in 0.3 s"):
        impatient.run(slow, [])
    (out,) = h.run(progs["shuffle"], [])
    assert out[0] == 1.0
