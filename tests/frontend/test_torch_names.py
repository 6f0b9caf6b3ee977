"""Names PyTorch programs touch on their way (issue 9, item 3), and `Tensor.repeat` as a copy; PyTorch is the oracle."""
import math

import numpy as np
import pytest
import torch

import kiln

REPEAT_CASES = [((2, 2), (2, 1)), ((1, 2), (2, 1)), ((3,), (1,)), ((2, 3), (1, 1)), ((3, 1), (1, 4)), ((), (2,)),
                ((2,), (2, 1, 1))]


def _arange(lib, shape):
    return lib.arange(1, 1 + math.prod(shape)).reshape(shape).float()


@pytest.mark.parametrize("shape,reps", REPEAT_CASES)
def test_repeat_is_a_copy_eager(shape, reps):
    results = []
    for lib in (torch, kiln):
        x = _arange(lib, shape)
        r = x.repeat(*reps)
        x.mul_(5)  # must not show through r
        r.add_(1)  # must be allowed: r owns its memory
        results.append((r.tolist(), x.tolist()))
    assert results[1] == results[0]


@pytest.mark.parametrize("shape,reps", REPEAT_CASES)
def test_repeat_is_a_copy_traced(shape, reps):
    def f(x):
        r = x.repeat(*reps)
        r.add_(1)
        return r * 1, x * 1

    want = f(_arange(torch, shape))
    got = kiln.compile(f)(_arange(kiln, shape))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def test_repeat_too_few_sizes_names_both_counts():
    with pytest.raises(RuntimeError, match=r"repeat got 1 sizes for a 2-d tensor"):
        kiln.ones(2, 2).repeat(2)


PREDICATES = ["is_cpu", "is_cuda", "is_xpu", "is_mps", "is_meta", "is_xla", "is_ipu", "is_mtia", "is_maia",
              "is_vulkan", "is_sparse", "is_sparse_csr", "is_quantized", "is_mkldnn", "is_nested"]
