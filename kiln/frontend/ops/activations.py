"""Activation functions that torch also offers at the top level (kiln.relu, kiln.gelu, ...).

`kiln.nn.functional` adds the `inplace=` forms and the rest of the family.
"""
from __future__ import annotations

import math

from ..operands import full_const
from ..tensor import Tensor
from .comparison import le, where
from .pointwise import abs, add, clamp, div, erf, exp, expm1, log1p, mul, neg, pow, sigmoid, tanh


def relu(input: Tensor) -> Tensor:
    if input.dtype.is_bool:
        raise RuntimeError("Boolean inputs not supported for relu")
    return where(le(input, 0), full_const(0, (), input.dtype), input)  # relu(nan) is nan, like torch


def relu6(input: Tensor) -> Tensor:
    return hardtanh(input, 0.0, 6.0)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return clamp(input, min_val, max_val)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return where(input > 0, input, mul(input, negative_slope))


def elu(input: Tensor, alpha: float = 1.0) -> Tensor:
    return where(input > 0, input, mul(expm1(input), alpha))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"gelu is only implemented for floating-point tensors, got {input.dtype.name}")
    if approximate == "tanh":
        inner = mul(add(input, mul(pow(input, 3), 0.044715)), math.sqrt(2.0 / math.pi))
        return mul(mul(input, 0.5), add(tanh(inner), 1.0))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return mul(mul(input, 0.5), add(erf(mul(input, 1.0 / math.sqrt(2.0))), 1.0))


def silu(input: Tensor) -> Tensor:
    return mul(input, sigmoid(input))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    bx = mul(input, beta)
    soft = div(log1p(exp(neg(abs(bx)))), beta)
    soft = add(soft, div(relu(bx), beta))
    return where(bx > threshold, input, soft)


def logsigmoid(input: Tensor) -> Tensor:
    return neg(softplus(neg(input)))
