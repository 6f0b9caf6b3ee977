"""`kiln.nn.functional`: PyTorch's `torch.nn.functional`, written as compositions of primitives.

Nothing here has gradient code: gradients come from the primitives' VJP rules (convolution
uses the `conv` primitive; pooling is pad + a split view and reductions for non-overlapping
windows, pad + slice/concat + argmax/gather or sums otherwise).
"""
from __future__ import annotations

import builtins
import itertools
import math
import warnings
from typing import Sequence

import numpy as np

from ..frontend import ops as K
from ..frontend.autograd import no_grad
from ..frontend.creation import arange, ones, rand, tensor
from ..frontend.tensor import Tensor, active_trace, apply
from ..ir import dtypes as dt

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "affine_grid", "alpha_dropout", "avg_pool1d", "avg_pool2d", "avg_pool3d", "batch_norm",
    "bilinear", "binary_cross_entropy", "binary_cross_entropy_with_logits", "celu", "channel_shuffle", "conv1d",
    "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "cosine_embedding_loss",
    "cosine_similarity", "cross_entropy", "ctc_loss", "dropout", "dropout1d", "dropout2d", "dropout3d", "elu",
    "embedding", "embedding_bag", "feature_alpha_dropout", "fold", "gaussian_nll_loss", "gelu", "glu", "grid_sample",
    "group_norm", "gumbel_softmax", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "hinge_embedding_loss",
    "huber_loss", "instance_norm", "interpolate", "kl_div", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "local_response_norm", "log_softmax", "logsigmoid", "lp_pool1d", "lp_pool2d", "lp_pool3d", "margin_ranking_loss",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_unpool1d", "max_unpool2d", "max_unpool3d", "mish", "mse_loss",
    "multi_margin_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss", "nll_loss", "normalize", "one_hot",
    "pad", "pairwise_distance", "pixel_shuffle", "pixel_unshuffle", "poisson_nll_loss", "relu", "relu6", "relu_",
    "rms_norm", "rrelu", "scaled_dot_product_attention", "selu", "sigmoid", "silu", "smooth_l1_loss",
    "soft_margin_loss", "softmax", "softmin", "softplus", "softshrink", "softsign", "tanh", "tanhshrink", "threshold",
    "triplet_margin_loss", "triplet_margin_with_distance_loss", "unfold", "upsample",
]


# ======================================================================================
# helpers
# ======================================================================================

def _ntuple(x, n: int, name: str) -> tuple[int, ...]:
    if isinstance(x, (list, tuple)):
        if len(x) == 1:
            x = tuple(x) * n
        if len(x) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {tuple(x)}")
        return tuple(int(v) for v in x)
    if isinstance(x, Tensor):
        x = int(x)
    if not isinstance(x, (int, np.integer)) or isinstance(x, bool):
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {type(x).__name__}")
    return (int(x),) * n


def _check_tensor(x, name: str, fn: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{name}' must be Tensor, not {type(x).__name__}")
    return x


def _reduction(reduction: str, size_average=None, reduce=None) -> str:
    if size_average is not None or reduce is not None:  # legacy arguments, as PyTorch maps them
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        return "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return K.mean(loss)
    if reduction == "sum":
        return K.sum(loss)
    return loss


def _zero(x: Tensor) -> Tensor:
    return K.full_const(0, (), x.dtype)


# ======================================================================================
# convolution functions
# ======================================================================================

def _conv_padding(padding, n, ksize, dilation, stride, fn):
    """(lo, hi) per spatial dim from an int, a tuple, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(ksize, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ValueError(f"{fn}: Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    p = _ntuple(padding, n, "padding")
    if any(v < 0 for v in p):
        raise RuntimeError(f"{fn}: negative padding is not supported, got padding={p}")
    return tuple((v, v) for v in p)


def _conv_operands(n: int, fn: str, input, weight, weight_dims: str) -> tuple[Tensor, bool]:
    """Check a conv's input/weight ranks; returns the batched input and whether it was unbatched."""
    _check_tensor(input, "input", fn)
    _check_tensor(weight, "weight", fn)
    if weight.ndim != n + 2:
        raise RuntimeError(f"{fn}: weight must have {n + 2} dimensions ({weight_dims}, "
                           f"{n} kernel dims), got shape {list(weight.shape)}")
    if input.ndim not in (n + 1, n + 2):
        raise RuntimeError(f"Expected {n + 1}D (unbatched) or {n + 2}D (batched) input to {fn}, but got input of "
                           f"size: {list(input.shape)}")
    unbatched = input.ndim == n + 1
    return (K.unsqueeze(input, 0) if unbatched else input), unbatched


def _convnd(n: int, fn: str, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    x, unbatched = _conv_operands(n, fn, input, weight, "out_channels, in_channels/groups")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise RuntimeError(f"{fn}: non-positive groups is not supported, got groups={groups}")
    if weight.shape[0] % groups:
        raise RuntimeError(f"{fn}: out_channels ({weight.shape[0]}) must be divisible by groups ({groups})")
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                           f"{list(x.shape)} to have {weight.shape[1] * groups} channels, but got {x.shape[1]} "
                           "channels instead")
    if x.dtype != weight.dtype:
        raise RuntimeError(f"{fn}: Input type ({x.dtype.name}) and weight type ({weight.dtype.name}) should be "
                           "the same")
    stride = _ntuple(stride, n, "stride")
    dilation = _ntuple(dilation, n, "dilation")
    if any(s < 1 for s in stride):
        raise RuntimeError(f"{fn}: non-positive stride is not supported, got stride={stride}")
    if any(d < 1 for d in dilation):
        raise RuntimeError(f"{fn}: dilation should be greater than zero, got dilation={dilation}")
    pads = _conv_padding(padding, n, tuple(weight.shape[2:]), dilation, stride, fn)
    for d in range(n):
        size = x.shape[2 + d] + pads[d][0] + pads[d][1]
        eff = dilation[d] * (weight.shape[2 + d] - 1) + 1
        if size < eff:
            raise RuntimeError(f"{fn}: Calculated padded input size per channel: {size} (spatial dim {d} of input "
                               f"{list(x.shape)}). Kernel size: {eff}. Kernel size can't be greater than actual "
                               "input size")
    out = apply("conv", x, weight, strides=stride, padding=pads, dilation=dilation, groups=int(groups))
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
            raise RuntimeError(f"{fn}: bias must have shape ({weight.shape[0]},), got {list(bias.shape)}")
        out = K.add(out, K.reshape(bias, (1, -1) + (1,) * n))
    return K.squeeze(out, 0) if unbatched else out


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution over (N, C_in, L) with weight (C_out, C_in/groups, kL)."""
    return _convnd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution over (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW)."""
    return _convnd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """3-D convolution over (N, C_in, D, H, W)."""
    return _convnd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups)


