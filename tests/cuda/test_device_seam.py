"""The device seam: the simulator's memory (address-checked host memory through the caching
allocator), its selection (explicit only), and the operations both implementations provide."""
import numpy as np
import pytest

import kiln
from kiln.runtime import cuda_driver, cuda_eager
from kiln.runtime.cuda_device import current
from kiln.runtime.cuda_device import DeviceArray, DeviceBuffer
from kiln.runtime.cuda_sim import SimDevice, SimMemoryError, SimOutOfMemoryError, simulator


def test_the_simulator_is_never_chosen_silently():
    with kiln.config.override(cuda_sim=False):
        assert isinstance(current(), cuda_driver.DriverDevice)
        assert not kiln.cuda.is_simulated()
    with kiln.config.override(cuda_sim=True):
        assert current() is simulator()
        assert kiln.cuda.is_simulated()


def test_kiln_cuda_under_the_simulator(cuda_device):
    assert kiln.cuda.is_available()
    assert kiln.cuda.device_count() == 1
    if cuda_device == "sim":
        assert "simulator" in kiln.cuda.get_device_name()
        assert kiln.cuda.get_arch() == "sm_90"
    kiln.cuda.synchronize()


def test_copies_round_trip(cuda_device):
    dev = current()
    for a in (np.arange(7, dtype=np.float32), np.array(3.5), np.zeros((0, 3), np.int64),
              np.arange(12, dtype=np.int32).reshape(3, 4)[:, 1:]):  # a strided host view is packed first
        d = DeviceArray.from_numpy(a)
        assert d.shape == a.shape
        np.testing.assert_array_equal(d.numpy(), a)
        np.testing.assert_array_equal(d.copy().numpy(), a)
    buf = dev.alloc(16)
    dev.memset(buf, 0, 16)
    np.testing.assert_array_equal(dev.to_host(buf, (4,), np.float32), np.zeros(4, np.float32))


def test_the_allocator_reuses_freed_blocks(cuda_device):
    alloc = current().allocator
    b = current().alloc(1000)
    ptr, used = b.ptr, alloc.allocated_bytes
    assert b.size_class == 1024 and alloc.in_use[ptr] == 1000
    b.release()
    assert ptr not in alloc.in_use and alloc.allocated_bytes == used - 1024
    again = current().alloc(600)  # the same size class: the cached block
    assert again.ptr == ptr
    again.release()


def test_simulated_memory_is_address_checked():
    sim = SimDevice()
    buf = sim.alloc(64)
    sim.to_device(np.arange(16, dtype=np.float32), buf)
    with pytest.raises(SimMemoryError, match="outside every live device allocation"):
        sim.to_host(buf, (17,), np.float32)  # past the end of the block
    with pytest.raises(SimMemoryError, match="outside every live device allocation"):
        sim.to_host(DeviceBuffer(buf.ptr + (1 << 20), 4, 512), (1,), np.float32)  # never allocated
    stale = DeviceBuffer(buf.ptr, 64, buf.size_class)
    src = sim.alloc(64)
    buf.release()  # back in the cache: no longer live
    with pytest.raises(SimMemoryError, match=r"0x[0-9a-f]+"):
        sim.to_host(stale, (4,), np.float32)
    with pytest.raises(SimMemoryError, match="device-to-device copy's destination"):
        sim.copy(stale, src, 64)
    np.testing.assert_array_equal(sim.to_host(sim.to_device(np.ones(3)), (3,), np.float64), np.ones(3))


def test_simulated_memory_limit_is_an_out_of_memory_error():
    sim = SimDevice(memory_limit=1 << 20)
    keep = sim.alloc(600_000)
    with pytest.raises(SimOutOfMemoryError, match="CUDA out of memory: allocating 700000 bytes failed"):
        sim.alloc(700_000)
    del keep
    assert sim.alloc(700_000).nbytes == 700_000  # the cache was returned: usable afterwards


def test_a_kernel_argument_outside_memory_is_refused():
    with kiln.config.override(cuda_sim=True):
        x = kiln.ones(3, 4, device="cuda")
        y = x + 1
        exe = cuda_eager.executable_for("add", {}, [x._cell.value, x._cell.value], (3, 4), kiln.float32)
        lib = simulator().load(exe)
        ln = exe.cuda.launches[0]
        small = simulator().alloc(4)
        with pytest.raises(SimMemoryError, match="argument"):
            simulator().launch(lib, ln, [small.ptr] * (len(ln.args) + 1))
        np.testing.assert_array_equal((y * 2).cpu().numpy(), np.full((3, 4), 4.0, np.float32))
