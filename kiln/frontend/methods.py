"""Tensor methods and operators: thin bindings of the functions in `ops`."""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as dt
from . import ops
from .creation import rand, randn, tensor
from .ops.indexing import getitem, setitem
from .autograd import is_grad_enabled
from .tensor import CPU, Tensor, _check_device, to_device_value

# Methods that are the same function with the tensor as first argument.
_SAME = """add sub subtract mul multiply div divide true_divide floor_divide remainder pow neg negative abs sign exp
log log1p log2 log10 expm1 sqrt rsqrt square reciprocal sin cos tan tanh sigmoid erf floor ceil trunc round relu
maximum minimum clamp clip clamp_min clamp_max lerp addcmul addcdiv eq ne lt le gt ge less less_equal greater
greater_equal not_equal logical_and logical_or logical_xor logical_not isnan isinf isfinite masked_fill nonzero
sum mean var std prod amax amin max min argmax argmin all any logsumexp softmax log_softmax cumsum reshape view
view_as reshape_as permute transpose swapaxes swapdims t movedim squeeze unsqueeze expand expand_as broadcast_to
flatten unflatten contiguous clone split chunk unbind narrow flip repeat tril triu matmul mm bmm mv dot outer moveaxis
gather scatter scatter_add index_select take_along_dim allclose equal norm dist isclose masked_select diagonal diag
trace roll tile index_add index_fill nan_to_num nansum count_nonzero fmod sinh cosh exp2 logaddexp xlogy frac hypot
select tensor_split sort argsort topk cumprod logcumsumexp diff median unique bincount cross hsplit vsplit heaviside
float_power rad2deg deg2rad baddbmm addbmm""".split()

for _name in _SAME:
    setattr(Tensor, _name, getattr(ops, _name))

# In-place variants: compute out of place, then assign into self (version bump, autograd rebase).
_INPLACE = """add sub mul div pow neg abs sign exp log log1p sqrt rsqrt sin cos tanh sigmoid floor ceil trunc round
relu clamp clip clamp_min clamp_max lerp addcmul addcdiv masked_fill scatter scatter_add remainder floor_divide
square reciprocal erf logical_not logical_and logical_or logical_xor index_add index_fill nan_to_num fmod frac
""".split()

# In-place ops that would change the tensor's shape: kiln keeps a tensor's shape fixed (traces rely on it).
_SHAPE_CHANGING = "t transpose squeeze unsqueeze swapaxes swapdims".split()


def _make_inplace(fn):
    def method(self, *args, **kwargs):
        result = fn(self, *args, **kwargs)
        if result.dtype.category > self.dtype.category:  # PyTorch: no float -> int or int -> bool in place
            raise RuntimeError(f"result type {result.dtype.name} can't be cast to the desired output type "
                               f"{self.dtype.name} (in-place {fn.__name__}_)")
        return self._assign_(result)
    method.__name__ = fn.__name__ + "_"
    return method


for _name in _INPLACE:
    setattr(Tensor, _name + "_", _make_inplace(getattr(ops, _name)))


def _make_shape_changing(name):
    def method(self, *args, **kwargs):
        raise NotImplementedError(f"{name}_() changes the tensor's shape in place, which kiln does not support; "
                                  f"use the out-of-place form instead: x = x.{name}(...)")
    method.__name__ = name + "_"
    return method


for _name in _SHAPE_CHANGING:
    setattr(Tensor, _name + "_", _make_shape_changing(_name))


def _zero_(self):
    return self._assign_(ops.full_const(0, self.shape, self.dtype))


def _fill_(self, value):
    v = ops._cast(value, self.dtype) if isinstance(value, Tensor) else ops.full_const(value, (), self.dtype)
    return self._assign_(ops._bcast(v, tuple(self.shape)))


def _copy_(self, src, non_blocking=False):
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' must be Tensor, not {type(src).__name__}")
    try:
        v = ops.expand(ops._cast(src, self.dtype), tuple(self.shape))
    except RuntimeError:
        raise RuntimeError(f"copy_: the size of src {list(src.shape)} cannot be broadcast to {list(self.shape)}") \
            from None
    if v is src:
        v = ops.clone(v)
    return self._assign_(v)


def _uniform_(self, a=0.0, b=1.0, *, generator=None):
    return self._assign_(rand(tuple(self.shape), dtype=self.dtype, generator=generator) * (b - a) + a)


def _normal_(self, mean=0.0, std=1.0, *, generator=None):
    return self._assign_(randn(tuple(self.shape), dtype=self.dtype, generator=generator) * std + mean)


