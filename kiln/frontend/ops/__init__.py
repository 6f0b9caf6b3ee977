"""User-facing tensor operations with PyTorch's names, broadcasting and type promotion.

Every op is a composition of primitives applied through `apply`; none has its own
gradient: gradients come from the primitives' VJP rules. One module per concept, in
layers (each imports only modules above it in this list, never this package):

    pointwise    arithmetic, exp/log, trig, rounding, clamp        (torch "pointwise ops")
    comparison   eq/lt/..., logical_*, where, isnan/isinf, nonzero  (below pointwise)
    activations  relu, gelu, silu, softplus, ...
    reductions   sum, mean, var, max/min, argmax, all/any, logsumexp, softmax, norm
    cumulative   cumsum, cumprod, logcumsumexp, diff
    shape        reshape, permute, transpose, squeeze, expand, flatten, narrow, select
    joining      cat, stack, split, chunk, unbind, flip, repeat, roll, meshgrid
    indexing     tensor[key] and tensor[key] = value
    selection    gather, scatter, index_select/add/fill, one_hot, masked_select
    linalg       matmul, mm, bmm, addmm, cross, cdist, tril/triu, diagonal, trace
    contraction  einsum
    sorting      sort, topk, median, unique, bincount, searchsorted
    promotion    result_type, promote_types, can_cast, is_floating_point, is_complex

Below them all: `..operands` (promotion, broadcasting, casts, constants), `..dims` (dim
arguments) and `..creation` (tensor(), arange, from_numpy). This package re-exports every
op, so `kiln.frontend.ops.X` and `kiln.X` name the same function.
"""
from types import ModuleType as _ModuleType

from ...ir.primitives import broadcast_shapes  # noqa: F401  (kiln.broadcast_shapes, as torch.broadcast_shapes)
from ..dims import _norm_dim  # noqa: F401  (helpers other layers reach as ops._x)
from ..operands import _bcast, _cast, _prep, _promote, _shape_arg, full_const  # noqa: F401
from .pointwise import (_as_tensor, abs, add, addcdiv, addcmul, ceil, clamp, clamp_max, clamp_min, clip, cos, cosh,
                        deg2rad, div, divide, erf, exp, exp2, expm1, float_power, floor, floor_divide, fmod, frac,
                        heaviside, hypot, isclose, lerp, log, log10, log1p, log2, logaddexp, maximum, minimum, mul,
                        multiply, nan_to_num, neg, negative, pow, rad2deg, reciprocal, remainder, round, rsqrt, rsub,
                        sigmoid, sign, sin, sinh, sqrt, square, sub, subtract, tan, tanh, true_divide, trunc, xlogy)
from .comparison import (_bitwise, allclose, eq, equal, ge, greater, greater_equal, gt, isfinite, isinf, isnan, le,
                         less, less_equal, logical_and, logical_not, logical_or, logical_xor, lt, masked_fill, ne,
                         nonzero, not_equal, where)
from .activations import (elu, gelu, hardtanh, leaky_relu, logsigmoid, relu, relu6, silu, softplus)
from .reductions import (MinMax, all, amax, amin, any, argmax, argmin, count_nonzero, dist, log_softmax, logsumexp,
                         max, max_return_types, mean, min, nansum, norm, prod, softmax, std, std_mean, sum, var,
                         var_mean)
from .cumulative import (cumprod, cumsum, diff, logcumsumexp)
from .shape import (broadcast_tensors, broadcast_to, clone, contiguous, expand, expand_as, flatten, moveaxis, movedim,
                    narrow, permute, reshape, reshape_as, select, squeeze, swapaxes, swapdims, t, transpose,
                    unflatten, unsqueeze, view, view_as)
from .joining import (cat, chunk, concat, concatenate, flip, hsplit, hstack, meshgrid, repeat, roll, split, stack,
                      tensor_split, tile, unbind, vsplit, vstack)
from .selection import (gather, index_add, index_fill, index_select, masked_select, one_hot, scatter, scatter_add,
                        take_along_dim)
from .linalg import (addbmm, addmm, baddbmm, bmm, cdist, cross, diag, diagonal, dot, matmul, mm, mv, outer, trace,
                     tril, triu)
from .contraction import (einsum)
from .sorting import (argsort, bincount, bucketize, median, searchsorted, sort, topk, unique)
from .promotion import (can_cast, is_complex, is_floating_point, promote_types, result_type)

__all__ = sorted(n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, _ModuleType))

from .indexing import getitem, setitem  # noqa: E402,F401  (Tensor.__getitem__/__setitem__; not kiln.* functions)
