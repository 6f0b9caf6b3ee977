"""CUDA tensors (device="cuda"), on the simulator and, where a GPU is usable, on the real driver:
each eager op, autograd, modules, optimizers, save/load and kiln.compile against the CPU."""
import copy

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from kiln.runtime import cuda_eager

RTOL = 1e-5


def _pair(*shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return kiln.tensor(a), kiln.tensor(a, device="cuda")


def _close(dev_t, cpu_t, rtol=RTOL, atol=1e-6):
    assert dev_t.is_cuda and dev_t.device == kiln.device("cuda:0")
    assert dev_t.dtype == cpu_t.dtype and tuple(dev_t.shape) == tuple(cpu_t.shape)
    np.testing.assert_allclose(dev_t.detach().cpu().numpy(), cpu_t.detach().numpy(), rtol=rtol, atol=atol)


def test_creation_and_movement(cuda_device):
    for t in (kiln.zeros(3, 4, device="cuda"), kiln.ones(2, device="cuda:0"), kiln.arange(5, device="cuda"),
              kiln.full((2, 2), 7.0, device=kiln.device("cuda")), kiln.randn(3, 4, device="cuda"),
              kiln.tensor([1, 2], device="cuda"), kiln.eye(3, device="cuda")):
        assert t.is_cuda and not t.is_cpu and str(t.device) == "cuda:0"
    x = kiln.arange(6.0).reshape(2, 3)
    c = x.to("cuda")
    assert c.cuda() is c and x.cpu() is x and x.to("cpu") is x
    back = c.cpu()
    assert back.device == kiln.device("cpu") and not back.is_cuda
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    np.testing.assert_array_equal(x.cuda().to(kiln.int32).cpu().numpy(), x.numpy().astype(np.int32))
    h = c.to("cuda", kiln.float16)
    assert h.is_cuda and h.dtype == kiln.float16
    assert kiln.zeros_like(c).is_cuda and kiln.ones_like(c).is_cuda and kiln.rand_like(c).is_cuda
    assert c.new_zeros(2).is_cuda and c.new_tensor([1.0]).is_cuda
    kiln.manual_seed(3)
    a = kiln.randn(3, 4)
    kiln.manual_seed(3)
    np.testing.assert_array_equal(kiln.randn(3, 4, device="cuda").cpu().numpy(), a.numpy())  # the same generator


def test_values_leave_the_device_only_by_copy(cuda_device):
    c = kiln.tensor([[1.5, -2.0], [3.0, 4.0]], device="cuda")
    with pytest.raises(TypeError, match=r"can't convert cuda:0 device type tensor to numpy\. Use Tensor\.cpu\(\)"):
        c.numpy()
    with pytest.raises(TypeError, match="Use Tensor.cpu()"):
        np.asarray(c)
    assert c[0, 1].item() == -2.0 and c.tolist() == [[1.5, -2.0], [3.0, 4.0]]
    assert float(c.sum()) == 6.5 and bool(c[1, 1] > 3)
    assert repr(c) == "tensor([[ 1.5000, -2.0000],\n        [ 3.0000,  4.0000]], device='cuda:0')"
    assert "device='cuda:0'" in repr(kiln.zeros(2, dtype=kiln.int32, device="cuda"))
    assert c.is_contiguous()


def _ops(x, y, idx):
    return {
        "add": x + y, "mul_scalar": x * 2.5 - 1, "div": x / (y.abs() + 1), "exp": kiln.exp(x), "tanh": x.tanh(),
        "relu": F.relu(x), "gelu": F.gelu(x), "where": kiln.where(x > 0, x, y), "pow": x.abs() ** 1.5,
        "sum": x.sum(), "sum1": x.sum(dim=1), "mean0": x.mean(dim=0, keepdim=True), "max1": x.max(dim=1).values,
        "argmax": x.argmax(dim=1), "softmax": F.softmax(x, dim=-1), "log_softmax": F.log_softmax(x, dim=1),
        "matmul": x @ y.T, "transpose": x.T.contiguous(), "slice": x[1:, ::2], "reshape": x.reshape(4, 3),
        "cat": kiln.cat([x, y], dim=0), "gather": kiln.gather(x, 1, idx), "index": x[kiln.tensor([2, 0])],
        "cast": (x > 0).to(kiln.int64), "layer_norm": F.layer_norm(x, (4,)), "cumsum": x.cumsum(dim=1),
    }


def test_eager_ops_match_the_cpu(cuda_device):
    (x, xc), (y, yc) = _pair(3, 4), _pair(3, 4, seed=1)
    idx = kiln.tensor([[0, 3], [1, 1], [2, 0]])
    want, got = _ops(x, y, idx), _ops(xc, yc, idx.cuda())
    for name in want:
        try:
            _close(got[name], want[name])
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_one_primitive_kernels_are_cached(cuda_device):
    x = kiln.ones(5, 6, device="cuda")
    x * 3 + 1
    n = cuda_eager.cached_programs()
    for _ in range(3):
        x * 3 + 1
    assert cuda_eager.cached_programs() == n  # same primitive, attrs, shapes, dtypes: no new program
    kiln.ones(5, 7, device="cuda") * 3
    assert cuda_eager.cached_programs() > n  # a new shape is a new program


def test_in_place_updates_and_views(cuda_device):
    x, xc = _pair(3, 4)
    for t in (x, xc):
        t.add_(1)
        t[1] = 5.0
        t[:, 2] *= 2
        row = t[0]
        row.mul_(-1)  # writes through the view into t
        t.clamp_(max=4.0)
    _close(xc, x)
    z = kiln.zeros(4, device="cuda")
    z.copy_(kiln.tensor([1.0, 2.0, 3.0, 4.0]))
    z.fill_(0.5)
    assert z.tolist() == [0.5] * 4


def test_mixing_devices_is_a_clear_error(cuda_device):
    c = kiln.ones(3, device="cuda")
    msg = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
    with pytest.raises(RuntimeError, match=msg):
        c + kiln.ones(3)
    with pytest.raises(RuntimeError, match="found at least two devices"):
        kiln.ones(3) * c
    with pytest.raises(RuntimeError, match="found at least two devices"):
        kiln.matmul(kiln.ones(2, 3, device="cuda"), kiln.ones(3, 2))
    # a 0-d CPU tensor and Python numbers are fine (as in PyTorch)
    assert (c * kiln.tensor(2.0) + 1).tolist() == [3.0, 3.0, 3.0]


def test_a_bad_index_in_a_device_kernel_raises_then_the_process_is_usable(cuda_device):
    x = kiln.arange(12.0, device="cuda").reshape(3, 4)
    with pytest.raises(IndexError, match="gather: index 7 is out of bounds for dimension 1 with size 4"):
        kiln.gather(x, 1, kiln.tensor([[0, 7], [1, 2], [3, 0]], device="cuda"))
    good = kiln.gather(x, 1, kiln.tensor([[0, 3], [1, 2], [3, 0]], device="cuda"))
    assert good.tolist() == [[0.0, 3.0], [5.0, 6.0], [11.0, 8.0]]


def test_autograd_matches_the_cpu(cuda_device):
    grads = []
    for device in ("cpu", "cuda"):
        (x, _), (y, _) = _pair(3, 4), _pair(3, 4, seed=1)
        x, y = x.to(device).requires_grad_(), y.to(device).requires_grad_()
        loss = (F.softmax(x * y, dim=1) * kiln.tanh(y)).sum() + (x @ y.T).relu().mean()
        loss.backward()
        assert x.grad.device == kiln.device(device) and y.grad.device == kiln.device(device)
        grads.append((loss, x.grad, y.grad))
    for c, d in zip(*grads):
        _close(d, c.detach())


def test_gradients_flow_back_across_devices(cuda_device):
    w = kiln.tensor([1.0, -2.0, 3.0], requires_grad=True)  # a CPU leaf, used on the device
    out = (w.cuda() * 2).sum()
    out.backward()
    assert not w.grad.is_cuda and w.grad.tolist() == [2.0, 2.0, 2.0]
    assert w.cuda().grad_fn.name() == "ToCopyBackward0"


def _mlp(batch_norm: bool = False):
    """(Batch norm makes the gradient of the bias before it zero up to rounding, which Adam's first
    steps amplify to +-lr: only the module test, which compares no updates, uses it.)"""
    kiln.manual_seed(0)
    layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(3)] if batch_norm else []))