def _bernoulli_(self, p=0.5, *, generator=None):
    return self._assign_(ops._cast(rand(tuple(self.shape), generator=generator) < p, self.dtype))


Tensor.zero_ = _zero_
Tensor.fill_ = _fill_
Tensor.copy_ = _copy_
Tensor.uniform_ = _uniform_
Tensor.normal_ = _normal_
Tensor.bernoulli_ = _bernoulli_


# -- conversions --------------------------------------------------------------------------
def _to(self, *args, **kwargs):
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, (dt.DType, type)) or (isinstance(a, str) and a not in ("cpu", "cuda") and ":" not in a):
            dtype = a
        else:
            device = a
    out = self
    if dtype is not None and dt.get_dtype(dtype) != self.dtype:
        out = ops._cast(self, dt.get_dtype(dtype))
    elif copy:
        out = ops.clone(self)
    if device is not None:
        out = _to_device(out, _check_device(device))
    return out


def _to_device(t: Tensor, d) -> Tensor:
    """`t` on device `d`: `t` itself when already there; else a copy that autograd sees through
    (the gradient flows back to `t`'s device). Inside kiln.compile the backend places values."""
    if t.device == d or t.is_tracer:
        return t
    out = _moved(t, d)
    if t.requires_grad and is_grad_enabled():
        out._grad_fn, out._requires_grad = _DeviceCopyBackward(t), True
    return out


class _DeviceCopyBackward:
    """Autograd node of a copy between devices: the gradient is copied back to the source's device."""

    n_outputs = 1
    retained = None
    hooks = None

    def __init__(self, src: Tensor):
        from .autograd import _edge
        self.src = src.device
        self.next = [_edge(src)]

    def name(self) -> str:
        return "ToCopyBackward0"

    @property
    def next_functions(self):
        return tuple(e if e is not None else (None, 0) for e in self.next)

    def run(self, grads: list, create_graph: bool) -> list:
        return [_to_device(grads[0], self.src)]

    def release(self) -> None:
        pass


def _moved(t: Tensor, d) -> Tensor:
    return Tensor._make(to_device_value(t._cell.value, d))


def _type(self, dtype=None):
    if dtype is None:
        return {"float32": "kiln.FloatTensor", "float64": "kiln.DoubleTensor", "float16": "kiln.HalfTensor",
                "int32": "kiln.IntTensor", "int64": "kiln.LongTensor", "bool": "kiln.BoolTensor"}[self.dtype.name]
    return _to(self, dtype)


Tensor.to = _to
Tensor.type = _type
Tensor.float = lambda self: _to(self, dt.float32)
Tensor.double = lambda self: _to(self, dt.float64)
Tensor.half = lambda self: _to(self, dt.float16)
Tensor.long = lambda self: _to(self, dt.int64)
Tensor.int = lambda self: _to(self, dt.int32)
Tensor.bool = lambda self: _to(self, dt.bool_)
Tensor.cpu = lambda self, memory_format=None: _to_device(self, CPU)
Tensor.type_as = lambda self, other: _to(self, other.dtype)


def _cuda(self, device=None, non_blocking: bool = False, memory_format=None):
    return _to_device(self, _check_device("cuda" if device is None else device))


Tensor.cuda = _cuda
Tensor.itemsize = property(lambda self: self.dtype.itemsize)
Tensor.nbytes = property(lambda self: self.numel() * self.dtype.itemsize)
Tensor.T = property(lambda self: ops.permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(lambda self: ops.transpose(self, -2, -1))
def _new_like(self: Tensor, t: Tensor, device=None) -> Tensor:
    """A `new_*` method's result on `device`, else on `self`'s device (as PyTorch)."""
    d = _check_device(device) if device is not None else self.device
    if t._operand_constant:
        t._operand_constant = False  # a user's tensor, not an op's literal
    return _to_device(t, d)


def _new_dtype(self: Tensor, dtype):
    return dt.get_dtype(dtype) if dtype else self.dtype


Tensor.new_zeros = lambda self, *size, dtype=None, device=None, **k: _new_like(
    self, ops.full_const(0, ops._shape_arg(size), _new_dtype(self, dtype)), device)
Tensor.new_ones = lambda self, *size, dtype=None, device=None, **k: _new_like(
    self, ops.full_const(1, ops._shape_arg(size), _new_dtype(self, dtype)), device)
Tensor.new_full = lambda self, size, fill_value, dtype=None, device=None, **k: _new_like(
    self, ops.full_const(fill_value, tuple(size), _new_dtype(self, dtype)), device)
Tensor.new_empty = lambda self, *size, dtype=None, device=None, **k: _new_like(
    self, ops.full_const(0, ops._shape_arg(size), _new_dtype(self, dtype)), device)


def _new_tensor(self, data, dtype=None, device=None, **k):
    return _new_like(self, tensor(data, dtype=dtype or self.dtype), device)


Tensor.new_tensor = _new_tensor

# -- operators ------------------------------------------------------------------------------
def _bind_binary_operators() -> None:
    """a + b and b + a, ... for the arithmetic operators: __add__ calls ops.add(a, b), __radd__ ops.add(b, a)."""
    for dunder, name in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"),
                         ("floordiv", "floor_divide"), ("mod", "remainder"), ("matmul", "matmul")):
        setattr(Tensor, f"__{dunder}__", lambda a, b, name=name: getattr(ops, name)(a, b))
        setattr(Tensor, f"__r{dunder}__", lambda a, b, name=name: getattr(ops, name)(b, a))


