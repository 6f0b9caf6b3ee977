"""The legacy typed tensor constructors: `kiln.FloatTensor(2, 3)`, `kiln.LongTensor([1, 2])`, ...

As in PyTorch, each is called with sizes (an uninitialised tensor), with data (a copy, cast to
the type's dtype), with a tensor of that dtype (a new tensor sharing its values), or with nothing
(an empty 1-d tensor); `isinstance(t, kiln.FloatTensor)` checks the dtype. PyTorch's types for
dtypes kiln lacks (uint8, int8, int16, bfloat16, complex) raise a TypeError that says so.
"""
from __future__ import annotations

from ..ir import dtypes as dt
from .creation import empty, tensor
from .tensor import Size, Tensor


class _TensorTypeMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype

    def __repr__(cls) -> str:
        return f"<class 'kiln.{cls.__name__}'>"


class _TypedTensor(metaclass=_TensorTypeMeta):
    dtype: dt.DType

    def __new__(cls, *args, device=None) -> Tensor:
        if device is not None and str(device) != "cpu":
            raise RuntimeError(f"kiln.{cls.__name__}: kiln tensors live on the CPU, got device={device!r}")
        if not args:
            return empty(0, dtype=cls.dtype)
        if len(args) == 1 and not isinstance(args[0], int):
            data = args[0]
            if isinstance(data, Tensor):
                if data.dtype != cls.dtype:
                    raise TypeError(f"kiln.{cls.__name__}(tensor): expected a tensor of dtype {cls.dtype.name}, "
                                    f"got {data.dtype.name}; use tensor.to(kiln.{cls.dtype.name})")
                return data.view(data.shape)
            if isinstance(data, Size):
                return _sized(cls, data)
            return tensor(data, dtype=cls.dtype)
        return _sized(cls, args)


def _sized(cls, sizes) -> Tensor:
    for k, s in enumerate(sizes):
        if not isinstance(s, int) or isinstance(s, bool):
            raise TypeError(f"kiln.{cls.__name__}(*sizes): size at position {k} must be an int, "
                            f"got {type(s).__name__}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(sizes)}")
    return empty(*sizes, dtype=cls.dtype)


def _typed(name: str, dtype: dt.DType) -> type:
    return _TensorTypeMeta(name, (_TypedTensor,), {"dtype": dtype, "__doc__": f"Legacy constructor of {dtype.name} "
                                                   "tensors (see kiln.frontend.legacy).", "__module__": "kiln"})


def _unsupported(name: str, dtype_name: str) -> type:
    def __new__(cls, *args, **kwargs):
        raise TypeError(f"kiln.{name}: kiln has no {dtype_name} dtype (it supports "
                        f"{', '.join(d.name for d in dt.ALL_DTYPES)})")
    return _TensorTypeMeta(name, (), {"__new__": __new__, "__module__": "kiln", "dtype": None})


FloatTensor = _typed("FloatTensor", dt.float32)
DoubleTensor = _typed("DoubleTensor", dt.float64)
HalfTensor = _typed("HalfTensor", dt.float16)
IntTensor = _typed("IntTensor", dt.int32)
LongTensor = _typed("LongTensor", dt.int64)
BoolTensor = _typed("BoolTensor", dt.bool_)
ByteTensor = _unsupported("ByteTensor", "uint8")
CharTensor = _unsupported("CharTensor", "int8")
ShortTensor = _unsupported("ShortTensor", "int16")
BFloat16Tensor = _unsupported("BFloat16Tensor", "bfloat16")