def _conv_transposend(n: int, fn: str, input, weight, bias, stride, padding, output_padding, groups,
                      dilation) -> Tensor:
    """Transposed convolution as a stride-1 `conv` of the stride-dilated, padded input with the flipped kernel."""
    x, unbatched = _conv_operands(n, fn, input, weight, "in_channels, out_channels/groups")
    if x.shape[1] != weight.shape[0]:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input{list(x.shape)} "
                           f"to have {weight.shape[0]} channels, but got {x.shape[1]} channels instead")
    if weight.shape[0] % groups:
        raise RuntimeError(f"{fn}: in_channels ({weight.shape[0]}) must be divisible by groups ({groups})")
    if x.dtype != weight.dtype:
        raise RuntimeError(f"{fn}: Input type ({x.dtype.name}) and weight type ({weight.dtype.name}) should be "
                           "the same")
    st, pd = _ntuple(stride, n, "stride"), _ntuple(padding, n, "padding")
    op, dl = _ntuple(output_padding, n, "output_padding"), _ntuple(dilation, n, "dilation")
    for o, s_, d in zip(op, st, dl):
        if o >= s_ and o >= d:
            raise RuntimeError(f"{fn}: output padding must be smaller than either stride or dilation, but got "
                               f"output_padding={op}, stride={st}, dilation={dl}")
    ks = tuple(weight.shape[2:])
    cin, cout_g = weight.shape[0], weight.shape[1]
    out_sp = tuple((s_in - 1) * s_ - 2 * p + d * (k - 1) + o + 1
                   for s_in, s_, p, d, k, o in zip(x.shape[2:], st, pd, dl, ks, op))
    if any(v < 1 for v in out_sp):
        raise RuntimeError(f"{fn}: given input of size {list(x.shape)}, the computed output size {list(out_sp)} is "
                           "too small (padding too large)")
    if any(v == 0 for v in out_sp):  # an empty result, as PyTorch returns
        out = K.full_const(0, (x.shape[0], cout_g * groups) + out_sp, x.dtype)
        return K.squeeze(out, 0) if unbatched else out
    lo = tuple(d * (k - 1) - p for d, k, p in zip(dl, ks, pd))
    hi = tuple(l + o for l, o in zip(lo, op))
    xd = apply("pad", x, lo=(0, 0) + tuple(builtins.max(v, 0) for v in lo),
               hi=(0, 0) + tuple(builtins.max(v, 0) for v in hi), interior=(0, 0) + tuple(s_ - 1 for s_ in st),
               value=0.0)
    if any(v < 0 for v in lo + hi):
        starts = (0, 0) + tuple(builtins.max(-v, 0) for v in lo)
        stops = tuple(xd.shape[:2]) + tuple(sz - builtins.max(-v, 0) for sz, v in zip(xd.shape[2:], hi))
        xd = apply("slice", xd, starts=starts, stops=stops, steps=(1,) * (n + 2))
    w = K.reshape(weight, (groups, cin // groups, cout_g) + ks)
    w = K.permute(w, (0, 2, 1) + tuple(range(3, 3 + n)))
    w = K.reshape(w, (groups * cout_g, cin // groups) + ks)
    w = K.flip(w, tuple(range(2, 2 + n))) if builtins.any(k > 1 for k in ks) else w
    out = apply("conv", xd, w, strides=(1,) * n, padding=((0, 0),) * n, dilation=dl, groups=int(groups))
    if bias is not None:
        out = K.add(out, K.reshape(bias, (1, -1) + (1,) * n))
    return K.squeeze(out, 0) if unbatched else out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 1-D convolution; weight (C_in, C_out/groups, kL)."""
    return _conv_transposend(1, "conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups,
                             dilation)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution (the gradient of conv2d w.r.t. its input); weight (C_in, C_out/groups, kH, kW)."""
    return _conv_transposend(2, "conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups,
                             dilation)


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    return _conv_transposend(3, "conv_transpose3d", input, weight, bias, stride, padding, output_padding, groups,
                             dilation)


def _patch_weight(c: int, kh: int, kw: int, dtype) -> Tensor:
    """(C*kh*kw, 1, kh, kw) one-hot kernels: output channel c*K + k copies kernel position k of channel c."""
    k = kh * kw
    w = np.zeros((c * k, 1, kh, kw), dtype=dtype.np_dtype)
    eye = np.eye(k, dtype=dtype.np_dtype).reshape(k, kh, kw)
    for ch in range(c):
        w[ch * k:(ch + 1) * k, 0] = eye
    return _const(w)


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sliding local blocks (im2col): (N, C, H, W) -> (N, C*kh*kw, L), as a grouped `conv` with one-hot kernels."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"Input Error: Only 3D or 4D input Tensors are supported (got {input.ndim}D)")
    x = K.unsqueeze(input, 0) if input.ndim == 3 else input
    kh, kw = _ntuple(kernel_size, 2, "kernel_size")
    c = x.shape[1]
    out = conv2d(x, _patch_weight(c, kh, kw, x.dtype), None, stride, padding, dilation, groups=c)
    out = K.reshape(out, (x.shape[0], c * kh * kw, -1))
    return K.squeeze(out, 0) if input.ndim == 3 else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sum sliding local blocks back into (N, C, *output_size) (col2im; the adjoint of unfold)."""
    if input.ndim not in (2, 3):
        raise RuntimeError(f"Input Error: Only unbatched (2D) or batched (3D) input Tensors are supported (got "
                           f"{input.ndim}D)")
    x = K.unsqueeze(input, 0) if input.ndim == 2 else input
    kh, kw = _ntuple(kernel_size, 2, "kernel_size")
    oh, ow = _ntuple(output_size, 2, "output_size")
    (dh, dw), (ph, pw), (sh, sw) = (_ntuple(dilation, 2, "dilation"), _ntuple(padding, 2, "padding"),
                                    _ntuple(stride, 2, "stride"))
    k = kh * kw
    if x.shape[1] % k:
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product of kernel_size, but "
                           f"got input.size(1)={x.shape[1]} and kernel_size=({kh}, {kw})")
    c = x.shape[1] // k
    bh = (oh + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    bw = (ow + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if bh * bw != x.shape[2]:
        raise RuntimeError(f"Given output_size=({oh}, {ow}), kernel_size=({kh}, {kw}), dilation=({dh}, {dw}), "
                           f"padding=({ph}, {pw}), stride=({sh}, {sw}), expected size of input's dimension 2 to "
                           f"match the calculated number of sliding blocks {bh} * {bw} = {bh * bw}, but got "
                           f"input.size(2)={x.shape[2]}.")
    cols = K.reshape(x, (x.shape[0], c * k, bh, bw))
    full = (oh + 2 * ph, ow + 2 * pw)
    op = (full[0] - ((bh - 1) * sh + dh * (kh - 1) + 1), full[1] - ((bw - 1) * sw + dw * (kw - 1) + 1))
    img = _conv_transposend(2, "fold", cols, _patch_weight(c, kh, kw, x.dtype), None, (sh, sw), 0, (0, 0), c,
                            (dh, dw))
    if op[0] or op[1]:  # blocks do not reach the far edge: pad the remainder with zeros
        img = apply("pad", img, lo=(0, 0, 0, 0), hi=(0, 0, op[0], op[1]), interior=(0, 0, 0, 0), value=0.0)
    if ph or pw:
        img = apply("slice", img, starts=(0, 0, ph, pw), stops=(img.shape[0], c, ph + oh, pw + ow),
                    steps=(1, 1, 1, 1))
    return K.squeeze(img, 0) if input.ndim == 2 else img


# ======================================================================================
# pooling functions
# ======================================================================================

def _avg_divisor(spatial, ks, st, pd, outs, count_include_pad) -> np.ndarray:
    """PyTorch's per-window divisor: padding counts (up to the padded edge) only with count_include_pad."""
    per_dim = []
    for s, k, stv, p, o in zip(spatial, ks, st, pd, outs):
        start = np.arange(o) * stv - p
        end = np.minimum(start + k, s + p)
        size = end - start
        cs, ce = np.maximum(start, 0), np.minimum(end, s)
        per_dim.append(size if count_include_pad else ce - cs)
    div = per_dim[0].astype(np.float64)
    for v in per_dim[1:]:
        div = np.multiply.outer(div, v)
    return div


def _avg_pool(n, fn, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x, unbatched, ks, st, pd, dl, outs = _pool_args(n, fn, input, kernel_size, stride, padding, 1, ceil_mode)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{fn}: expected a floating-point input, got {x.dtype.name}")
    if tuple(st) == tuple(ks):  # non-overlapping: a sum over the split view's window axes
        w, axes = _split_windows(x, ks, pd, outs, 0.0)
        s = apply("reduce_sum", w, axes=axes, keepdims=False)
    else:
        s = K.sum(_windows(x, ks, st, pd, dl, outs, 0.0), -1)
    if divisor_override:
        out = K.div(s, float(divisor_override))
    else:
        div = _avg_divisor(tuple(x.shape[2:]), ks, st, pd, outs, count_include_pad)
        if np.all(div == div.flat[0]):
            out = K.div(s, float(div.flat[0]))
        else:
            out = K.div(s, _const(div.astype(x.dtype.np_dtype)))
    return K.squeeze(out, 0) if unbatched else out


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    return _avg_pool(1, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over sliding windows of (N, C, H, W), with PyTorch's divisor rules."""
    return _avg_pool(2, "avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    return _avg_pool(3, "avg_pool3d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _pool_args(n, fn, input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_tensor(input, "input", fn)
    if input.ndim not in (n + 1, n + 2):
        raise RuntimeError(f"{fn}: Expected {n + 1}D or {n + 2}D input (unbatched or batched), but got input of "
                           f"size: {list(input.shape)}")
    ks = _ntuple(kernel_size, n, "kernel_size")
    st = ks if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
        else _ntuple(stride, n, "stride")
    pd = _ntuple(padding, n, "padding")
    dl = _ntuple(dilation, n, "dilation")
    if any(k < 1 for k in ks):
        raise RuntimeError(f"{fn}: kernel_size must be greater than zero, but got kernel_size={ks}")
    if any(s < 1 for s in st):
        raise RuntimeError(f"{fn}: stride must be greater than zero, but got stride={st}")
    if any(d < 1 for d in dl):
        raise RuntimeError(f"{fn}: dilation must be greater than zero, but got dilation={dl}")
    for k, p, d in zip(ks, pd, dl):
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(f"{fn}: pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={d}")
    x = K.unsqueeze(input, 0) if input.ndim == n + 1 else input
    spatial = tuple(x.shape[2:])
    outs = []
    for s, k, stv, p, d in zip(spatial, ks, st, pd, dl):
        eff = d * (k - 1) + 1
        num = s + 2 * p - eff
        if num < 0:
            raise RuntimeError(f"{fn}: Given input size {list(x.shape)}, the kernel ({k}, dilation {d}) is larger "
                               f"than the padded input ({s + 2 * p}); output size would be non-positive")
        o = (-(-num // stv) if ceil_mode else num // stv) + 1
        if ceil_mode and (o - 1) * stv >= s + p:
            o -= 1
        outs.append(o)
    return x, input.ndim == n + 1, ks, st, pd, dl, tuple(outs)


def _windows(x: Tensor, ks, st, pd, dl, outs, fill) -> Tensor:
    """(N, C, *S) -> (N, C, *outs, prod(ks)) of pooling windows, padded with `fill`."""
    n = len(ks)
    need = tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(outs, st, dl, ks))
    lo = pd
    hi = tuple(builtins.max(nd - sp - p, 0) for nd, sp, p in zip(need, x.shape[2:], pd))
    if any(lo) or any(hi):
        x = apply("pad", x, lo=(0, 0) + lo, hi=(0, 0) + hi, interior=(0,) * (n + 2), value=fill)
    if all(s == k for s, k in zip(st, ks)) and all(d == 1 for d in dl):
        # non-overlapping windows: crop, split each spatial dim into (out, k), move the k's last
        crop = tuple(o * k for o, k in zip(outs, ks))
        if tuple(x.shape[2:]) != crop:
            x = apply("slice", x, starts=(0,) * (n + 2), stops=tuple(x.shape[:2]) + crop, steps=(1,) * (n + 2))
        split = tuple(x.shape[:2]) + tuple(v for o, k in zip(outs, ks) for v in (o, k))
        x = K.reshape(x, split)
        perm = (0, 1) + tuple(2 + 2 * i for i in range(n)) + tuple(3 + 2 * i for i in range(n))
        x = K.permute(x, perm)
        return K.reshape(x, tuple(x.shape[:2 + n]) + (math.prod(ks),))
    parts = []
    for off in itertools.product(*(range(k) for k in ks)):
        starts = (0, 0) + tuple(o * d for o, d in zip(off, dl))
        stops = tuple(x.shape[:2]) + tuple(b + (o - 1) * s + 1 for b, o, s in zip(starts[2:], outs, st))
        sl = apply("slice", x, starts=starts, stops=stops, steps=(1, 1) + tuple(st))
        parts.append(K.unsqueeze(sl, -1))
    return parts[0] if len(parts) == 1 else apply("concat", *parts, axis=n + 2)


def _split_windows(x: Tensor, ks, pd, outs, fill) -> tuple[Tensor, tuple[int, ...]]:
    """Non-overlapping windows (stride == kernel, no dilation) as a view: (N, C, *S) padded and
    cropped, then each spatial dim split into (out, k): (N, C, o1, k1, o2, k2, ...). Returns the view
    and its window axes. The split is a reshape a kernel reads without division (no permute)."""
    n = len(ks)
    need = tuple(o * k for o, k in zip(outs, ks))
    hi = tuple(builtins.max(nd - sp - p, 0) for nd, sp, p in zip(need, x.shape[2:], pd))
    if any(pd) or any(hi):
        x = apply("pad", x, lo=(0, 0) + tuple(pd), hi=(0, 0) + hi, interior=(0,) * (n + 2), value=fill)
    if tuple(x.shape[2:]) != need:
        x = apply("slice", x, starts=(0,) * (n + 2), stops=tuple(x.shape[:2]) + need, steps=(1,) * (n + 2))
    split = tuple(x.shape[:2]) + tuple(v for o, k in zip(outs, ks) for v in (o, k))
    return K.reshape(x, split), tuple(3 + 2 * i for i in range(n))


def _first_max(w: Tensor, axes: tuple[int, ...], ks) -> tuple[Tensor, Tensor]:
    """(max over `axes` of `w`, flat position in the window of its first occurrence, or of the last
    nan as in PyTorch), as reductions over the window axes. The max is a sum of the one selected element, so
    its gradient goes to that element only (PyTorch's rule), elementwise and without a scatter."""
    pos = None
    for a, k in zip(axes, ks):  # row-major flat position of each element in its window
        shape = [1] * w.ndim
        shape[a] = k
        term = K.reshape(arange(k, dtype=dt.int64), tuple(shape))
        pos = term if pos is None else K.add(K.mul(pos, k), term)
    with no_grad():
        m = apply("reduce_max", w, axes=axes, keepdims=True)
        first = apply("reduce_min", K.where(K.eq(w, m), pos, math.prod(ks)), axes=axes, keepdims=True)
        if w.dtype.is_floating_point:  # PyTorch's kernel takes every nan it meets: the last one wins
            nan = apply("reduce_max", K.where(K.isnan(w), pos, -1), axes=axes, keepdims=True)
            first = K.where(K.ge(nan, 0), nan, first)
    pick = K.eq(pos, first)
    out = apply("reduce_sum", K.where(pick, w, 0), axes=axes, keepdims=False)
    return out, first


def _max_pool(n, fn, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x, unbatched, ks, st, pd, dl, outs = _pool_args(n, fn, input, kernel_size, stride, padding, dilation, ceil_mode)
    if x.dtype.is_floating_point:
        fill = -math.inf
    elif x.dtype.is_bool:
        raise RuntimeError(f"{fn}: not implemented for bool tensors")
    else:
        fill = int(np.iinfo(x.dtype.np_dtype).min)
    if tuple(st) == tuple(ks) and all(d == 1 for d in dl):
        w, axes = _split_windows(x, ks, pd, outs, fill)
        out, first = _first_max(w, axes, ks)
        idx = K.reshape(first, tuple(first.shape[:2]) + tuple(outs) + (1,))
    else:
        w = _windows(x, ks, st, pd, dl, outs, fill)
        idx = apply("argmax", w, axis=w.ndim - 1, keepdims=True)
        out = K.squeeze(apply("gather", w, idx, axis=w.ndim - 1), -1)
    if unbatched:
        out = K.squeeze(out, 0)
    if not return_indices:
        return out
    # flat index into the (unpadded) input's spatial plane, as PyTorch returns
    k = K.squeeze(idx, -1)
    flat = None
    rest = math.prod(ks)
    pos_terms = []
    for i in range(n):
        rest //= ks[i]
        ki = K.remainder(K.floor_divide(k, rest), ks[i]) if rest > 1 else K.remainder(k, ks[i])
        base = np.arange(outs[i], dtype=np.int64) * st[i] - pd[i]
        base = base.reshape((1, 1) + tuple(outs[i] if j == i else 1 for j in range(n)))
        pos_terms.append(K.add(K.mul(ki, dl[i]), _const(base)))
    for i in range(n):
        plane_after = math.prod(x.shape[3 + i:])
        term = K.mul(pos_terms[i], plane_after)
        flat = term if flat is None else K.add(flat, term)
    if unbatched:
        flat = K.squeeze(flat, 0)
    return out, flat


def _const(arr: np.ndarray) -> Tensor:
    return tensor(arr)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Max over sliding windows of (N, C, L); the gradient goes to the first maximum of each window."""
    return _max_pool(1, "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Max over sliding windows of (N, C, H, W); the gradient goes to the first maximum of each window."""
    return _max_pool(2, "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    return _max_pool(3, "max_pool3d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    return _max_unpool(1, "max_unpool1d", input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Partial inverse of max_pool2d: values placed at `indices` (from return_indices=True), zeros elsewhere."""
    return _max_unpool(2, "max_unpool2d", input, indices, kernel_size, stride, padding, output_size)


def _max_unpool(n, fn, input, indices, kernel_size, stride, padding, output_size):
    ks = _ntuple(kernel_size, n, "kernel_size")
    st = ks if stride is None else _ntuple(stride, n, "stride")
    pd = _ntuple(padding, n, "padding")
    if input.ndim not in (n + 1, n + 2) or tuple(indices.shape) != tuple(input.shape):
        raise RuntimeError(f"{fn}: expected a {n + 1}D or {n + 2}D input and indices of the same shape, got input "
                           f"{list(input.shape)} and indices {list(indices.shape)}")
    x = K.unsqueeze(input, 0) if input.ndim == n + 1 else input
    idx = K.unsqueeze(indices, 0) if indices.ndim == n + 1 else indices
    default = tuple((x.shape[2 + d] - 1) * st[d] - 2 * pd[d] + ks[d] for d in range(n))
    if output_size is None:
        out_sp = default
    else:
        out_sp = tuple(output_size)[-n:]
        for d in range(n):
            if not default[d] - st[d] < out_sp[d] < default[d] + st[d]:
                raise ValueError(f"{fn}: invalid output_size {tuple(output_size)} (expected sizes near {default})")
    nb, c = x.shape[:2]
    plane = math.prod(out_sp)
    flat_x = K.reshape(x, (nb, c, -1))
    flat_i = K._cast(K.reshape(idx, (nb, c, -1)), dt.int64)
    zeros = K.full_const(0, (nb, c, plane), x.dtype)
    out = K.reshape(apply("scatter", zeros, flat_i, flat_x, axis=2), (nb, c) + out_sp)
    return K.squeeze(out, 0) if input.ndim == n + 1 else out


def max_unpool3d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    return _max_unpool(3, "max_unpool3d", input, indices, kernel_size, stride, padding, output_size)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    (k,) = _ntuple(kernel_size, 1, "kernel_size")
    out = avg_pool1d(K.pow(input, norm_type), k, stride, 0, ceil_mode)
    return K.pow(K.mul(K.mul(K.sign(out), K.relu(K.abs(out))), k), 1.0 / norm_type)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    """(sum over each window of x^p)^(1/p)."""
    kh, kw = _ntuple(kernel_size, 2, "kernel_size")
    out = avg_pool2d(K.pow(input, norm_type), (kh, kw), stride, 0, ceil_mode)
    return K.pow(K.mul(K.mul(K.sign(out), K.relu(K.abs(out))), kh * kw), 1.0 / norm_type)


def lp_pool3d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    ks = _ntuple(kernel_size, 3, "kernel_size")
    out = avg_pool3d(K.pow(input, norm_type), ks, stride, 0, ceil_mode)
    return K.pow(K.mul(K.mul(K.sign(out), K.relu(K.abs(out))), math.prod(ks)), 1.0 / norm_type)


def _adaptive_max(n, fn, input, output_size, return_indices):
    _check_tensor(input, "input", fn)
    if input.ndim not in (n + 1, n + 2):
        raise RuntimeError(f"{fn}: Expected {n + 1}D or {n + 2}D input, but got input of size: {list(input.shape)}")
    x = K.unsqueeze(input, 0) if input.ndim == n + 1 else input
    spatial = tuple(x.shape[2:])
    if isinstance(output_size, (list, tuple)):
        osz = tuple(s if o is None else int(o) for o, s in zip(output_size, spatial))
    else:
        osz = (int(output_size),) * n
    if builtins.all(s % o == 0 for s, o in zip(spatial, osz)):
        ks = tuple(s // o for s, o in zip(spatial, osz))
        res = _max_pool(n, fn, x, ks, ks, 0, 1, False, return_indices)
    else:
        # windows [floor(i*S/O), ceil((i+1)*S/O)) differ in size: one max per output cell
        ranges = [[((i * s) // o, -(-((i + 1) * s) // o)) for i in range(o)] for s, o in zip(spatial, osz)]
        vals, idxs = [], []
        for cell in itertools.product(*ranges):
            starts = (0, 0) + tuple(a for a, _ in cell)
            stops = tuple(x.shape[:2]) + tuple(b for _, b in cell)
            win = apply("slice", x, starts=starts, stops=stops, steps=(1,) * (n + 2))
            flat = K.reshape(win, tuple(x.shape[:2]) + (-1,))
            k = apply("argmax", flat, axis=2, keepdims=True)
            vals.append(apply("gather", flat, k, axis=2))
            if return_indices:
                widths = tuple(b - a for a, b in cell)
                pos = None
                rest = math.prod(widths)
                for d in range(n):
                    rest //= widths[d]
                    kd = K.add(K.remainder(K.floor_divide(k, rest), widths[d]), cell[d][0])
                    term = K.mul(kd, math.prod(spatial[d + 1:]))
                    pos = term if pos is None else K.add(pos, term)
                idxs.append(pos)
        res = K.reshape(K.cat(vals, 2), tuple(x.shape[:2]) + osz)
        if return_indices:
            res = (res, K.reshape(K.cat(idxs, 2), tuple(x.shape[:2]) + osz))
    if input.ndim == n + 1:
        res = tuple(K.squeeze(r, 0) for r in res) if return_indices else K.squeeze(res, 0)
    return res


def adaptive_max_pool1d(input: Tensor, output_size,
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    return _adaptive_max(1, "adaptive_max_pool1d", input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size,
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Max pooling to a fixed output size, with PyTorch's window boundaries."""
    return _adaptive_max(2, "adaptive_max_pool2d", input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size,
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    return _adaptive_max(3, "adaptive_max_pool3d", input, output_size, return_indices)


def _adaptive_avg(n, fn, input, output_size):
    _check_tensor(input, "input", fn)
    if input.ndim not in (n + 1, n + 2):
        raise RuntimeError(f"{fn}: Expected {n + 1}D or {n + 2}D input, but got input of size: {list(input.shape)}")
    spatial = tuple(input.shape[-n:])
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != n:
            raise ValueError(f"{fn}: output_size must have {n} entries, got {tuple(output_size)}")
        osz = tuple(s if o is None else int(o) for o, s in zip(output_size, spatial))
    else:
        osz = (int(output_size),) * n
    if any(o < 1 for o in osz):
        raise ValueError(f"{fn}: output_size must be positive, got {osz}")
    x = input
    for i, (s, o) in enumerate(zip(spatial, osz)):
        ax = x.ndim - n + i
        if s == o:
            continue
        if s % o == 0:  # equal windows: split the dim and average
            k = s // o
            shape = tuple(x.shape[:ax]) + (o, k) + tuple(x.shape[ax + 1:])
            x = K.mean(K.reshape(x, shape), ax + 1)
            continue
        a = np.zeros((s, o), dtype=x.dtype.np_dtype)  # column j averages input [floor(j*s/o), ceil((j+1)*s/o))
        for j in range(o):
            lo, hi = (j * s) // o, -(-((j + 1) * s) // o)
            a[lo:hi, j] = 1.0 / (hi - lo)
        xm = K.movedim(x, ax, -1)
        lead = tuple(xm.shape[:-1])
        y = K.matmul(K.reshape(xm, (-1, s)), _const(a))
        x = K.movedim(K.reshape(y, lead + (o,)), -1, ax)
    return x if x is not input else K.clone(input)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    return _adaptive_avg(1, "adaptive_avg_pool1d", input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed output size; windows [floor(i*H/OH), ceil((i+1)*H/OH)) as PyTorch."""
    return _adaptive_avg(2, "adaptive_avg_pool2d", input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    return _adaptive_avg(3, "adaptive_avg_pool3d", input, output_size)


# ======================================================================================
# attention
# ======================================================================================

def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q K^T * scale + mask) V; a bool mask marks positions that take part."""
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = K.mul(K.matmul(query, K.transpose(key, -2, -1)), scale)
    if is_causal:
        causal = K.tril(ones(L, S, dtype=dt.bool_))
        scores = K.masked_fill(scores, K.logical_not(causal), -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype.is_bool:
            scores = K.masked_fill(scores, K.logical_not(attn_mask), -math.inf)
        else:
            scores = K.add(scores, attn_mask)
    attn = K.softmax(scores, -1)
    if dropout_p > 0.0:
        attn = dropout(attn, dropout_p, True)
    return K.matmul(attn, value)


# ======================================================================================
# non-linear activations
# ======================================================================================

def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    out = K.where(K.gt(input, threshold), input, K.full_const(value, (), input.dtype))
    return input._assign_(out) if inplace else out


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0); the gradient at 0 is 0, as PyTorch."""
    return input.relu_() if inplace else K.relu(input)


def relu_(input: Tensor) -> Tensor:
    return input.relu_()


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    out = K.clamp(input, min_val, max_val)
    return input._assign_(out) if inplace else out


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    out = K.mul(input, hardsigmoid(input))
    return input._assign_(out) if inplace else out


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = K.where(K.gt(input, 0), input, K.mul(K.expm1(input), alpha))
    return input._assign_(out) if inplace else out


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    out = K.mul(elu(input, _SELU_ALPHA), _SELU_SCALE)
    return input._assign_(out) if inplace else out


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = K.where(K.gt(input, 0), input, K.mul(K.expm1(K.div(input, alpha)), alpha))
    return input._assign_(out) if inplace else out


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = K.leaky_relu(input, negative_slope)
    return input._assign_(out) if inplace else out


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False) -> Tensor:
    """Leaky ReLU whose negative slope is drawn from U(lower, upper) per element in training, else their mean."""
    if training:
        slope = K.add(K.mul(rand(tuple(input.shape), dtype=input.dtype, device=input.device if input.is_cuda else None), upper - lower), lower)
    else:
        slope = (lower + upper) / 2.0
    out = K.where(K.ge(input, 0), input, K.mul(input, slope))
    return input._assign_(out) if inplace else out


def glu(input: Tensor, dim: int = -1) -> Tensor:
    a, b = K.chunk(input, 2, dim)
    if a.shape != b.shape:
        raise RuntimeError(f"glu: Halving dimension must be even, but dimension {dim} is size {input.shape[dim]}")
    return K.mul(a, K.sigmoid(b))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    return K.gelu(input, approximate)


def logsigmoid(input: Tensor) -> Tensor:
    return K.logsigmoid(input)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return K.where(K.gt(K.abs(input), lambd), input, _zero(input))


def tanhshrink(input: Tensor) -> Tensor:
    return K.sub(input, K.tanh(input))


def softsign(input: Tensor) -> Tensor:
    return K.div(input, K.add(K.abs(input), 1.0))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return K.softplus(input, beta, threshold)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return K.softmax(K.neg(input), _softmax_dim(input.ndim) if dim is None else dim, dtype)


def _softmax_dim(ndim: int) -> int:
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return K.softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return K.where(K.gt(input, lambd), K.sub(input, lambd),
                   K.where(K.lt(input, -lambd), K.add(input, lambd), _zero(input)))


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> Tensor:
    """Softmax of (logits + Gumbel noise) / tau; `hard` returns one-hot samples with the soft gradient."""
    u = rand(tuple(logits.shape), dtype=logits.dtype, device=logits.device if logits.is_cuda else None)
    gumbels = K.neg(K.log(K.neg(K.log(K.add(u, eps)))))  # -log(Exp(1)) samples
    y_soft = K.softmax(K.div(K.add(logits, gumbels), tau), dim)
    if not hard:
        return y_soft
    index = K.argmax(y_soft, dim, keepdim=True)
    y_hard = K.scatter(K.mul(y_soft.detach(), 0.0), dim, index, 1.0)
    return K.add(K.sub(y_hard, y_soft.detach()), y_soft)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return K.log_softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype)


tanh = K.tanh


sigmoid = K.sigmoid


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    out = K.div(K.clamp(K.add(input, 3.0), 0.0, 6.0), 6.0)
    return input._assign_(out) if inplace else out


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    out = K.silu(input)
    return input._assign_(out) if inplace else out


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    out = K.mul(input, K.tanh(softplus(input)))
    return input._assign_(out) if inplace else out


# ======================================================================================
# normalization
# ======================================================================================

def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Normalise over every dim but 1 (channels); in training, update running stats in place."""
    _check_tensor(input, "input", "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected at least 2D input (N, C, ...), got {input.ndim}D input")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise RuntimeError(f"batch_norm: {name} should contain {c} elements (channels of input "
                               f"{list(input.shape)}), not {t.numel()}")
    axes = (0,) + tuple(range(2, input.ndim))
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // c
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{list(input.shape)}")
        mean = K.mean(input, axes, keepdim=True)
        d = K.sub(input, mean)
        var = K.mean(K.mul(d, d), axes, keepdim=True)
        y = K.mul(d, K.rsqrt(K.add(var, eps)))
        if running_mean is not None or running_var is not None:
            with no_grad():
                m = 0.0 if momentum is None else momentum
                if running_mean is not None:
                    running_mean.copy_(K.add(K.mul(running_mean, 1 - m), K.mul(K.reshape(mean, (c,)), m)))
                if running_var is not None:
                    unbiased = K.mul(K.reshape(var, (c,)), count / (count - 1))
                    running_var.copy_(K.add(K.mul(running_var, 1 - m), K.mul(unbiased, m)))
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be given when training=False")
        y = K.mul(K.sub(input, K.reshape(running_mean, bshape)),
                  K.rsqrt(K.add(K.reshape(running_var, bshape), eps)))
    if weight is not None:
        y = K.mul(y, K.reshape(weight, bshape))
    if bias is not None:
        y = K.add(y, K.reshape(bias, bshape))
    return y


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise each group of channels over (channels in group, *spatial)."""
    n, c = input.shape[0], input.shape[1]
    if c % num_groups:
        raise RuntimeError(f"group_norm: Expected number of channels in input ({c}) to be divisible by "
                           f"num_groups ({num_groups})")
    x = K.reshape(input, (n, num_groups, -1))
    mean = K.mean(x, -1, keepdim=True)
    d = K.sub(x, mean)
    var = K.mean(K.mul(d, d), -1, keepdim=True)
    y = K.reshape(K.mul(d, K.rsqrt(K.add(var, eps))), tuple(input.shape))
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = K.mul(y, K.reshape(weight, bshape))
    if bias is not None:
        y = K.add(y, K.reshape(bias, bshape))
    return y


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each (sample, channel) over its spatial dims."""
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    axes = tuple(range(2, input.ndim))
    mean = K.mean(input, axes, keepdim=True)
    d = K.sub(input, mean)
    var = K.mean(K.mul(d, d), axes, keepdim=True)
    y = K.mul(d, K.rsqrt(K.add(var, eps)))
    c = input.shape[1]
    if running_mean is not None and running_var is not None:
        count = math.prod(input.shape[2:])
        with no_grad():
            bm = K.mean(K.reshape(mean, (input.shape[0], c)), 0)
            bv = K.mean(K.reshape(var, (input.shape[0], c)), 0)
            running_mean.copy_(K.add(K.mul(running_mean, 1 - momentum), K.mul(bm, momentum)))
            running_var.copy_(K.add(K.mul(running_var, 1 - momentum),
                                    K.mul(bv, momentum * count / builtins.max(count - 1, 1))))
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = K.mul(y, K.reshape(weight, bshape))
    if bias is not None:
        y = K.add(y, K.reshape(bias, bshape))
    return y


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims (biased variance), then scale and shift."""
    _check_tensor(input, "input", "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns or len(ns) > input.ndim:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape [*, "
                           f"{', '.join(map(str, ns))}], but got input of size{list(input.shape)}")
    axes = tuple(range(input.ndim - len(ns), input.ndim))
    mean = K.mean(input, axes, keepdim=True)
    d = K.sub(input, mean)
    var = K.mean(K.mul(d, d), axes, keepdim=True)
    y = K.mul(d, K.rsqrt(K.add(var, eps)))
    if weight is not None:
        y = K.mul(y, weight)
    if bias is not None:
        y = K.add(y, bias)
    return y


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + alpha * mean of x^2 over `size` neighbouring channels)^beta (AlexNet's LRN)."""
    if input.ndim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {input.ndim} dimensions)")
    if input.numel() == 0:
        return input
    n, c = input.shape[0], input.shape[1]
    sq = K.reshape(K.mul(input, input), (n, 1, c, -1))
    sq = pad(sq, (0, 0, size // 2, (size - 1) // 2))
    div = K.reshape(avg_pool2d(sq, (size, 1), stride=1), tuple(input.shape))
    return K.div(input, K.pow(K.add(K.mul(div, alpha), k), beta))


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2 over the trailing dims) + eps) * weight; eps defaults to the dtype's machine epsilon."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(ns) > input.ndim or tuple(input.shape[input.ndim - len(ns):]) != ns:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape [*, "
                           f"{', '.join(map(str, ns))}], but got input of size{list(input.shape)}")
    if eps is None:
        eps = float(np.finfo(input.dtype.np_dtype).eps)
    axes = tuple(range(input.ndim - len(ns), input.ndim))
    y = K.mul(input, K.rsqrt(K.add(K.mean(K.mul(input, input), axes, keepdim=True), eps)))
    return y if weight is None else K.mul(y, weight)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along `dim`."""
    if p == 2.0:
        norm = K.sqrt(K.sum(K.mul(input, input), dim, keepdim=True))
    else:
        norm = K.pow(K.sum(K.pow(K.abs(input), p), dim, keepdim=True), 1.0 / p)
    return K.div(input, K.clamp_min(norm, eps))


# ======================================================================================
# linear functions
# ======================================================================================

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, for x of shape (*, in_features) and W of shape (out_features, in_features)."""
    _check_tensor(input, "input", "linear")
    if weight.ndim not in (1, 2):
        raise RuntimeError(f"linear: weight must be 1-D or 2-D, got shape {tuple(weight.shape)}")
    if input.ndim == 0:
        raise RuntimeError("linear: input must have at least 1 dimension, got a 0-d tensor")
    in_f = weight.shape[-1]
    if input.shape[-1] != in_f:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                           f"({math.prod(input.shape[:-1])}x{input.shape[-1]} and {in_f}x"
                           f"{weight.shape[0] if weight.ndim == 2 else 1})")
    if input.dtype != weight.dtype:
        raise RuntimeError(f"linear: input dtype {input.dtype.name} and weight dtype {weight.dtype.name} differ "
                           "(convert the model with .to(dtype) or the input with .float()/.double())")
    lead = tuple(input.shape[:-1])
    x2 = input if input.ndim == 2 else K.reshape(input, (-1, in_f))
    if weight.ndim == 1:
        out = K.matmul(x2, weight)
        out_shape = lead
    else:
        out = K.matmul(x2, K.t(weight))
        out_shape = lead + (weight.shape[0],)
    if bias is not None:
        out = K.add(out, bias)
    return out if tuple(out.shape) == out_shape else K.reshape(out, out_shape)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_k = x1^T W_k x2 + b_k for W of shape (out, in1, in2)."""
    lead = tuple(input1.shape[:-1])
    a = K.reshape(input1, (-1, 1, 1, input1.shape[-1]))            # (B,1,1,in1)
    b = K.reshape(input2, (-1, 1, input2.shape[-1], 1))            # (B,1,in2,1)
    t = K.matmul(K.matmul(a, K.unsqueeze(weight, 0)), b)           # (B,out,1,1)
    out = K.reshape(t, lead + (weight.shape[0],))
    return out if bias is None else K.add(out, bias)


# ======================================================================================
# dropout functions
# ======================================================================================

def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout_mask(x: Tensor, shape, p: float) -> Tensor:
    keep = K._cast(K.ge(rand(tuple(shape), dtype=x.dtype if x.dtype.is_floating_point else dt.float32,
                             device=x.device if x.is_cuda else None), p),
                   x.dtype)
    return K.mul(keep, 1.0 / (1.0 - p))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability `p` in training and scale the rest by 1/(1-p)."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = K.mul(input, 0.0)
    else:
        out = K.mul(input, _dropout_mask(input, input.shape, p))
    return input._assign_(out) if inplace else out


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _alpha_dropout(input: Tensor, p: float, training: bool, feature: bool) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return K.mul(input, 0.0)
    alpha_p = -_SELU_ALPHA * _SELU_SCALE
    a = ((1 - p) * (1 + p * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * p
    shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2) if feature else tuple(input.shape)
    keep = K._cast(K.ge(rand(shape, dtype=input.dtype), p), input.dtype)
    x = K.add(K.mul(input, keep), K.mul(K.rsub(keep, 1.0), alpha_p))
    return K.add(K.mul(x, a), b)


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
    """Dropout that keeps SELU's self-normalising mean and variance (dropped values go to -alpha*scale)."""
    out = _alpha_dropout(input, p, training, False)
    return input._assign_(out) if inplace and out is not input else out


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
    out = _alpha_dropout(input, p, training, True)
    return input._assign_(out) if inplace and out is not input else out


def _channel_dropout(input, p, training, inplace, n, fn):
    _check_p(p)
    if not training or p == 0.0:
        return input
    if input.ndim not in (n + 1, n + 2):
        raise RuntimeError(f"{fn}: Expected {n + 1}D or {n + 2}D input, but got {list(input.shape)}")
    shape = tuple(input.shape[:input.ndim - n]) + (1,) * n
    out = K.mul(input, 0.0) if p == 1.0 else K.mul(input, _dropout_mask(input, shape, p))
    return input._assign_(out) if inplace else out


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _channel_dropout(input, p, training, inplace, 1, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) with probability `p`.

    Other ranks behave as in PyTorch: a warning, then the mask covers the first two dims
    (a 3-D input is (N, C, L); a 2-D input is dropped element by element)."""
    _check_p(p)
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and will "
                      "result in an error in a future release. To retain the behavior and silence this warning, "
                      "please use dropout instead. Note that dropout2d exists to provide channel-wise dropout on "
                      "inputs with 2 spatial dimensions, a channel dimension, and an optional batch dimension "
                      "(i.e. 3D or 4D inputs).", stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                      "switch to using dropout1d instead.", stacklevel=2)
    if input.ndim < 2 and training and p != 0.0:
        raise RuntimeError(f"dropout2d: Feature dropout requires at least 2 dimensions in the input, but got an "
                           f"input of shape {list(input.shape)}")
    return _channel_dropout(input, p, training, inplace, max(input.ndim - 2, 0), "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _channel_dropout(input, p, training, inplace, 3, "dropout3d")


# ======================================================================================
# sparse functions
# ======================================================================================

def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of `weight` picked by the integer tensor `input`; rows at `padding_idx` get no gradient."""
    _check_tensor(input, "input", "embedding")
    if not input.dtype.is_integer:
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.dtype.name} instead (while checking arguments for embedding)")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: 'weight' must be 2-D, got shape {list(weight.shape)}")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise AssertionError(f"Padding_idx must be within num_embeddings, got {padding_idx} for {num} rows")
        padding_idx %= num
    flat = K.reshape(input, (-1,))
    if active_trace() is None and flat.numel():
        arr = flat._concrete("embedding's index check")  # a host copy for a CUDA tensor
        bad = arr[(arr < 0) | (arr >= num)]
        if bad.size:
            raise IndexError(f"index {int(bad[0])} is out of range for embedding with {num} rows (weight "
                             f"{list(weight.shape)})")
    if max_norm is not None:
        with no_grad():
            rows = K.index_select(weight, 0, flat)
            norms = K.pow(K.sum(K.pow(K.abs(rows), norm_type), -1, keepdim=True), 1.0 / norm_type)
            scale = K.where(K.gt(norms, max_norm), K.div(max_norm, K.add(norms, 1e-7)), K.full_const(1.0, (), norms.dtype))
            idx = K._bcast(K.unsqueeze(flat, 1), tuple(rows.shape))
            weight.copy_(K.scatter(weight, 0, idx, K.mul(rows, scale)))
    out = K.index_select(weight, 0, flat)
    if scale_grad_by_freq and weight.requires_grad and flat.numel():
        # divide each row's gradient by its index's count in this batch; the forward value is unchanged
        if active_trace() is None:
            arr = flat._concrete("scale_grad_by_freq")
            inv = _const((1.0 / np.bincount(arr, minlength=num)[arr]).astype(weight.dtype.np_dtype)[:, None])
            if weight.is_cuda:
                inv = inv.to(weight.device)
        else:
            same = K._cast(K.eq(K.unsqueeze(flat, 1), K.unsqueeze(flat, 0)), weight.dtype)
            inv = K.unsqueeze(K.div(1.0, K.sum(same, 1)), 1)
        frozen = out.detach()
        out = K.add(frozen, K.mul(K.sub(out, frozen), inv))
    if padding_idx is not None and weight.requires_grad:
        keep = K.unsqueeze(K.ne(flat, padding_idx), 1)
        out = K.where(keep, out, out.detach())
    return K.reshape(out, tuple(input.shape) + (weight.shape[1],))


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
                  per_sample_weights: Tensor | None = None, include_last_offset: bool = False,
                  padding_idx: int | None = None) -> Tensor:
    """Sum, mean or max of embedding rows per bag: bags are the rows of a 2-D `input`, or `offsets` into a 1-D one."""
    _check_tensor(input, "input", "embedding_bag")
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                                  f"supported for mode='sum' (got mode='{mode}'). Please open a feature request")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch of "
                             "fixed length sequences.")
        nb, per = input.shape
        bags = np.repeat(np.arange(nb), per)
        flat_idx = K.reshape(input, (-1,))
        psw = None if per_sample_weights is None else K.reshape(per_sample_weights, (-1,))
    elif input.ndim == 1:
        if offsets is None or offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor when input is 1D")
        offs = np.asarray(offsets._concrete("embedding_bag offsets"), dtype=np.int64)
        n = input.shape[0]
        if offs.size and (offs[0] != 0 or np.any(np.diff(offs) < 0) or offs[-1] > n):
            raise ValueError(f"embedding_bag: offsets must start at 0, be non-decreasing and stay within the input "
                             f"length {n}, got {offs.tolist()}")
        if include_last_offset:
            offs = offs[:-1]
        nb = offs.size
        bags = np.searchsorted(offs, np.arange(n), side="right") - 1
        flat_idx, psw = input, per_sample_weights
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    rows = embedding(flat_idx, weight, None, max_norm, norm_type)  # (N, D)
    keep = np.ones(bags.shape, dtype=bool)
    if padding_idx is not None:
        keep = np.asarray(flat_idx._concrete("embedding_bag padding_idx"), dtype=np.int64) != (
            padding_idx % weight.shape[0])
    d = weight.shape[1]
    if mode == "max":
        counts = np.bincount(bags[keep], minlength=nb)
        width = int(counts.max()) if counts.size and counts.max() > 0 else 1
        slot = np.zeros((nb, width), dtype=np.int64)  # row index per (bag, position); padded slots -> -inf
        valid = np.zeros((nb, width), dtype=bool)
        fill = np.zeros(nb, dtype=np.int64)
        for i in np.nonzero(keep)[0]:
            b = bags[i]
            slot[b, fill[b]] = i
            valid[b, fill[b]] = True
            fill[b] += 1
        g = K.reshape(K.index_select(rows, 0, _const(slot.reshape(-1))), (nb, width, d))
        g = K.where(_const(valid[:, :, None]), g, K.full_const(-math.inf, (), g.dtype))
        best = K.gather(g, 1, K.unsqueeze(K.argmax(g, 1), 1))
        out = K.squeeze(best, 1)
        empty = _const((counts == 0)[:, None])
        return K.where(empty, K.full_const(0.0, (), out.dtype), out)
    sel = np.zeros((nb, bags.size), dtype=weight.dtype.np_dtype)
    sel[bags[keep], np.nonzero(keep)[0]] = 1.0
    if mode == "mean":
        counts = sel.sum(1, keepdims=True)
        sel = sel / np.maximum(counts, 1)
    a = _const(sel)
    if psw is not None:
        a = K.mul(a, K.unsqueeze(K._cast(psw, a.dtype), 0))
    return K.matmul(a, rows)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding in a new last dim of size num_classes (default: max + 1)."""
    if tensor.dtype.is_integer and num_classes != -1 and active_trace() is None and tensor.numel():
        arr = tensor._concrete("one_hot's class check")
        if arr.min() < 0 or arr.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes." if arr.max() >= num_classes
                               else "Class values must be non-negative.")
    return K.one_hot(tensor, num_classes)


# ======================================================================================
# distance functions
# ======================================================================================

def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    d = K.add(K.sub(x1, x2), eps)
    return K.pow(K.sum(K.pow(K.abs(d), p), -1, keepdim=keepdim), 1.0 / p)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    dot = K.sum(K.mul(x1, x2), dim)
    n1 = K.sqrt(K.sum(K.mul(x1, x1), dim))
    n2 = K.sqrt(K.sum(K.mul(x2, x2), dim))
    return K.div(dot, K.mul(K.clamp_min(n1, eps), K.clamp_min(n2, eps)))


# ======================================================================================
# loss functions
# ======================================================================================

def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """-(t log x + (1 - t) log(1 - x)) on probabilities x, logs clamped at -100 as PyTorch."""
    reduction = _reduction(reduction, size_average, reduce)
    _check_same_size(input, target, "binary_cross_entropy")
    if active_trace() is None and input.numel():
        arr = input._concrete("binary_cross_entropy's input check")
        if np.any((arr < 0) | (arr > 1)):
            raise RuntimeError("all elements of input should be between 0 and 1")
    # The logs are differentiated through PyTorch's formula instead, d/dx = (x - t) / max(x (1 - x), 1e-12),
    # which stays finite where a log's derivative is infinite (x exactly 0 or 1).
    x = input.detach() if input.requires_grad else input
    log_x = K.clamp_min(K.log(x), -100.0)
    log_1mx = K.clamp_min(K.log1p(K.neg(x)), -100.0)
    loss = K.neg(K.add(K.mul(target, log_x), K.mul(K.rsub(target, 1.0), log_1mx)))
    if input.requires_grad:
        with no_grad():
            dx = K.div(K.sub(input, target), K.clamp_min(K.mul(input, K.rsub(input, 1.0)), 1e-12))
        x_dx = K.mul(input, dx)
        loss = K.add(loss, K.sub(x_dx, x_dx.detach()))  # adds 0, and the gradient dx
    if weight is not None:
        loss = K.mul(loss, weight)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """BCE on logits, computed stably: (1 - t) x - w_pos(t) * logsigmoid(x)."""
    reduction = _reduction(reduction, size_average, reduce)
    _check_same_size(input, target, "binary_cross_entropy_with_logits")
    log_sig = K.logsigmoid(input)
    if pos_weight is not None:
        lw = K.add(K.mul(K.sub(pos_weight, 1.0), target), 1.0)
        loss = K.sub(K.mul(K.rsub(target, 1.0), input), K.mul(lw, log_sig))
    else:
        loss = K.sub(K.mul(K.rsub(target, 1.0), input), log_sig)
    if weight is not None:
        loss = K.mul(loss, weight)
    return _reduce(loss, reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False, size_average=None,
                     eps: float = 1e-8, reduce=None, reduction: str = "mean") -> Tensor:
    """Poisson negative log-likelihood (Stirling term added for target > 1 when `full`)."""
    reduction = _reduction(reduction, size_average, reduce)
    if log_input:
        loss = K.sub(K.exp(input), K.mul(target, input))
    else:
        loss = K.sub(input, K.mul(target, K.log(K.add(input, eps))))
    if full:
        safe = K.where(K.gt(target, 1), target, K.full_const(2.0, (), target.dtype))
        stirling = K.add(K.sub(K.mul(safe, K.log(safe)), safe), K.mul(K.log(K.mul(safe, 2 * math.pi)), 0.5))
        loss = K.add(loss, K.where(K.gt(target, 1), stirling, _zero(stirling)))
    return _reduce(loss, reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average=None,
                          reduce=None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    eps = 1e-12
    dot = K.sum(K.mul(input1, input2), -1)
    m1 = K.add(K.sum(K.mul(input1, input1), -1), eps)
    m2 = K.add(K.sum(K.mul(input2, input2), -1), eps)
    cos = K.div(dot, K.sqrt(K.mul(m1, m2)))
    zero = _zero(cos)
    pos = K.where(K.eq(target, 1), K.rsub(cos, 1.0), zero)
    neg = K.where(K.eq(target, -1), K.clamp_min(K.sub(cos, margin), 0.0), zero)
    return _reduce(K.add(pos, neg), reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dim 1 (dim 0 for 1-D input), then NLL against class indices or class probabilities."""
    _check_tensor(input, "input", "cross_entropy")
    _check_tensor(target, "target", "cross_entropy")
    _class_dim_input(input, "cross_entropy")
    reduction = _reduction(reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim]
    logp = K.log_softmax(input, cdim)
    wshape = tuple(c if i == cdim else 1 for i in range(input.ndim))
    if target.dtype.is_floating_point:  # class probabilities
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"cross_entropy: class-probability target must have the input's shape "
                             f"{list(input.shape)}, got {list(target.shape)}")
        t = target
        if label_smoothing > 0:
            t = K.add(K.mul(t, 1.0 - label_smoothing), label_smoothing / c)
        prod_ = K.mul(logp, t)
        if weight is not None:
            prod_ = K.mul(prod_, K.reshape(weight, wshape))
        if reduction == "none":
            return K.neg(K.sum(prod_, cdim))
        if reduction == "sum":
            return K.neg(K.sum(prod_))
        return K.div(K.neg(K.sum(prod_)), float(input.numel() // c))
    nll = _nll(logp, target, weight, ignore_index, reduction, "cross_entropy")
    if label_smoothing <= 0:
        return nll
    target = K._cast(target, dt.int64)
    lw = logp if weight is None else K.mul(logp, K.reshape(weight, wshape))
    smooth = K.neg(K.sum(lw, cdim))
    ignore = K.eq(target, ignore_index)
    smooth = K.where(ignore, _zero(smooth), smooth)
    if reduction == "mean":
        valid = K.logical_not(ignore)
        if weight is None:
            denom = K.sum(K._cast(valid, logp.dtype))
        else:
            safe = K.where(valid, target, K.full_const(0, (), dt.int64))
            tw = K.index_select(weight, 0, K.reshape(safe, (-1,)))
            denom = K.sum(K.where(K.reshape(valid, (-1,)), tw, _zero(tw)))
        smooth = K.div(K.sum(smooth), denom)
    elif reduction == "sum":
        smooth = K.sum(smooth)
    return K.add(K.mul(nll, 1.0 - label_smoothing), K.mul(smooth, label_smoothing / c))


_CTC_NEG = -1e30  # "log 0" kept finite, so logsumexp over unreachable states has a finite (zero) gradient


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths, target_lengths, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist Temporal Classification loss (the forward algorithm in log space, differentiated by autograd).

    log_probs: (T, N, C) log-softmax outputs (or (T, C) unbatched); targets: (N, S) padded or 1-D concatenated.
    'mean' divides each sample's loss by its target length, then averages, as PyTorch.
    """
    reduction = _reduction(reduction)
    unbatched = log_probs.ndim == 2
    lp = K.unsqueeze(log_probs, 1) if unbatched else log_probs
    t_max, n, c = lp.shape
    in_len = _lengths_of(input_lengths, n)
    tg_len = _lengths_of(target_lengths, n)
    tg = np.asarray(targets._concrete("ctc_loss targets") if isinstance(targets, Tensor) else targets,
                    dtype=np.int64)
    if unbatched:
        tg = tg.reshape(1, -1)
    if tg.ndim == 1:  # concatenated
        offs = np.concatenate([[0], np.cumsum(tg_len)])
        rows = [tg[offs[i]:offs[i + 1]] for i in range(n)]
    else:
        rows = [tg[i, :tg_len[i]] for i in range(n)]
    if np.any(in_len > t_max) or np.any(in_len < 1):
        raise RuntimeError(f"ctc_loss: input_lengths must be in [1, {t_max}], got {in_len.tolist()}")
    s_max = int(max(tg_len.max(), 0)) if n else 0
    width = 2 * s_max + 1
    ext = np.full((n, width), blank, dtype=np.int64)
    skip = np.zeros((n, width), dtype=bool)  # the s-2 transition is allowed
    valid = np.zeros((n, width), dtype=bool)
    for i, row in enumerate(rows):
        ext[i, 1:2 * len(row):2] = row
        valid[i, :2 * len(row) + 1] = True
        for sidx in range(3, 2 * len(row), 2):
            skip[i, sidx] = ext[i, sidx] != ext[i, sidx - 2]
    neg = K.full_const(_CTC_NEG, (), lp.dtype)
    ext_t = _const(ext)
    valid_t, skip_t = _const(valid), _const(skip)

    def emit(t):  # log-prob of each extended label at time t: (N, width)
        return K.gather(lp[t], 1, ext_t)

    init = np.full((n, width), False)
    init[:, 0] = True
    init[:, 1] = tg_len > 0
    alpha = K.where(_const(init), emit(0), neg)
    final = alpha
    ends = in_len - 1
    for t in range(1, t_max):
        prev1 = pad(alpha, (1, 0), value=_CTC_NEG)[:, :width]
        prev2 = K.where(skip_t, pad(alpha, (2, 0), value=_CTC_NEG)[:, :width], neg)
        alpha = K.add(K.logsumexp(K.stack([alpha, prev1, prev2], 0), 0), emit(t))
        alpha = K.where(valid_t, alpha, neg)
        if np.any(ends == t):
            final = K.where(_const((ends == t)[:, None]), alpha, final)
    last = np.stack([2 * tg_len, np.maximum(2 * tg_len - 1, 0)], 1)
    ends_lp = K.gather(final, 1, _const(last))
    both = np.stack([np.ones(n, dtype=bool), tg_len > 0], 1)
    loss = K.neg(K.logsumexp(K.where(_const(both), ends_lp, neg), 1))  # (N,)
    impossible = K.gt(loss, -_CTC_NEG / 10)
    fill = 0.0 if zero_infinity else math.inf
    loss = K.where(impossible, K.full_const(fill, (), loss.dtype), loss)
    if reduction == "mean":
        return K.mean(K.div(loss, _const(np.maximum(tg_len, 1).astype(loss.dtype.np_dtype))))
    if reduction == "sum":
        return K.sum(loss)
    return K.squeeze(loss, 0) if unbatched else loss


def _lengths_of(lengths, n: int) -> np.ndarray:
    arr = np.asarray(lengths._concrete("ctc_loss lengths") if isinstance(lengths, Tensor) else lengths,
                     dtype=np.int64).reshape(-1)
    if arr.size != n:
        raise RuntimeError(f"ctc_loss: expected {n} lengths, got {arr.size}")
    return arr


def gaussian_nll_loss(input: Tensor, target: Tensor, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> Tensor:
    """0.5 * (log(max(var, eps)) + (input - target)^2 / max(var, eps)) (+ 0.5 log(2 pi) when `full`)."""
    reduction = _reduction(reduction)
    if not isinstance(var, Tensor):
        var = K.full_const(float(var), tuple(input.shape), input.dtype)
    if var.ndim == input.ndim - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
        var = K.unsqueeze(var, -1)
    v = K.clamp_min(var.detach(), eps)
    v = K.add(var, K.sub(v, var.detach()))  # clamp the value, keep var's gradient (as PyTorch's no_grad clamp_)
    d = K.sub(input, target)
    loss = K.mul(K.add(K.log(v), K.div(K.mul(d, d), v)), 0.5)
    if full:
        loss = K.add(loss, 0.5 * math.log(2 * math.pi))
    return _reduce(loss, reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    zero = _zero(input)
    margin_clamp = K.clamp_min(K.rsub(input, margin), 0.0)
    loss = K.add(K.where(K.ne(target, 1), margin_clamp, zero), K.where(K.ne(target, -1), input, zero))
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """KL(target || exp(input)) pointwise; reduction 'batchmean' divides the sum by the batch size."""
    if reduction == "batchmean":
        red = "batchmean"
    else:
        red = _reduction(reduction, size_average, reduce)
    if log_target:
        loss = K.mul(K.exp(target), K.sub(target, input))
    else:
        safe = K.where(K.gt(target, 0), target, K.full_const(1.0, (), target.dtype))
        loss = K.where(K.gt(target, 0), K.mul(target, K.sub(K.log(safe), input)), _zero(input))
    if red == "batchmean":
        return K.div(K.sum(loss), float(input.shape[0]) if input.ndim else 1.0)
    return _reduce(loss, red)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    """Absolute error |input - target|, reduced."""
    reduction = _reduction(reduction, size_average, reduce)
    _warn_broadcast(input, target, "l1_loss")
    loss = K.abs(K.sub(input, target))
    if weight is not None:
        loss = K.mul(loss, weight)
    return _reduce(loss, reduction)


def _check_same_size(input: Tensor, target: Tensor, fn: str) -> None:
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{fn}: Using a target size ({list(target.shape)}) that is different to the input size "
                         f"({list(input.shape)}) is not supported. Please ensure they have the same size.")


def _warn_broadcast(input: Tensor, target: Tensor, fn: str) -> None:
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"{fn}: Using a target size ({list(target.shape)}) that is different to the input size "
                      f"({list(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
    """Squared error, (input - target)^2, reduced."""
    reduction = _reduction(reduction, size_average, reduce)
    _warn_broadcast(input, target, "mse_loss")
    d = K.sub(input, target)
    loss = K.mul(d, d)
    if weight is not None:
        loss = K.mul(loss, weight)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average=None,
                        reduce=None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    loss = K.clamp_min(K.add(K.mul(K.neg(target), K.sub(input1, input2)), margin), 0.0)
    return _reduce(loss, reduction)


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                           reduction: str = "mean") -> Tensor:
    """sum over target classes j and non-target classes i of max(0, 1 - (x[j] - x[i])) / C; targets end at -1."""
    reduction = _reduction(reduction, size_average, reduce)
    x = input if input.ndim == 2 else K.unsqueeze(input, 0)
    t = np.asarray((target if target.ndim == 2 else K.unsqueeze(target, 0))._concrete("multilabel_margin_loss"))
    n, c = x.shape
    is_target = np.zeros((n, c), dtype=bool)
    for b in range(n):
        for v in t[b]:
            if v < 0:
                break
            is_target[b, v] = True
    # pair (j target, i non-target): hinge of 1 - x_j + x_i
    diff = K.add(K.sub(K.unsqueeze(x, 1), K.unsqueeze(x, 2)), 1.0)  # [b, j, i] = 1 - x_j + x_i
    pair = _const(is_target[:, :, None] & ~is_target[:, None, :])
    loss = K.div(K.sum(K.where(pair, K.clamp_min(diff, 0.0), _zero(diff)), (1, 2)), float(c))
    if input.ndim == 1:
        loss = K.squeeze(loss, 0)
    return _reduce(loss, reduction)


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                                reduce=None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    loss = K.neg(K.add(K.mul(target, K.logsigmoid(input)), K.mul(K.rsub(target, 1.0), K.logsigmoid(K.neg(input)))))
    if weight is not None:
        loss = K.mul(loss, weight)
    loss = K.mean(loss, -1)
    return _reduce(loss, reduction)


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0, weight: Tensor | None = None,
                      size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Multi-class hinge loss: sum_{j != y} max(0, margin - x_y + x_j)^p / C."""
    reduction = _reduction(reduction, size_average, reduce)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    x = input if input.ndim == 2 else K.unsqueeze(input, 0)
    t = K.reshape(K._cast(target, dt.int64), (-1, 1))
    c = x.shape[1]
    xy = K.gather(x, 1, t)
    h = K.clamp_min(K.add(K.sub(x, xy), margin), 0.0)
    if p == 2:
        h = K.mul(h, h)
    if weight is not None:
        h = K.mul(h, K.index_select(weight, 0, K.reshape(t, (-1,))).unsqueeze(1))
    not_y = K.ne(K.unsqueeze(arange(c), 0), t)
    loss = K.div(K.sum(K.where(not_y, h, _zero(h)), 1), float(c))
    if input.ndim == 1:
        loss = K.squeeze(loss, 0)
    return _reduce(loss, reduction)


def _class_dim_input(input: Tensor, fn: str) -> Tensor:
    if input.ndim == 0:
        raise ValueError(f"{fn}: input must have at least 1 dimension (C) or 2 (N, C), got a 0-d tensor")
    return input


def _check_targets(target: Tensor, n_classes: int, ignore_index: int, fn: str) -> None:
    if active_trace() is not None or target.numel() == 0:
        return
    arr = np.asarray(target._concrete("the target check"))
    bad = arr[((arr < 0) | (arr >= n_classes)) & (arr != ignore_index)]
    if bad.size:
        raise IndexError(f"{fn}: Target {int(bad.flat[0])} is out of bounds (input has {n_classes} classes)")


def _nll(logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str,
         fn: str = "nll_loss") -> Tensor:
    """Negative log-likelihood of class-index targets; logp is (N, C, *d) or (C,)."""
    if not target.dtype.is_integer:
        raise RuntimeError(f"{fn}: expected target of an integer dtype (class indices), got {target.dtype.name}")
    unbatched = logp.ndim == 1
    if unbatched:
        if target.ndim != 0:
            raise ValueError(f"{fn}: for 1-D input {list(logp.shape)} (one sample), target must be 0-D, got "
                             f"{list(target.shape)}")
        logp, target = K.unsqueeze(logp, 0), K.unsqueeze(target, 0)
    c = logp.shape[1]
    expected = (logp.shape[0],) + tuple(logp.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{fn}: Expected target size {list(expected)} for input of size {list(logp.shape)}, got "
                         f"{list(target.shape)}")
    if weight is not None and tuple(weight.shape) != (c,):
        raise RuntimeError(f"{fn}: weight tensor should be defined either for all {c} classes or no classes but "
                           f"got weight tensor of shape: {list(weight.shape)}")
    _check_targets(target, c, ignore_index, fn)
    target = K._cast(target, dt.int64)
    valid = K.ne(target, ignore_index)
    safe = K.where(valid, target, K.full_const(0, (), dt.int64))
    picked = K.squeeze(K.gather(logp, 1, K.unsqueeze(safe, 1)), 1)
    if weight is None:
        w = K._cast(valid, logp.dtype)
    else:
        w = K.reshape(K.index_select(K._cast(weight, logp.dtype), 0, K.reshape(safe, (-1,))), tuple(safe.shape))
        w = K.where(valid, w, _zero(w))
    loss = K.neg(K.mul(picked, w))
    if reduction == "none":
        return K.squeeze(loss, 0) if unbatched else loss
    if reduction == "sum":
        return K.sum(loss)
    return K.div(K.sum(loss), K.sum(w))


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C, *d) at class indices (N, *d)."""
    _class_dim_input(input, "nll_loss")
    return _nll(input, target, weight, ignore_index, _reduction(reduction, size_average, reduce))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    reduction = _reduction(reduction)
    d = K.abs(K.sub(input, target))
    loss = K.where(K.lt(d, delta), K.mul(K.mul(d, d), 0.5), K.mul(K.sub(d, 0.5 * delta), delta))
    if weight is not None:
        loss = K.mul(loss, weight)
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    d = K.abs(K.sub(input, target))
    if beta == 0:
        return _reduce(d, reduction)
    loss = K.where(K.lt(d, beta), K.div(K.mul(K.mul(d, d), 0.5), beta), K.sub(d, 0.5 * beta))
    return _reduce(loss, reduction)


def soft_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                     reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    return _reduce(K.softplus(K.neg(K.mul(target, input))), reduction)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction, size_average, reduce)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = K.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(K.clamp_min(K.add(K.sub(d_pos, d_neg), margin), 0.0), reduction)


def triplet_margin_with_distance_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *, distance_function=None,
                                      margin: float = 1.0, swap: bool = False, reduction: str = "mean") -> Tensor:
    reduction = _reduction(reduction)
    dist = distance_function if distance_function is not None else pairwise_distance
    d_pos, d_neg = dist(anchor, positive), dist(anchor, negative)
    if swap:
        d_neg = K.minimum(d_neg, dist(positive, negative))
    return _reduce(K.clamp_min(K.add(K.sub(d_pos, d_neg), margin), 0.0), reduction)


# ======================================================================================
# vision functions
# ======================================================================================

def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C*r^2, H, W) -> (*, C, H*r, W*r)."""
    r = upscale_factor
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    x = K.reshape(input, (-1, c // (r * r), r, r, h, w))
    x = K.permute(x, (0, 1, 4, 2, 5, 3))
    return K.reshape(x, tuple(lead) + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H*r, W*r) -> (*, C*r^2, H, W)."""
    r = downscale_factor
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by downscale_factor, but got "
                           f"{h}x{w} and {r}")
    x = K.reshape(input, (-1, c, h // r, r, w // r, r))
    x = K.permute(x, (0, 1, 3, 5, 2, 4))
    return K.reshape(x, tuple(lead) + (c * r * r, h // r, w // r))


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    n, c = input.shape[0], input.shape[1]
    if c % groups:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {c} channels and {groups} groups.")
    rest = tuple(input.shape[2:])
    x = K.reshape(input, (n, groups, c // groups) + rest)
    return K.reshape(K.transpose(x, 1, 2), (n, c) + rest)


def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    i = np.arange(-lo, n + hi)
    if mode == "reflect":
        if lo >= n or hi >= n:
            raise RuntimeError(f"pad: Padding size should be less than the corresponding input dimension, but got: "
                               f"padding ({lo}, {hi}) at dimension of size {n}")
        period = 2 * (n - 1) if n > 1 else 1
        i = np.abs(np.mod(i, period)) if n > 1 else np.zeros_like(i)
        i = np.where(i >= n, period - i, i)
    elif mode == "replicate":
        i = np.clip(i, 0, n - 1)
    elif mode == "circular":
        if lo > n or hi > n:
            raise RuntimeError(f"pad: Padding value causes wrapping around more than once (padding ({lo}, {hi}) "
                               f"for dimension of size {n})")
        i = np.mod(i, n)
    return i.astype(np.int64)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last len(pad)//2 dims; pad = (left_last, right_last, left_2nd_last, ...). Negative crops."""
    _check_tensor(input, "input", "pad")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError(f"pad: Padding length must be divisible by 2, got {len(pad)}")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(f"pad: Padding length should be less than or equal to two times the input dimension but "
                           f"got padding length {len(pad)} and input of dimension {input.ndim}")
    nd = input.ndim
    lo = [0] * nd
    hi = [0] * nd
    for k in range(len(pad) // 2):
        d = nd - 1 - k
        lo[d], hi[d] = pad[2 * k], pad[2 * k + 1]
    if mode == "constant":
        x = input
        if any(v < 0 for v in lo + hi):  # crop first
            starts = tuple(builtins.max(-v, 0) for v in lo)
            stops = tuple(s - builtins.max(-v, 0) for s, v in zip(x.shape, hi))
            x = apply("slice", x, starts=starts, stops=stops, steps=(1,) * nd)
        plo = tuple(builtins.max(v, 0) for v in lo)
        phi = tuple(builtins.max(v, 0) for v in hi)
        if not any(plo) and not any(phi):
            return x if x is not input else K.clone(input)
        v = 0.0 if value is None else value
        if not x.dtype.is_floating_point:
            v = int(v) if not x.dtype.is_bool else bool(v)
        return apply("pad", x, lo=plo, hi=phi, interior=(0,) * nd, value=v)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported; use 'constant', 'reflect', 'replicate' "
                                  "or 'circular'")
    if value:
        raise ValueError(f"Padding mode \"{mode}\" doesn't take in value argument.")
    x = input
    for d in range(nd):
        if lo[d] or hi[d]:
            if lo[d] < 0 or hi[d] < 0:
                raise RuntimeError(f"pad: negative padding is only supported in constant mode, got {pad}")
            x = K.index_select(x, d, _const(_pad_index(x.shape[d], lo[d], hi[d], mode)))
    return x


def _interp_matrix(n_in: int, n_out: int, scale: float | None, align_corners: bool, mode: str,
                   dtype) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation, or of nearest / nearest-exact selection."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("nearest", "nearest-exact"):
        r = (1.0 / scale) if scale else n_in / n_out
        src = np.floor((i + 0.5) * r) if mode == "nearest-exact" else np.floor(i * r)
        src = np.minimum(src.astype(np.int64), n_in - 1)
        a[np.arange(n_out), src] = 1.0
        return a.astype(dtype)
    if align_corners:
        src = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        r = (1.0 / scale) if scale else n_in / n_out
        src = np.maximum((i + 0.5) * r - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    np.add.at(a, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(a, (np.arange(n_out), i1), w1)
    return a.astype(dtype)


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize the spatial dims of (N, C, *S): nearest, nearest-exact, linear, bilinear, trilinear."""
    _check_tensor(input, "input", "interpolate")
    n = input.ndim - 2
    if n < 1:
        raise ValueError(f"interpolate: expected input of shape (N, C, *spatial), got {list(input.shape)}")
    modes = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "trilinear": 3}
    if mode not in modes:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported; use one of {sorted(modes)}")
    if modes[mode] is not None and modes[mode] != n:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {modes[mode] + 2}D input")
    if align_corners is not None and modes[mode] is None:
        raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                         "bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by kiln")
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    spatial = tuple(input.shape[2:])
    if size is not None:
        out = _ntuple(size, n, "size")
        scales = (None,) * n
    else:
        sf = tuple(float(v) for v in scale_factor) if isinstance(scale_factor, (list, tuple)) \
            else (float(scale_factor),) * n
        if len(sf) != n:
            raise ValueError(f"interpolate: scale_factor needs {n} entries, got {sf}")
        out = tuple(int(math.floor(s * f)) for s, f in zip(spatial, sf))
        scales = (None,) * n if recompute_scale_factor else sf
    if min(spatial + out) < 1:
        raise RuntimeError(f"interpolate: input and output sizes should be greater than 0, got input {spatial} and "
                           f"output {out}")
    x = input
    for d in range(n):
        # PyTorch's kernels copy a dim whose size does not change, whatever the scale factor, except the
        # 1-d nearest and the nearest-exact kernels, which still apply the scale (matched here, as measured)
        if out[d] == spatial[d] and (scales[d] in (None, 1.0) or modes[mode] is not None
                                     or (mode == "nearest" and n > 1)):
            continue
        a = _interp_matrix(spatial[d], out[d], scales[d], bool(align_corners), mode, x.dtype.np_dtype)
        ax = 2 + d
        xm = K.movedim(x, ax, -1)
        lead = tuple(xm.shape[:-1])
        y = K.matmul(K.reshape(xm, (-1, spatial[d])), _const(np.ascontiguousarray(a.T)))
        x = K.movedim(K.reshape(y, lead + (out[d],)), -1, ax)
    return x if x is not input else K.clone(input)


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode, align_corners)


def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    if align_corners:
        return K.mul(K.add(coord, 1.0), (size - 1) / 2.0)
    return K.div(K.sub(K.mul(K.add(coord, 1.0), float(size)), 1.0), 2.0)


def _reflect(x: Tensor, lo: float, hi: float) -> Tensor:
    """Reflect coordinates into [lo, hi] (PyTorch's reflect_coordinates)."""
    span = hi - lo
    if span <= 0:
        return K.mul(x, 0.0)
    d = K.abs(K.sub(x, lo))
    flips = K.floor(K.div(d, span))
    extra = K.sub(d, K.mul(flips, span))
    even = K.eq(K.remainder(flips, 2.0), 0.0)
    return K.where(even, K.add(extra, lo), K.sub(hi, extra))


def grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: bool | None = None) -> Tensor:
    """Sample (N, C, H, W) at the normalised (x, y) locations of grid (N, Ho, Wo, 2); bilinear or nearest."""
    if mode not in ("bilinear", "nearest"):
        raise NotImplementedError(f"grid_sample: mode {mode!r} is not supported; use 'bilinear' or 'nearest'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
                         f"'reflection', but got: '{padding_mode}'")
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"grid_sample: expected input (N, C, H, W) and grid (N, H_out, W_out, 2) with the same N, "
                           f"got {list(input.shape)} and {list(grid.shape)}")
    align_corners = bool(align_corners)
    n, c, h, w = input.shape
    ho, wo = grid.shape[1], grid.shape[2]
    gx = _unnormalize(grid[..., 0], w, align_corners)
    gy = _unnormalize(grid[..., 1], h, align_corners)
    if padding_mode == "border":
        gx, gy = K.clamp(gx, 0.0, float(w - 1)), K.clamp(gy, 0.0, float(h - 1))
    elif padding_mode == "reflection":
        if align_corners:
            gx, gy = _reflect(gx, 0.0, float(w - 1)), _reflect(gy, 0.0, float(h - 1))
        else:
            gx, gy = _reflect(gx, -0.5, w - 0.5), _reflect(gy, -0.5, h - 0.5)
        gx, gy = K.clamp(gx, 0.0, float(w - 1)), K.clamp(gy, 0.0, float(h - 1))
    flat = K.reshape(input, (n, c, h * w))

    def tap(ix: Tensor, iy: Tensor) -> Tensor:
        """input at integer (float-valued) positions, zero outside; (N, C, Ho, Wo)."""
        inside = K.logical_and(K.logical_and(K.ge(ix, 0.0), K.le(ix, float(w - 1))),
                               K.logical_and(K.ge(iy, 0.0), K.le(iy, float(h - 1))))
        cx = K._cast(K.clamp(ix, 0.0, float(w - 1)), dt.int64)
        cy = K._cast(K.clamp(iy, 0.0, float(h - 1)), dt.int64)
        idx = K.reshape(K.add(K.mul(cy, w), cx), (n, 1, ho * wo))
        vals = K.reshape(K.gather(flat, 2, K._bcast(idx, (n, c, ho * wo))), (n, c, ho, wo))
        return K.where(K.unsqueeze(inside, 1), vals, _zero(vals))

    if mode == "nearest":
        return tap(K.round(gx), K.round(gy))
    x0, y0 = K.floor(gx), K.floor(gy)
    x1, y1 = K.add(x0, 1.0), K.add(y0, 1.0)
    wx1, wy1 = K.sub(gx, x0), K.sub(gy, y0)
    wx0, wy0 = K.rsub(wx1, 1.0), K.rsub(wy1, 1.0)
    out = None
    for ix, iy, wgt in ((x0, y0, K.mul(wx0, wy0)), (x1, y0, K.mul(wx1, wy0)), (x0, y1, K.mul(wx0, wy1)),
                        (x1, y1, K.mul(wx1, wy1))):
        term = K.mul(tap(ix, iy), K.unsqueeze(wgt, 1))
        out = term if out is None else K.add(out, term)
    return out


def _base_coords(n: int, align_corners: bool) -> np.ndarray:
    if n == 1:
        return np.zeros(1)
    lin = np.linspace(-1.0, 1.0, n)
    return lin if align_corners else lin * (n - 1) / n


def affine_grid(theta: Tensor, size, align_corners: bool | None = None) -> Tensor:
    """Sampling grid (N, H, W, 2) of normalised (x, y) coordinates for a batch of 2x3 affine matrices."""
    align_corners = bool(align_corners)
    if len(size) != 4:
        raise NotImplementedError(f"affine_grid only supports 4D sizes (N, C, H, W), got {tuple(size)}")
    n, _, h, w = (int(v) for v in size)
    if tuple(theta.shape) != (n, 2, 3):
        raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size {tuple(size)}. Got "
                         f"{list(theta.shape)}.")
    xs, ys = _base_coords(w, align_corners), _base_coords(h, align_corners)
    base = np.stack([np.broadcast_to(xs[None, :], (h, w)), np.broadcast_to(ys[:, None], (h, w)), np.ones((h, w))],
                    -1).reshape(1, h * w, 3).astype(theta.dtype.np_dtype)
    grid = K.matmul(K._bcast(_const(base), (n, h * w, 3)), K.transpose(theta, 1, 2))  # (N, H*W, 2)
    return K.reshape(grid, (n, h, w, 2))