_bind_binary_operators()
Tensor.__pow__ = lambda a, b: ops.pow(a, b)
Tensor.__rpow__ = lambda a, b: ops.pow(b, a) if isinstance(b, Tensor) else ops.pow(ops.full_const(b, (), ops._promote(a, b)), a)
Tensor.__neg__ = lambda a: ops.neg(a)
Tensor.__pos__ = lambda a: a
Tensor.__abs__ = lambda a: ops.abs(a)
Tensor.__invert__ = lambda a: ops.logical_not(a) if a.dtype.is_bool else ops._bitwise("not", a, a)
Tensor.__and__ = lambda a, b: ops._bitwise("logical_and", a, b)
Tensor.__rand__ = lambda a, b: ops._bitwise("logical_and", b, a)
Tensor.__or__ = lambda a, b: ops._bitwise("logical_or", a, b)
Tensor.__ror__ = lambda a, b: ops._bitwise("logical_or", b, a)
Tensor.__xor__ = lambda a, b: ops._bitwise("logical_xor", a, b)
Tensor.__rxor__ = lambda a, b: ops._bitwise("logical_xor", b, a)
Tensor.__eq__ = lambda a, b: ops.eq(a, b) if isinstance(b, (Tensor, int, float, bool, np.number)) else NotImplemented
Tensor.__ne__ = lambda a, b: ops.ne(a, b) if isinstance(b, (Tensor, int, float, bool, np.number)) else NotImplemented
Tensor.__lt__ = lambda a, b: ops.lt(a, b)
Tensor.__le__ = lambda a, b: ops.le(a, b)
Tensor.__gt__ = lambda a, b: ops.gt(a, b)
Tensor.__ge__ = lambda a, b: ops.ge(a, b)
Tensor.__getitem__ = getitem
Tensor.__setitem__ = setitem


def _iadd(a, b):
    return a.add_(b)


Tensor.__iadd__ = _iadd
Tensor.__isub__ = lambda a, b: a.sub_(b)
Tensor.__imul__ = lambda a, b: a.mul_(b)
Tensor.__itruediv__ = lambda a, b: a.div_(b)
Tensor.__ifloordiv__ = lambda a, b: a.floor_divide_(b)
Tensor.__imod__ = lambda a, b: a.remainder_(b)
Tensor.__ipow__ = lambda a, b: a.pow_(b)


def _bitwise_inplace(name):
    def fn(self, other):
        return ops._bitwise(name, self, other)
    fn.__name__ = "bitwise_" + name.split("_")[1]
    return _make_inplace(fn)


Tensor.__iand__ = _bitwise_inplace("logical_and")
Tensor.__ior__ = _bitwise_inplace("logical_or")
Tensor.__ixor__ = _bitwise_inplace("logical_xor")


def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return iter(ops.unbind(self, 0))


Tensor.__iter__ = _iter


def _contains(self, element):
    if not isinstance(element, (Tensor, int, float, bool, np.number, np.bool_)):
        raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you passed in a "
                           f"{type(element).__name__}.")
    return bool(ops.any(ops.eq(self, element)))


def _format(self, spec):
    if self.ndim == 0 and self._cell.trace is None:
        return format(self.item(), spec)
    if spec:
        raise TypeError("unsupported format string passed to Tensor.__format__")
    return repr(self)


Tensor.__contains__ = _contains
Tensor.__format__ = _format
Tensor.__reversed__ = lambda self: self if self.ndim == 0 else ops.flip(self, 0)