def test_module_to_moves_parameters_buffers_and_grads(cuda_device):
    m = _mlp(batch_norm=True)
    m(kiln.randn(5, 4)).sum().backward()
    assert m.to("cuda") is m
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        assert t.is_cuda, name
    assert all(p.grad.is_cuda for p in m.parameters())
    assert isinstance(m[0].weight, nn.Parameter) and m[0].weight.requires_grad
    cpu = _mlp(batch_norm=True)
    x = kiln.randn(5, 4)
    _close(m(x.cuda()), cpu(x), rtol=1e-4)
    m.cpu()
    assert not m[0].weight.is_cuda and not m[0].weight.grad.is_cuda
    m.cuda().double()
    assert m[0].weight.is_cuda and m[0].weight.dtype == kiln.float64
    twin = copy.deepcopy(m)  # new device memory, on the device
    assert twin[0].weight.is_cuda and twin[0].weight.grad.is_cuda
    assert twin[0].weight._cell.value.ptr != m[0].weight._cell.value.ptr


def test_dropout_and_init_on_device_tensors(cuda_device):
    x = kiln.ones(4, 4, device="cuda")
    y = F.dropout(x, p=0.5, training=True)
    assert y.is_cuda and set(np.unique(y.cpu().numpy())) <= {0.0, 2.0}
    w = kiln.empty(3, 4, device="cuda")
    nn.init.normal_(w)
    assert w.is_cuda and w.cpu().numpy().std() > 0


