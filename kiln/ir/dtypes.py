"""Data types: the closed set kiln supports and PyTorch's type-promotion rules."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """A tensor element type. `name` is PyTorch's name (float32, int64, bool)."""

    name: str
    short: str  # the IR text spelling, e.g. f32
    np_dtype: np.dtype
    category: int  # 0 bool, 1 integer, 2 floating
    itemsize: int

    @property
    def is_floating_point(self) -> bool:
        return self.category == 2

    @property
    def is_integer(self) -> bool:
        return self.category == 1

    @property
    def is_bool(self) -> bool:
        return self.category == 0

    def python_scalar(self, value):
        """`value` as the Python scalar type of this dtype (bool, int or float)."""
        if hasattr(value, "item"):
            value = value.item()
        if self.is_bool:
            return bool(value)
        if self.is_integer:
            return int(value)
        return float(value)

    def __repr__(self) -> str:
        return f"kiln.{self.name}"

    def __reduce__(self):
        return (get_dtype, (self.name,))


bool_ = DType("bool", "b1", np.dtype(np.bool_), 0, 1)
int32 = DType("int32", "i32", np.dtype(np.int32), 1, 4)
int64 = DType("int64", "i64", np.dtype(np.int64), 1, 8)
float16 = DType("float16", "f16", np.dtype(np.float16), 2, 2)
float32 = DType("float32", "f32", np.dtype(np.float32), 2, 4)
float64 = DType("float64", "f64", np.dtype(np.float64), 2, 8)

ALL_DTYPES = (bool_, int32, int64, float16, float32, float64)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NAME.update({d.short: d for d in ALL_DTYPES})
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64, "int": int32})
_BY_NP = {d.np_dtype: d for d in ALL_DTYPES}


def get_dtype(spec) -> DType:
    """Resolve a DType, its name, a numpy dtype or a Python type to a kiln DType."""
    if isinstance(spec, DType):
        return spec
    if isinstance(spec, str):
        if spec in _BY_NAME:
            return _BY_NAME[spec]
        raise TypeError(f"unsupported dtype {spec!r}; kiln supports {', '.join(d.name for d in ALL_DTYPES)}")
    if spec is bool:
        return bool_
    if spec is int:
        return int64
    if spec is float:
        return float64  # as PyTorch: the Python type float names double precision
    try:
        npd = np.dtype(spec)
    except TypeError:
        raise TypeError(f"unsupported dtype {spec!r}; kiln supports {', '.join(d.name for d in ALL_DTYPES)}") from None
    if npd in _BY_NP:
        return _BY_NP[npd]
    raise TypeError(f"unsupported dtype {npd} ; kiln supports {', '.join(d.name for d in ALL_DTYPES)}")


def from_numpy_dtype(npd: np.dtype) -> DType:
    """Map a numpy dtype to kiln's, raising a TypeError naming the dtype if unsupported."""
    npd = np.dtype(npd)
    if npd in _BY_NP:
        return _BY_NP[npd]
    raise TypeError(f"unsupported dtype {npd}; kiln supports {', '.join(d.name for d in ALL_DTYPES)}")


def _wider(a: DType, b: DType) -> DType:
    """Promotion of two dtypes of equal rank in the operand hierarchy (PyTorch's table)."""
    if a == b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return a if a.itemsize >= b.itemsize else b


# Operand priority, as in PyTorch: dimensioned tensors > zero-dim tensors > Python scalars.
TENSOR, ZERODIM, SCALAR = 2, 1, 0


def result_type(*operands: tuple[DType, int]) -> DType:
    """PyTorch's type promotion over (dtype, priority) pairs.

    A lower-priority operand (zero-dim tensor or Python scalar) changes the result only
    when its category (bool < integer < floating) is higher than every higher-priority
    operand's; then its own dtype is used (for Python scalars: the default dtype).
    """
    best: dict[int, DType] = {}
    for dt, prio in operands:
        best[prio] = _wider(best[prio], dt) if prio in best else dt
    result = None
    for prio in (TENSOR, ZERODIM, SCALAR):
        if prio not in best:
            continue
        cand = best[prio]
        if result is None or cand.category > result.category:
            result = cand
    assert result is not None, "result_type needs at least one operand"
    return result


def scalar_dtype(value) -> DType:
    """The dtype a Python scalar gets as a tensor (bool, int64, float32 default)."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return float32
    raise TypeError(f"expected a Python number, got {type(value).__name__}")
