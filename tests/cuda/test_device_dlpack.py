"""DLPack: zero-copy exchange of CPU tensors with numpy and PyTorch, and kDLCUDA capsules of device
tensors (consumed by kiln itself here; PyTorch/CuPy GPU interop runs in the GPU check)."""
import gc

import numpy as np
import pytest

import kiln
from kiln.frontend import dlpack


def test_cpu_tensors_share_memory_with_numpy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = kiln.from_dlpack(a)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0 and t.__dlpack_device__() == (1, 0)
    n = np.from_dlpack(t)
    n[1, 2] = -1.0
    assert t[1, 2].item() == -1.0
    assert np.from_dlpack(kiln.arange(4)).dtype == np.int64


def test_cpu_tensors_share_memory_with_torch():
    torch = pytest.importorskip("torch")
    t = kiln.zeros(2, 2)
    tt = torch.from_dlpack(t)
    tt[0, 1] = 5.0
    assert t[0, 1].item() == 5.0
    k = kiln.from_dlpack(torch.arange(3, dtype=torch.float64))
    assert k.dtype == kiln.float64 and k.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(RuntimeError, match="require gradient"):
        kiln.ones(2, requires_grad=True).__dlpack__()


def test_device_tensors_export_kdlcuda_capsules(cuda_device):
    x = kiln.arange(6.0, device="cuda").reshape(2, 3)
    assert x.__dlpack_device__() == (2, 0)
    y = kiln.from_dlpack(x.__dlpack__())
    assert y.is_cuda and y._cell.value.ptr == x._cell.value.ptr  # zero-copy
    y.add_(1)
    assert x.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    copy = kiln.from_dlpack(x.__dlpack__(copy=True))
    copy.zero_()
    assert x.sum().item() == 21.0
    with pytest.raises(BufferError, match="cuda:0"):
        x.__dlpack__(dl_device=(1, 0))


def test_capsules_release_their_memory(cuda_device):
    x = kiln.ones(4, device="cuda")
    before = len(dlpack._exported)
    cap = x.__dlpack__()
    assert len(dlpack._exported) == before + 1
    del cap  # never consumed: the capsule's destructor deletes it
    gc.collect()
    assert len(dlpack._exported) == before
    y = kiln.from_dlpack(x.__dlpack__())
    assert len(dlpack._exported) == before + 1
    del y  # consumed: the importing tensor calls the deleter when it dies
    gc.collect()
    assert len(dlpack._exported) == before
    with pytest.raises(TypeError, match="__dlpack__"):
        kiln.from_dlpack(object())
