"""Kernel workloads: one fused computation (gelu, softmax, layer norm), the memory floor
(`copy`) and per-call overhead (`dispatch`), float32, timed under every column.

Each computation is written once for kiln and PyTorch (`F.gelu`, `F.softmax`,
`F.layer_norm`: the same source, the import changed), once in numpy and once in
jax.numpy. Every cell's first result is checked against a float64 numpy evaluation of
the formula (`check`); a wrong result fails the cell. `bytes_moved` is the data one step
must read and write at least, for the GB/s column.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from .registry import COLUMNS, KILN_COMPILE, Prepared, kiln_backend, register
from .workloads import _jax, _torch

GELU_A, GELU_B = 1.5, 0.25
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
LN_EPS = 1e-5


def to_numpy(result: Any) -> np.ndarray:
    """A kiln / torch / jax / numpy result as a numpy array."""
    if isinstance(result, np.ndarray):
        return result
    if hasattr(result, "detach"):
        result = result.detach()
    if hasattr(result, "numpy"):
        return np.asarray(result.numpy())
    return np.asarray(result)


def allclose_check(expected: np.ndarray, rtol: float, atol: float) -> Callable[[Any], None]:
    """A `Prepared.check`: the result matches `expected` (shape, dtype float32, values within tolerance)."""
    def check(result: Any) -> None:
        got = to_numpy(result)
        if got.shape != expected.shape or got.dtype != np.float32:
            raise AssertionError(f"result is {got.dtype}{list(got.shape)}, expected float32{list(expected.shape)}")
        err = np.abs(got.astype(np.float64) - expected)
        bad = err > atol + rtol * np.abs(expected)
        if bad.any() or not np.isfinite(got).all():
            k = int(np.argmax(err)) if np.isfinite(err).all() else int(np.argmin(np.isfinite(got).ravel()))
            raise AssertionError(f"wrong result: {int(bad.sum())} of {got.size} elements outside rtol={rtol} "
                                 f"atol={atol}; worst at flat index {k}: got {got.ravel()[k]!r}, "
                                 f"numpy float64 says {expected.ravel()[k]!r}")
    return check


def _checksum(result: Any) -> float:
    return float(np.sum(to_numpy(result), dtype=np.float64))


def _framework(column: str):
    """(kind, module, functional) for a column: kind is numpy | kiln | torch | jax."""
    if column == "numpy":
        return "numpy", np, None
    if column.startswith("kiln"):
        import kiln
        import kiln.nn.functional as F
        return "kiln", kiln, F
    if column.startswith("torch"):
        torch = _torch()
        import torch.nn.functional as F
        return "torch", torch, F
    if column == "jax.jit":
        jax, jnp = _jax()
        return "jax", jnp, jax
    raise ValueError(f"unknown column {column!r}; known: {COLUMNS}")


def _prepare(column: str, fns: dict[str, Callable], inputs: list[np.ndarray], expected: np.ndarray, *,
             rtol: float, atol: float, bytes_moved: int | None, notes: list[str] | None = None) -> Prepared:
    """Wrap `fns[kind](*inputs)` for `column` (eager, kiln.compile on its backend, torch.compile, jax.jit)."""
    kind, T, _ = _framework(column)
    fn = fns[kind]
    notes = list(notes or [])
    lower = None
    if kind == "numpy":
        args = inputs
        step = lambda: fn(*args)  # noqa: E731
    elif kind == "jax":
        import jax
        args = [T.asarray(a) for a in inputs]
        jitted = jax.jit(fn)
        step = lambda: jitted(*args).block_until_ready()  # noqa: E731
    else:
        args = [T.tensor(a) for a in inputs] if kind == "kiln" else [T.from_numpy(a.copy()) for a in inputs]
        if column in KILN_COMPILE:
            run = T.compile(fn, backend=kiln_backend(column))
            lower = lambda: run.lower(*args)  # noqa: E731
            notes.append(f"{kiln_backend(column)} backend")
        elif column == "torch.compile":
            run = T.compile(fn)
        else:
            run = fn
        step = lambda: run(*args)  # noqa: E731
    return Prepared(step=step, loss_of=_checksum, notes=notes, check=allclose_check(expected, rtol, atol),
                    bytes_moved=bytes_moved, lower=lower)


def _rng_normal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# -- gelu and its memory floor -------------------------------------------------------------------
def _gelu_n(quick: bool) -> int:
    return 1 << (16 if quick else 24)


@functools.lru_cache(maxsize=2)
def _gelu_data(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    x = _rng_normal((_gelu_n(quick),))
    u = x.astype(np.float64) * GELU_A + GELU_B
    return x, 0.5 * u * (1.0 + np.tanh(_SQRT_2_OVER_PI * (u + 0.044715 * u ** 3)))


def _gelu_numpy(x: np.ndarray) -> np.ndarray:
    u = x * np.float32(GELU_A)
    u += np.float32(GELU_B)
    t = u * u
    t *= u
    t *= np.float32(0.044715)
    t += u
    t *= np.float32(_SQRT_2_OVER_PI)
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= u
    t *= np.float32(0.5)
    return t


@register("gelu", f"gelu_tanh(x*{GELU_A}+{GELU_B}) over 2^24 float32 elements "
                  "(0.5*u*(1+tanh(sqrt(2/pi)*(u+0.044715*u^3))), F.gelu(approximate='tanh'))")
def gelu(column: str, quick: bool) -> Prepared:
    x, expected = _gelu_data(quick)

    def gelu_jax(x):
        import jax
        return jax.nn.gelu(x * GELU_A + GELU_B, approximate=True)

    fns = {"numpy": _gelu_numpy, "jax": gelu_jax}
    kind, _, F = _framework(column)
    if kind in ("kiln", "torch"):
        def gelu(x):
            return F.gelu(x * GELU_A + GELU_B, approximate="tanh")
        fns[kind] = gelu
    return _prepare(column, fns, [x], expected, rtol=1e-4, atol=1e-5, bytes_moved=2 * x.nbytes)


@register("copy", "memory floor for gelu: out[:] = x over the same 2^24 float32 elements (numpy, out preallocated)",
          columns=["numpy"])
def copy(column: str, quick: bool) -> Prepared:
    x, _ = _gelu_data(quick)
    out = np.empty_like(x)

    def step():
        out[:] = x
        return out
    return Prepared(step=step, loss_of=_checksum, check=allclose_check(x.astype(np.float64), 0.0, 0.0),
                    bytes_moved=2 * x.nbytes)


# -- softmax -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _softmax_data(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    x = _rng_normal((64, 256) if quick else (4096, 4096), seed=1)
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return x, e / e.sum(axis=-1, keepdims=True)


def _softmax_numpy(x: np.ndarray) -> np.ndarray:
    e = x - x.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


@register("softmax", "softmax over the last dim of a 4096x4096 float32 matrix (F.softmax(x, dim=-1))")
def softmax(column: str, quick: bool) -> Prepared:
    x, expected = _softmax_data(quick)

    def softmax_jax(x):
        import jax
        return jax.nn.softmax(x, axis=-1)

    fns = {"numpy": _softmax_numpy, "jax": softmax_jax}
    kind, _, F = _framework(column)
    if kind in ("kiln", "torch"):
        def softmax(x):
            return F.softmax(x, dim=-1)
        fns[kind] = softmax
    return _prepare(column, fns, [x], expected, rtol=1e-4, atol=1e-7, bytes_moved=2 * x.nbytes)


# -- layer norm ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _layernorm_data(quick: bool) -> tuple[list[np.ndarray], np.ndarray]:
    rows, d = (64, 128) if quick else (8192, 1024)
    x = _rng_normal((rows, d), seed=2)
    w = 1.0 + 0.1 * _rng_normal((d,), seed=3)
    b = 0.1 * _rng_normal((d,), seed=4)
    x64 = x.astype(np.float64)
    m = x64.mean(axis=-1, keepdims=True)
    v = ((x64 - m) ** 2).mean(axis=-1, keepdims=True)
    return [x, w, b], (x64 - m) / np.sqrt(v + LN_EPS) * w + b


def _layernorm_numpy(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", xc, xc)[:, None] / np.float32(x.shape[-1])
    xc *= 1.0 / np.sqrt(var + np.float32(LN_EPS))
    xc *= w
    xc += b
    return xc


def _layernorm_jax(x, w, b):
    import jax.numpy as jnp
    m = jnp.mean(x, axis=-1, keepdims=True)
    v = jnp.mean(jnp.square(x - m), axis=-1, keepdims=True)
    return (x - m) * (1.0 / jnp.sqrt(v + LN_EPS)) * w + b


@register("layernorm", "layer norm over the last dim of 8192x1024 float32, affine weight and bias, eps=1e-5 "
                       "(F.layer_norm(x, (1024,), w, b))")
def layernorm(column: str, quick: bool) -> Prepared:
    inputs, expected = _layernorm_data(quick)
    d = inputs[0].shape[-1]
    fns = {"numpy": _layernorm_numpy, "jax": _layernorm_jax}
    kind, _, F = _framework(column)
    if kind in ("kiln", "torch"):
        def layer_norm(x, w, b):
            return F.layer_norm(x, (d,), w, b, eps=LN_EPS)
        fns[kind] = layer_norm
    return _prepare(column, fns, inputs, expected, rtol=1e-4, atol=1e-4,
                    bytes_moved=2 * inputs[0].nbytes + inputs[1].nbytes + inputs[2].nbytes)


# -- matmul ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _matmul_data(quick: bool) -> tuple[list[np.ndarray], np.ndarray]:
    n = 128 if quick else 1024
    a, b = _rng_normal((n, n), seed=5), _rng_normal((n, n), seed=6)
    return [a, b], a.astype(np.float64) @ b.astype(np.float64)


def _matmul(a, b):
    return a @ b


@register("matmul 1024^3", "C = A @ B, 1024x1024 float32 matrices (kiln.compile: kiln's own packed GEMM, "
                           "no BLAS; numpy, torch and jax call their BLAS)",
          columns=["numpy", "kiln.compile[llvm]", "torch eager", "torch.compile", "jax.jit"])
def matmul(column: str, quick: bool) -> Prepared:
    inputs, expected = _matmul_data(quick)
    n = inputs[0].shape[0]
    fns = {"numpy": _matmul, "kiln": _matmul, "torch": _matmul, "jax": _matmul}
    prep = _prepare(column, fns, inputs, expected, rtol=1e-4, atol=2e-3,
                    bytes_moved=sum(x.nbytes for x in inputs) + expected.size * 4)
    prep.flops = 2 * n ** 3
    return prep


@functools.lru_cache(maxsize=4)
def _small_matmul_data(m: int, k: int, n: int, transposed: bool) -> tuple[list[np.ndarray], np.ndarray]:
    a = _rng_normal((m, k), seed=7)
    b = _rng_normal((n, k) if transposed else (k, n), seed=8)
    want = a.astype(np.float64) @ (b.T if transposed else b).astype(np.float64)
    return [a, b], want


def _matmul_bt(a, b):
    return a @ b.T


def _small_matmul(column: str, quick: bool, m: int, k: int, n: int, transposed: bool) -> Prepared:
    if quick:
        m, k, n = max(8, m // 4), max(8, k // 4), max(8, n // 4)
    inputs, expected = _small_matmul_data(m, k, n, transposed)
    f = _matmul_bt if transposed else _matmul
    fns = {"numpy": f, "kiln": f, "torch": f, "jax": f}
    prep = _prepare(column, fns, inputs, expected, rtol=1e-4, atol=1e-3,
                    bytes_moved=sum(x.nbytes for x in inputs) + expected.size * 4)
    prep.flops = 2 * m * k * n
    return prep


@register("matmul 64x784x128", "x @ w.T, x 64x784, w 128x784 float32: the MLP's first layer at batch 64 "
                               "(a small GEMM: 12.8 MFLOP, the weight read transposed)",
          columns=["numpy", "kiln.compile[llvm]", "torch eager", "jax.jit"])
def matmul_mlp(column: str, quick: bool) -> Prepared:
    return _small_matmul(column, quick, 64, 784, 128, transposed=True)


@register("matmul 64x256x1024", "x @ w, x 64x256, w 256x1024 float32: the LSTM's per-step product "
                                "(33.6 MFLOP)",
          columns=["numpy", "kiln.compile[llvm]", "torch eager", "jax.jit"])
def matmul_lstm(column: str, quick: bool) -> Prepared:
    return _small_matmul(column, quick, 64, 256, 1024, transposed=False)


# -- per-call overhead --------------------------------------------------------------------------
@register("dispatch", "per-call overhead: x + 1 on a one-element float32 tensor (compiled columns: a compiled x + 1)")
def dispatch(column: str, quick: bool) -> Prepared:
    x = np.array([1.0], np.float32)

    def add_one(x):
        return x + 1

    fns = {"numpy": add_one, "kiln": add_one, "torch": add_one, "jax": add_one}
    return _prepare(column, fns, [x], np.array([2.0]), rtol=0.0, atol=0.0, bytes_moved=None)
