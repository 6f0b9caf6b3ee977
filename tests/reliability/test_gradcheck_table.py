"""Gradient checks in float64, one table per kind, with coverage checked against what kiln exports.

- **Primitives**: each differentiable primitive of `kiln.ir.primitives` has an exact (every
  element) central-difference check, in tests/ir/test_primitive_grads.py (its `CASES` from
  tests/helpers.py) or, for `conv`, tests/nn/test_conv_prim.py; each other primitive says why it has
  no gradient, and the test checks the primitive table agrees (no VJP, or a random one).
- **nn layers and losses**: every Module class `kiln.nn` exports (the cases of
  tests/nn/test_every_layer_vs_torch.py, reused) is differentiated in float64 and its analytic
  directional derivative, over the inputs and every parameter at once, compared with a central
  difference along a random direction. A new exported layer without a case fails the walk.
- **Optimizers**: every optimizer `kiln.optim` exports: one float64 update compiled, eager and by
  PyTorch agree. The gradient of a loss *through* an update is not defined for kiln's optimizers:
  like PyTorch's default (`differentiable=False`) they update in place under no_grad, and
  `differentiable=True` is refused; the test checks both facts.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.optim as optim
from kiln.ir.primitives import PRIMITIVES, RANDOM

from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL

torch = pytest.importorskip("torch")
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relpath: str, name: str):
    """A test module of another directory, loaded for its tables (its helpers' directory on the path)."""
    sys.path.insert(0, os.path.join(TESTS, os.path.dirname(relpath)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(TESTS, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


from helpers import CASES as PRIMITIVE_CASES  # noqa: E402  (tests/ is on the path: tests/conftest.py)

LAYERS = _load("nn/test_every_layer_vs_torch.py", "_layer_cases")

# -- primitives ------------------------------------------------------------------------------------

PRIM_FD_TEST = "tests/ir/test_primitive_grads.py::test_vjp_matches_finite_differences"
CONV_FD_TEST = "tests/nn/test_conv_prim.py::test_conv_vjp_matches_finite_differences"

#: primitive -> the test that checks its VJP against float64 central differences, element by element
PRIMITIVE_GRADCHECKS = {**{name: PRIM_FD_TEST for name in PRIMITIVE_CASES}, "conv": CONV_FD_TEST}

#: primitives with no gradient, and why
NO_GRADIENT = {
    **{op: "comparison: a bool result" for op in ("eq", "ne", "lt", "le", "gt", "ge")},
    **{op: "logical op on bools" for op in ("logical_and", "logical_or", "logical_xor", "logical_not")},
    "argmax": "an integer index result", "argmin": "an integer index result",
    "constant": "no inputs", "iota": "no inputs",
    "stop_gradient": "blocks the gradient by definition (detach)",
    "random_uniform": "random bits: its inputs are a key and a counter, not differentiable values",
}


def test_every_primitive_is_gradient_checked_or_says_why_not():
    assert set(PRIMITIVE_GRADCHECKS) | set(NO_GRADIENT) == set(PRIMITIVES), (
        f"unlisted primitives: {sorted(set(PRIMITIVES) - set(PRIMITIVE_GRADCHECKS) - set(NO_GRADIENT))}")
    assert not set(PRIMITIVE_GRADCHECKS) & set(NO_GRADIENT)
    for name in NO_GRADIENT:
        prim = PRIMITIVES[name]
        assert prim.vjp is None or prim.kind == RANDOM, f"{name} has a VJP: it needs a gradient check"
    for name, where in PRIMITIVE_GRADCHECKS.items():
        assert PRIMITIVES[name].vjp is not None, f"{name} has no VJP but is listed as gradient-checked"
        path, test = where.split("::")
        source = open(os.path.join(os.path.dirname(TESTS), path)).read()
        assert f"def {test}(" in source, f"{where} (the check of {name}) does not exist"
    # the pointed-at check really runs on float64 finite differences of every listed primitive
    assert "_numeric_grad" in open(os.path.join(TESTS, "ir", "test_primitive_grads.py")).read()


# -- layers and losses ------------------------------------------------------------------------------

def _exported_modules() -> list[str]:
    return sorted(n for n in nn.__all__ if inspect.isclass(getattr(nn, n)) and issubclass(getattr(nn, n), nn.Module))


def test_every_exported_layer_and_loss_is_gradient_checked():
    names = set(_exported_modules())
    checked = set(LAYERS.CASES) | set(LAYERS.DROPOUT_CASES)
    missing = sorted(names - checked - set(LAYERS.EXCLUDED))
    assert not missing, f"kiln.nn exports Module classes without a gradient check: {missing}"
    assert not LAYERS.TODO_NOT_YET_COMPARED
    assert {"Linear", "Conv2d", "LSTM", "CrossEntropyLoss", "MSELoss", "MultiheadAttention"} <= checked


def _f64(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def directional_check(module, arrays, needs_grad=None, out=None, seed=0, eps=1e-6):
    """float64: the analytic derivative of <module(*inputs), ct> along a random direction over the
    float inputs and all parameters vs a central difference along it."""
    module.double()
    wants = [a.dtype.kind == "f" and (needs_grad is None or needs_grad[k]) for k, a in enumerate(arrays)]
    xs = [kiln.from_numpy(_f64(a)).requires_grad_(w) for a, w in zip(arrays, wants)]
    leaves = [x for x in xs if x.requires_grad] + [p for p in module.parameters() if p.requires_grad]
    rng = np.random.default_rng(seed + 77)
    ct = None

    def objective():
        nonlocal ct
        kiln.manual_seed(seed)  # random layers (dropout, rrelu) draw the same mask every evaluation
        y = module(*xs)
        y = out(y) if out is not None else y
        if ct is None:
            ct = kiln.from_numpy(rng.standard_normal(tuple(y.shape)))
        return (y * ct).sum()

    loss = objective()
    loss.backward()
    grads = [np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().astype(np.float64) for t in leaves]
    dirs = [rng.standard_normal(tuple(t.shape)) for t in leaves]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs))
    scale = sum(float(np.abs(g * d).sum()) for g, d in zip(grads, dirs))
    with kiln.no_grad():
        for t, d in zip(leaves, dirs):
            t.add_(kiln.from_numpy(eps * d))
        plus = float(objective())
        for t, d in zip(leaves, dirs):
            t.sub_(kiln.from_numpy(2 * eps * d))
        minus = float(objective())
        for t, d in zip(leaves, dirs):
            t.add_(kiln.from_numpy(eps * d))
    numeric = (plus - minus) / (2 * eps)
    assert abs(numeric - analytic) <= GRADCHECK_RTOL * (scale + abs(float(loss))) + GRADCHECK_ATOL, (
        f"directional derivative {analytic!r} (analytic) vs {numeric!r} (central difference)")
    return analytic


@pytest.mark.parametrize("name", sorted(LAYERS.CASES))
def test_layer_gradient_matches_finite_differences(name):
    c = LAYERS.CASES[name]
    kiln.manual_seed(0)
    module = c["factory"](nn)
    arrays = c["inputs"]()
    if c["lazy"]:
        module(*(kiln.from_numpy(a) for a in arrays))
    if c["eval"]:
        module.eval()
    directional_check(module, arrays, c["needs_grad"], c["out"])


@pytest.mark.parametrize("name", sorted(LAYERS.DROPOUT_CASES))
def test_dropout_gradient_matches_finite_differences(name):
    factory, shape, _ = LAYERS.DROPOUT_CASES[name]
    x = np.random.default_rng(1).standard_normal((3, 5) + tuple(shape[2:])).astype(np.float32)
    directional_check(factory(nn), [x])


def test_a_wrong_gradient_is_caught():
    """The directional check is not vacuous: a layer whose backward is off by 1% fails it."""
    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            y = self.lin(x)
            return y + (y * 0.01 - (y * 0.01).detach())  # same value, gradient scaled by 1.01

    with pytest.raises(AssertionError, match="directional derivative"):
        directional_check(Wrong(), [np.random.default_rng(0).standard_normal((5, 4))])


# -- optimizers -----------------------------------------------------------------------------------------

OPTIMIZERS = {
    "SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.1),
    "AdamW": dict(lr=0.01, weight_decay=0.1),
    "Adagrad": dict(lr=0.05, lr_decay=0.01),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adadelta": dict(lr=0.5, weight_decay=0.01),
    "Adamax": dict(lr=0.01),
    "Rprop": dict(lr=0.01),
    "NAdam": dict(lr=0.01, weight_decay=0.1),
    "RAdam": dict(lr=0.01),
    "ASGD": dict(lr=0.05, t0=0),
    "LBFGS": dict(lr=0.5, max_iter=3),
}
LBFGS_COMPILED = "tests/optim/test_lbfgs.py::test_compiled_closure_matches_torch"


def _exported_optimizers() -> set[str]:
    return {n for n in optim.__all__ if inspect.isclass(getattr(optim, n)) and issubclass(getattr(optim, n), optim.Optimizer)
            and n != "Optimizer"}


def test_every_exported_optimizer_is_checked():
    assert _exported_optimizers() == set(OPTIMIZERS)


def _problem(lib, dtype):
    rng = np.random.default_rng(3)
    w0, x0, y0 = rng.standard_normal((4, 3)), rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    if lib is torch:
        return (torch.tensor(w0, requires_grad=True), torch.tensor(x0), torch.tensor(y0))
    return (kiln.tensor(w0, dtype=dtype, requires_grad=True), kiln.tensor(x0, dtype=dtype), kiln.tensor(y0, dtype=dtype))


def _step(lib, name, kw, compiled=False, steps=2):
    w, x, y = _problem(lib, kiln.float64)
    opt = getattr(lib.optim, name)([w], **kw)

    def loss_fn():
        opt.zero_grad()
        loss = (((x @ w).tanh() - y) ** 2).mean()
        loss.backward()
        return loss

    def step():
        if name == "LBFGS":
            return opt.step(loss_fn)
        loss = loss_fn()
        opt.step()
        return loss

    fn = kiln.compile(step) if compiled and name != "LBFGS" else step
    for _ in range(steps):
        fn()
    return w.detach().numpy()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_update_compiled_eager_and_torch_agree(name):
    kw = OPTIMIZERS[name]
    eager, want = _step(kiln, name, kw), _step(torch, name, kw)
    np.testing.assert_allclose(eager, want, rtol=1e-10, atol=1e-12)
    if name == "LBFGS":  # its step() takes a closure that cannot run inside a trace; see LBFGS_COMPILED
        return
    compiled = _step(kiln, name, kw, compiled=True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-10, atol=1e-12)


def test_lbfgs_compiled_check_exists():
    path, test = LBFGS_COMPILED.split("::")
    assert f"def {test}(" in open(os.path.join(os.path.dirname(TESTS), path)).read()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_update_is_not_differentiable_as_documented(name):
    """No gradient through an update: step() leaves the parameter a leaf with no history, and
    differentiable=True is refused (PyTorch's default behaviour, kiln's only one)."""
    w, x, y = _problem(kiln, kiln.float64)
    opt = getattr(optim, name)([w], **OPTIMIZERS[name])

    def loss_fn():
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        return loss

    opt.step(loss_fn) if name == "LBFGS" else (loss_fn(), opt.step())
    assert w.is_leaf and w.grad_fn is None and w.requires_grad
    for value in opt.state[w].values():
        assert not (isinstance(value, kiln.Tensor) and value.requires_grad), "optimizer state carries autograd history"
    if "differentiable" in inspect.signature(getattr(optim, name)).parameters:
        with pytest.raises(ValueError, match="differentiable=True"):
            getattr(optim, name)([w], differentiable=True, **OPTIMIZERS[name])