METHOD_PREDICATES = ["is_complex", "is_signed", "is_conj", "is_neg", "is_inference", "is_floating_point"]
DTYPES = ["float32", "float64", "float16", "int32", "int64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_predicates_match_torch(dtype):
    k, t = kiln.ones(2, dtype=getattr(kiln, dtype)), torch.ones(2, dtype=getattr(torch, dtype))
    for name in PREDICATES:
        assert getattr(k, name) == getattr(t, name), name
    for name in METHOD_PREDICATES:
        assert getattr(k, name)() == getattr(t, name)(), name
    assert kiln.is_complex(k) == torch.is_complex(t)
    assert kiln.is_floating_point(k) == torch.is_floating_point(t)


def test_predicates_inside_compile():
    f = kiln.compile(lambda x: x * 2 if x.is_cpu and not x.is_sparse and not x.is_complex() else x)
    np.testing.assert_array_equal(f(kiln.ones(2)).numpy(), [2.0, 2.0])


@pytest.mark.parametrize("fn", ["is_complex", "is_floating_point"])
def test_dtype_queries_reject_non_tensors(fn):
    with pytest.raises(TypeError, match=fn + r"\(\): argument 'input' .* must be Tensor, not float"):
        getattr(kiln, fn)(1.0)


@pytest.mark.parametrize("name", ["strided", "contiguous_format", "preserve_format", "channels_last",
                                  "channels_last_3d"])
def test_layout_and_memory_format_names(name):
    assert repr(getattr(kiln, name)) == repr(getattr(torch, name)).replace("torch.", "kiln.")
    assert isinstance(getattr(kiln, name), kiln.layout if name == "strided" else kiln.memory_format)


def test_tensor_layout_and_memory_format_arguments():
    x = kiln.arange(6.0).reshape(2, 3)
    assert x.layout is kiln.strided
    for fmt in (kiln.contiguous_format, kiln.preserve_format):
        np.testing.assert_array_equal(x.contiguous(memory_format=fmt).numpy(), x.numpy())
        np.testing.assert_array_equal(x.clone(memory_format=fmt).numpy(), x.numpy())


TYPED = ["FloatTensor", "DoubleTensor", "HalfTensor", "IntTensor", "LongTensor", "BoolTensor"]


@pytest.mark.parametrize("name", TYPED)
def test_legacy_typed_constructors_match_torch(name):
    K, T = getattr(kiln, name), getattr(torch, name)
    assert K.dtype.name == str(T.dtype).removeprefix("torch.")
    for args in [(), ((1.7, 0.0, -2.0),), ([[1, 0], [3, 4]],), (np.array([1.0, 0.0]),)]:
        k, t = K(*args), T(*args)
        assert k.dtype.name == str(t.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(k.numpy(), t.numpy())
    for sizes in [(2, 3), (0,), (kiln.Size([4, 1]),)]:
        t_sizes = (torch.Size(sizes[0]),) if isinstance(sizes[0], kiln.Size) else sizes
        assert tuple(K(*sizes).shape) == tuple(T(*t_sizes).shape)
    x = kiln.ones(2, dtype=K.dtype)
    assert isinstance(x, K) and isinstance(torch.ones(2, dtype=T.dtype), T)
    assert not isinstance(kiln.ones(2, dtype=kiln.int32 if name != "IntTensor" else kiln.int64), K)


def test_legacy_constructor_of_a_tensor_shares_its_values():
    x = kiln.ones(2)
    y = kiln.FloatTensor(x)
    x.add_(1)
    np.testing.assert_array_equal(y.numpy(), [2.0, 2.0])  # torch: the same
    with pytest.raises(TypeError, match="expected a tensor of dtype float32, got int64"):
        kiln.FloatTensor(kiln.tensor([1, 2]))


def test_legacy_constructor_errors():
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        kiln.FloatTensor(-1)
    with pytest.raises(TypeError, match="size at position 1 must be an int, got list"):
        kiln.FloatTensor(2, [1])
    for name, dtype in [("ByteTensor", "uint8"), ("CharTensor", "int8"), ("ShortTensor", "int16"),
                        ("BFloat16Tensor", "bfloat16")]:
        with pytest.raises(TypeError, match=f"kiln.{name}: kiln has no {dtype} dtype"):
            getattr(kiln, name)([1])
        assert not isinstance(kiln.ones(1), getattr(kiln, name))


def test_accelerator_matches_torch_on_a_cpu_only_machine():
    if torch.accelerator.is_available():
        pytest.skip("the torch oracle has an accelerator")
    assert kiln.accelerator.is_available() is False
    assert kiln.accelerator.current_accelerator() is None
    assert kiln.accelerator.device_count() == 0
    for fn, args in [("current_device_index", ()), ("set_device_index", (0,)), ("synchronize", ())]:
        with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
            getattr(kiln.accelerator, fn)(*args)
        with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
            getattr(torch.accelerator, fn)(*args)


def test_cudnn_settings_have_torch_defaults_and_accept_assignment(monkeypatch):
    for name in ["enabled", "benchmark", "deterministic", "allow_tf32"]:
        assert getattr(kiln.backends.cudnn, name) == getattr(torch.backends.cudnn, name), name
        monkeypatch.setattr(kiln.backends.cudnn, name, not getattr(kiln.backends.cudnn, name))
    assert kiln.backends.cudnn.benchmark is True and kiln.backends.cudnn.deterministic is True
    assert kiln.backends.cudnn.is_available() is False and kiln.backends.cudnn.version() is None
    assert kiln.backends.mps.is_available() is False and kiln.backends.mps.is_built() is False


def test_nn_parallel_data_parallel_runs_the_module():
    import kiln.nn as nn
    assert nn.parallel.DataParallel is nn.DataParallel
    lin = nn.Linear(3, 2)
    dp = nn.parallel.DataParallel(lin)
    x = kiln.randn(4, 3)
    np.testing.assert_array_equal(dp(x).detach().numpy(), lin(x).detach().numpy())
    assert sorted(dp.state_dict()) == ["module.bias", "module.weight"]


def test_nn_parallel_distributed_data_parallel_says_it_is_not_supported():
    import kiln.nn as nn
    with pytest.raises(RuntimeError, match="DistributedDataParallel needs a torch.distributed process group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_is_contiguous_answers_like_pytorch():
    import numpy as np
    import torch
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    a5 = np.random.default_rng(1).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    cases = {
        "plain": lambda m, t: t,
        "transpose": lambda m, t: t.transpose(1, 2),
        "slice": lambda m, t: t[:, :, ::2],
        "nhwc": lambda m, t: t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
        "one_channel": lambda m, t: t[:, :1],
        "rank2": lambda m, t: t.reshape(6, 20),
    }
    formats = ["contiguous_format", "channels_last", "preserve_format"]
    for name, view in cases.items():
        kt, tt = view(kiln, kiln.from_numpy(a)), view(torch, torch.from_numpy(a))
        assert kt.is_contiguous() == tt.is_contiguous(), name
        for f in formats:
            assert kt.is_contiguous(memory_format=getattr(kiln, f)) == \
                tt.is_contiguous(memory_format=getattr(torch, f)), (name, f)
    for view in (lambda t: t, lambda t: t.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)):
        kt, tt = view(kiln.from_numpy(a5)), view(torch.from_numpy(a5))
        for f in ("channels_last_3d", "channels_last"):
            assert kt.is_contiguous(memory_format=getattr(kiln, f)) == tt.is_contiguous(memory_format=getattr(torch, f))
