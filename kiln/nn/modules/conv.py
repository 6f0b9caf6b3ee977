"""`Conv1d`, `Conv2d`, `Conv3d` on the `conv` primitive."""
from __future__ import annotations

import math

from ...frontend.creation import empty
from .. import functional as F
from .. import init
from ..parameter import Parameter
from .module import Module


class _ConvNd(Module):
    _n = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        n = self._n
        name = type(self).__name__
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if arg == "groups" else 0):
                raise ValueError(f"{name}: {arg} must be a {'positive' if arg == 'groups' else 'non-negative'} "
                                 f"int, got {v!r}")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        ks = F._ntuple(kernel_size, n, "kernel_size")
        if any(k < 1 for k in ks):
            raise ValueError(f"{name}: kernel_size must be positive, got kernel_size={kernel_size}")
        st = F._ntuple(stride, n, "stride")
        dl = F._ntuple(dilation, n, "dilation")
        if any(s < 1 for s in st):
            raise ValueError(f"{name}: stride must be positive, got stride={stride}")
        if any(d < 1 for d in dl):
            raise ValueError(f"{name}: dilation must be positive, got dilation={dilation}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and any(s != 1 for s in st):
                raise ValueError("padding='same' is not supported for strided convolutions")
            pd = padding
        else:
            pd = F._ntuple(padding, n, "padding")
            if any(p < 0 for p in pd):
                raise ValueError(f"{name}: padding must be non-negative, got padding={padding}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be one of ['zeros', 'reflect', 'replicate', 'circular'], but got "
                             f"padding_mode='{padding_mode}'")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = ks, st, pd, dl
        self.groups, self.padding_mode = groups, padding_mode
        self.transposed, self.output_padding = False, (0,) * n
        lohi = F._conv_padding(pd, n, ks, dl, st, name)
        # F.pad's order: last spatial dim first
        self._reversed_padding_repeated_twice = tuple(v for lo, hi in reversed(lohi) for v in (lo, hi))
        self.weight = Parameter(empty((out_channels, in_channels // groups) + ks, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty((out_channels,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _conv_forward(self, input, weight, bias):
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self._n]
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return fn(x, weight, bias, self.stride, 0, self.dilation, self.groups)
        return fn(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input):
        n = self._n
        if input.ndim not in (n + 1, n + 2):
            raise RuntimeError(f"{type(self).__name__}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, "
                               f"got input of shape {list(input.shape)}")
        c = input.shape[0 if input.ndim == n + 1 else 1]
        if c != self.in_channels:
            raise RuntimeError(f"{type(self).__name__}(in_channels={self.in_channels}): expected input"
                               f"{list(input.shape)} to have {self.in_channels} channels, but got {c} channels "
                               "instead")
        return self._conv_forward(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L)."""
    _n = 1


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W); stride, padding (int, tuple, 'same', 'valid'), dilation, groups."""
    _n = 2


class Conv3d(_ConvNd):
    """3-D convolution over (N, C_in, D, H, W)."""
    _n = 3


class _ConvTransposeNd(_ConvNd):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None,
                 dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: string padding is not supported for transposed convolutions")
        # the weight is (in_channels, out_channels // groups, *kernel): build it as _ConvNd with swapped channels
        super().__init__(out_channels, in_channels, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode, device, dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.transposed = True
        self.output_padding = F._ntuple(output_padding, self._n, "output_padding")
        if bias:
            from ...frontend.creation import empty
            self.bias = Parameter(empty((out_channels,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        n = self._n
        output_size = tuple(output_size)[-n:]
        if len(output_size) != n:
            raise ValueError(f"output_size must have {n} or {n + 2} elements (got {len(output_size)})")
        res = []
        for d in range(n):
            size = input.shape[input.ndim - n + d]
            min_size = (size - 1) * self.stride[d] - 2 * self.padding[d] + self.dilation[d] * (self.kernel_size[d] - 1) + 1
            max_size = min_size + self.stride[d] - 1
            if not min_size <= output_size[d] <= max_size:
                raise ValueError(f"requested an output size of {output_size}, but valid sizes range from {min_size} "
                                 f"to {max_size} (for an input of {list(input.shape[2:])})")
            res.append(output_size[d] - min_size)
        return tuple(res)

    def forward(self, input, output_size=None):
        n = self._n
        if input.ndim not in (n + 1, n + 2):
            raise RuntimeError(f"{type(self).__name__}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, "
                               f"got input of shape {list(input.shape)}")
        c = input.shape[0 if input.ndim == n + 1 else 1]
        if c != self.in_channels:
            raise RuntimeError(f"{type(self).__name__}(in_channels={self.in_channels}): expected input"
                               f"{list(input.shape)} to have {self.in_channels} channels, but got {c} channels "
                               "instead")
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
        return fn(input, self.weight, self.bias, self.stride, self.padding, self._output_padding(input, output_size),
                  self.groups, self.dilation)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.output_padding != (0,) * self._n:
            s += f", output_padding={self.output_padding}"
        return s


class ConvTranspose1d(_ConvTransposeNd):
    _n = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution ("deconvolution"); weight (in_channels, out_channels/groups, kH, kW)."""
    _n = 2


class ConvTranspose3d(_ConvTransposeNd):
    _n = 3