@pytest.mark.parametrize("make", [lambda p: kiln.optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: kiln.optim.Adam(p, lr=0.01),
                                  lambda p: kiln.optim.AdamW(p, lr=0.01, weight_decay=0.1),
                                  lambda p: kiln.optim.RMSprop(p, lr=0.01)], ids=["sgd", "adam", "adamw", "rmsprop"])
def test_optimizers_update_device_parameters_like_the_cpu(cuda_device, make):
    runs = []
    for device in ("cpu", "cuda"):
        m = _mlp().to(device)
        opt = make(m.parameters())
        x, y = kiln.randn(6, 4).to(device), kiln.tensor([0, 1, 2, 0, 1, 2]).to(device)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        for st in opt.state.values():
            for k, v in st.items():
                if isinstance(v, kiln.Tensor) and v.ndim:
                    assert v.device == kiln.device(device), k  # state lives with its parameter
        runs.append(list(m.parameters()))
    for c, d in zip(*runs):
        _close(d.detach(), c.detach(), rtol=1e-4, atol=1e-5)


def test_save_and_load_restore_the_device(cuda_device, tmp_path):
    m = _mlp().cuda()
    opt = kiln.optim.Adam(m.parameters())
    F.cross_entropy(m(kiln.randn(6, 4, device="cuda")), kiln.tensor([0, 1, 2, 0, 1, 2], device="cuda")).backward()
    opt.step()
    kiln.save({"model": m.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.kiln")
    back = kiln.load(tmp_path / "ck.kiln")
    for k, v in back["model"].items():
        assert v.is_cuda, k
        np.testing.assert_array_equal(v.cpu().numpy(), m.state_dict()[k].cpu().numpy())
    on_cpu = kiln.load(tmp_path / "ck.kiln", map_location="cpu")
    assert not any(v.is_cuda for v in on_cpu["model"].values())
    mapped = kiln.load(tmp_path / "ck.kiln", map_location={"cuda:0": "cpu"})
    assert not mapped["model"]["0.weight"].is_cuda
    fresh = _mlp().cuda()
    fresh.load_state_dict(on_cpu["model"])  # CPU values into device parameters
    assert fresh[0].weight.is_cuda
    np.testing.assert_array_equal(fresh[0].weight.detach().cpu().numpy(), on_cpu["model"]["0.weight"].numpy())
    opt2 = kiln.optim.Adam(fresh.parameters())
    opt2.load_state_dict(on_cpu["opt"])
    assert opt2.state[fresh[0].weight]["exp_avg"].is_cuda
    cpu_copy = kiln.load(tmp_path / "ck.kiln", map_location="cpu")
    kiln.save(cpu_copy, tmp_path / "cpu.kiln")
    assert not kiln.load(tmp_path / "cpu.kiln", map_location=None)["model"]["0.bias"].is_cuda
    with pytest.raises(kiln.frontend.serialization.SerializationError, match="map_location"):
        kiln.load(tmp_path / "ck.kiln", map_location="tpu")


def test_compile_on_device_tensors_runs_the_cuda_backend(cuda_device):
    m = _mlp().cuda()
    opt = kiln.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = kiln.randn(6, 4, device="cuda"), kiln.tensor([0, 1, 2, 0, 1, 2], device="cuda")

    @kiln.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    ref = _mlp()
    ref_opt = kiln.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        loss = step(x, y)
        ref_opt.zero_grad()
        ref_loss = F.cross_entropy(ref(x.cpu()), y.cpu())
        ref_loss.backward()
        ref_opt.step()
        assert loss.is_cuda
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-5)
    entry = next(e for es in step._cache.values() for e in es)
    assert entry.__dict__["_run_backend"] == "cuda"
    assert all(p.is_cuda for p in m.parameters())
    assert all(st["momentum_buffer"].is_cuda for st in opt.state.values())  # state stays on the device
    for p, q in zip(m.parameters(), ref.parameters()):
        _close(p.detach(), q.detach(), rtol=1e-4, atol=1e-6)
