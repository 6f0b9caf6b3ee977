"""Shared test data: one valid input set per differentiable primitive, finite differences, the
native-vs-reference GEMM check, and the standard training step."""
import numpy as np

import kiln
from kiln.ir import PRIMITIVES

rng = np.random.default_rng(0)


def _f64(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape)


def _pos(*shape):
    return rng.uniform(0.5, 2.0, size=shape)


# primitive -> (list of numpy inputs, attrs, indices of differentiable inputs)
CASES = {
    "neg": ([_f64(3, 4)], {}),
    "abs": ([_f64(3, 4)], {}),
    "sign": ([_f64(3, 4)], {}),
    "exp": ([_f64(3, 4)], {}),
    "log": ([_pos(3, 4)], {}),
    "log1p": ([_pos(3, 4)], {}),
    "sqrt": ([_pos(3, 4)], {}),
    "rsqrt": ([_pos(3, 4)], {}),
    "sin": ([_f64(3, 4)], {}),
    "cos": ([_f64(3, 4)], {}),
    "tanh": ([_f64(3, 4)], {}),
    "logistic": ([_f64(3, 4) * 4], {}),
    "erf": ([_f64(3, 4)], {}),
    "floor": ([_f64(3, 4) * 3 + 0.05], {}),
    "add": ([_f64(3, 4), _f64(3, 4)], {}),
    "sub": ([_f64(3, 4), _f64(3, 4)], {}),
    "mul": ([_f64(3, 4), _f64(3, 4)], {}),
    "div": ([_f64(3, 4), _pos(3, 4)], {}),
    "floor_divide": ([_f64(3, 4) * 5 + 0.05, _pos(3, 4)], {}),
    "remainder": ([_f64(3, 4) * 5, _pos(3, 4)], {}),
    "pow": ([_pos(3, 4), _f64(3, 4) * 2], {}),
    "maximum": ([_f64(3, 4), _f64(3, 4)], {}),
    "minimum": ([_f64(3, 4), _f64(3, 4)], {}),
    "select": ([_f64(3, 4) > 0, _f64(3, 4), _f64(3, 4)], {}),
    "cast": ([_f64(3, 4)], {"dtype": kiln.float64}),
    "reduce_sum": ([_f64(3, 4, 5)], {"axes": (0, 2), "keepdims": False}),
    "reduce_max": ([_f64(3, 4, 5)], {"axes": (1,), "keepdims": True}),
    "reduce_min": ([_f64(3, 4, 5)], {"axes": (2,), "keepdims": False}),
    "reduce_prod": ([_pos(3, 4)], {"axes": (1,), "keepdims": False}),
    "reshape": ([_f64(3, 4)], {"shape": (2, 6)}),
    "permute": ([_f64(2, 3, 4)], {"perm": (2, 0, 1)}),
    "broadcast_to": ([_f64(3, 1)], {"shape": (2, 3, 4)}),
    "slice": ([_f64(5, 6)], {"starts": (1, 0), "stops": (5, 6), "steps": (2, 3)}),
    "pad": ([_f64(3, 4)], {"lo": (1, 0), "hi": (0, 2), "interior": (1, 0), "value": 0.5}),
    "concat": ([_f64(2, 3), _f64(4, 3)], {"axis": 0}),
    "gather": ([_f64(4, 5), rng.integers(0, 4, size=(3, 5))], {"axis": 0}),
    "scatter_add": ([_f64(4, 5), rng.integers(0, 4, size=(3, 5)), _f64(3, 5)], {"axis": 0}),
    "scatter": ([_f64(6, 3), np.array([[0, 1, 2], [3, 4, 5]]), _f64(2, 3)], {"axis": 0}),
    "matmul": ([_f64(2, 3, 4), _f64(2, 4, 5)], {}),
}


def _to_tensor(a, grad):
    t = kiln.from_numpy(np.array(a))
    if grad and t.dtype.is_floating_point:
        t.requires_grad_(True)
    return t


def _numeric_grad(name, arrays, attrs, k, ct, eps=1e-6):
    prim = PRIMITIVES[name]
    x = arrays[k]
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        ap = list(arrays); ap[k] = xp
        am = list(arrays); am[k] = xm
        fp = np.sum(prim.impl(*ap, **attrs) * ct)
        fm = np.sum(prim.impl(*am, **attrs) * ct)
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_gemm(fn, arrays, d, threads=None, monkeypatch=None) -> str:
    """`fn` compiled natively against the reference backend, on `threads` native threads when
    given (through `monkeypatch`), tolerance scaled by the contraction length; the kernels' text."""
    from kiln.codegen import gemm
    from kiln.ir import dtypes as dt
    from kiln.runtime import native_pool
    if threads is not None:
        monkeypatch.setattr(native_pool, "_num_threads", threads)
        monkeypatch.setattr(gemm, "host_threads", lambda: threads)
    args = [kiln.from_numpy(a) for a in arrays]
    f = kiln.compile(fn)
    got = f(*args).numpy()
    want = kiln.compile(fn, backend="reference")(*args).numpy()
    k = max(a.shape[-1] for a in arrays)
    tol = {dt.float32: 2e-5, dt.float64: 1e-12}[d] * k
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return f.lower(*args).as_text("kernels")


def train_step(model, opt, crit=None):
    """`step(x, y)`: zero the gradients, cross-entropy (or `crit`) of `model(x)` against `y`,
    backward, `opt.step()`; returns the loss (the step tests compile, as a user writes it)."""
    crit = kiln.nn.CrossEntropyLoss() if crit is None else crit

    def step(x, y):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step
