"""The pipeline on graphs traced by kiln.make_graph: results unchanged, few kernels.

Kernel counts measured here (see docs/passes.md): softmax 1, layer norm 1, MLP + cross-entropy
forward 4, with backward 9; the nn MLP 784-128-64-10 SGD-momentum step 14 (from 155 primitives).
"""
import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.optim as optim
from kiln.passes import default_pipeline, optimize
from kiln.runtime.interpreter import run_graph
from kiln.runtime.plan_runner import run_plan


def _arrays(args):
    return [a.detach().numpy() if isinstance(a, kiln.Tensor) else np.asarray(a) for a in args]


def check(fn, *args, max_kernels):
    g = kiln.make_graph(fn)(*args)
    arrays = _arrays(args)
    assert len(arrays) == len(g.inputs)
    report = default_pipeline().run_report(g, verify=True)
    opt, plan = report.graph, report.fusion
    plan.check()
    ref = run_graph(g, arrays)
    for a, b in zip(ref, run_graph(opt, arrays)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for a, b in zip(ref, run_plan(plan, arrays)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert len(plan.kernels) <= max_kernels, str(plan)
    assert len(opt.nodes) <= len(g.nodes)
    return g, opt, plan


def softmax(x):
    return kiln.softmax(x, dim=-1)


def layer_norm(x, w, b):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / (v + 1e-5).sqrt() * w + b


def mlp_loss(x, y, w1, b1, w2, b2):
    h = (x @ w1 + b1).relu()
    logits = h @ w2 + b2
    return -kiln.log_softmax(logits, -1).gather(1, y).mean()


def mlp_train_step(x, y, w1, b1, w2, b2):
    loss = mlp_loss(x, y, w1, b1, w2, b2)
    loss.backward()
    return loss


@pytest.fixture
def mlp_args():
    kiln.manual_seed(0)
    x = kiln.randn(8, 12)
    y = kiln.tensor([[0], [1], [2], [3], [4], [1], [2], [0]])
    w1 = (kiln.randn(12, 16) * 0.3).requires_grad_()
    b1 = kiln.zeros(16, requires_grad=True)
    w2 = (kiln.randn(16, 5) * 0.3).requires_grad_()
    b2 = kiln.zeros(5, requires_grad=True)
    return x, y, w1, b1, w2, b2


def test_softmax_is_one_kernel():
    _, _, plan = check(softmax, kiln.randn(6, 10), max_kernels=1)
    assert plan.kernels[0].kind == "reduction"


def test_layer_norm_is_one_kernel():
    check(layer_norm, kiln.randn(6, 10), kiln.randn(10), kiln.randn(10), max_kernels=1)


def test_mlp_forward_loss(mlp_args):
    _, _, plan = check(mlp_loss, *mlp_args, max_kernels=4)
    assert sum(k.kind == "matmul" for k in plan.kernels) == 2


def test_mlp_training_step_with_backward(mlp_args):
    g, opt, plan = check(mlp_train_step, *mlp_args, max_kernels=10)
    assert len(g.outputs) == 5  # the loss and four gradients
    kinds = [k.kind for k in plan.kernels]
    assert kinds.count("matmul") == 5  # 2 forward, 3 backward (dx of the first layer is not needed)
    assert len(plan.kernels) * 4 < len(g.nodes)


def test_optimize_does_not_touch_the_traced_graph(mlp_args):
    g = kiln.make_graph(mlp_train_step)(*mlp_args)
    text = str(g)
    optimize(g)
    assert str(g) == text


def test_nn_mlp_sgd_momentum_training_step():
    """Linear 784-128-64-10, cross-entropy, SGD momentum: forward + backward + update."""
    from kiln.frontend.compile import trace_function

    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    x, y = kiln.randn(32, 784), kiln.randint(0, 10, (32,))

    def step(x, y):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step(x, y)  # the first step creates the momentum buffers eagerly
    entry = trace_function(step, (x, y), {}, name="step", autograd=False, optimize=False)
    g = entry.graph
    captured = entry.captured_now() if hasattr(entry, "captured_now") else entry.captured
    arrays = [x.numpy(), y.numpy()] + [t.detach().numpy() for t in captured]
    report = default_pipeline().run_report(g, verify=True)
    report.fusion.check()
    ref = run_graph(g, arrays)
    for a, b in zip(ref, run_plan(report.fusion, arrays)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    kinds = [k.kind for k in report.fusion.kernels]
    # measured: 155 traced primitives -> 14 kernels (6 forward/backward matmuls + 3 matmuls whose
    # epilogue is the weight update and whose GEMM also sums the bias gradient, 3 reductions: softmax
    # stats, loss, softmax backward; 3 elementwise kernels write the gradients those GEMMs read)
    assert len(kinds) <= 16 and kinds.count("reduction") <= 3 and kinds.count("elementwise") <= 3, str(report.fusion)
    assert len(g.nodes) >= 8 * len(kinds)
