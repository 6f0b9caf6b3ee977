"""dtype queries: result_type, promote_types, can_cast, is_floating_point, is_complex.
"""
from __future__ import annotations

from ...ir import dtypes as dt
from ...ir.dtypes import TENSOR, DType
from ..operands import _promote
from ..tensor import Tensor


def is_floating_point(input: Tensor) -> bool:
    return _tensor_arg(input, "is_floating_point").dtype.is_floating_point


def is_complex(input: Tensor) -> bool:
    """False for every kiln tensor: kiln has no complex dtypes."""
    return _tensor_arg(input, "is_complex").is_complex()


def _tensor_arg(input, fn: str) -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    return input


def result_type(tensor1, tensor2) -> DType:
    return _promote(tensor1, tensor2)


def promote_types(type1, type2) -> DType:
    return dt.result_type((dt.get_dtype(type1), TENSOR), (dt.get_dtype(type2), TENSOR))


def can_cast(from_, to) -> bool:
    return dt.get_dtype(from_).category <= dt.get_dtype(to).category
