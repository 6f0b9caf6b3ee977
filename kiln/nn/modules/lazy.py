"""Lazy modules (`LazyConv*`, `LazyConvTranspose*`, `LazyBatchNorm*`, `LazyInstanceNorm*`) and `DataParallel`.

A lazy module infers its input channels from the first input, materialises its parameters
with the regular initialisation and then becomes the regular class, as PyTorch's do. Run one
forward pass before creating an optimizer or loading a state dict.
"""
from __future__ import annotations

import numpy as np

from ...frontend.tensor import _Cell
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d


def _resize(t, shape) -> None:
    t._cell = _Cell(np.zeros(shape, dtype=t.dtype.np_dtype))
    t._vc = [0]


class _LazyConv:
    _target = None

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        self._target.__init__(self, groups, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                              padding_mode, device, dtype)
        self.in_channels = 0

    def reset_parameters(self) -> None:
        if self.in_channels:
            self._target.reset_parameters(self)

    def forward(self, input):
        target = type(self)._target
        if self.in_channels == 0:
            c = input.shape[0 if input.ndim == self._n + 1 else 1]
            self.in_channels = int(c)
            _resize(self.weight, (self.out_channels, c // self.groups) + tuple(self.kernel_size))
            target.reset_parameters(self)
            self.__class__ = target
        return target.forward(self, input)


class LazyConv1d(_LazyConv, Conv1d):
    _target = Conv1d


class LazyConv2d(_LazyConv, Conv2d):
    """A Conv2d whose in_channels is taken from the first input."""
    _target = Conv2d


class LazyConv3d(_LazyConv, Conv3d):
    _target = Conv3d


class _LazyConvTranspose:
    _target = None

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0, groups: int = 1,
                 bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None, dtype=None):
        self._target.__init__(self, groups, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                              dilation, padding_mode, device, dtype)
        self.in_channels = 0

    def reset_parameters(self) -> None:
        if self.in_channels:
            self._target.reset_parameters(self)

    def forward(self, input, output_size=None):
        target = type(self)._target
        if self.in_channels == 0:
            c = input.shape[0 if input.ndim == self._n + 1 else 1]
            self.in_channels = int(c)
            _resize(self.weight, (c, self.out_channels // self.groups) + tuple(self.kernel_size))
            target.reset_parameters(self)
            self.__class__ = target
        return target.forward(self, input, output_size)


class LazyConvTranspose1d(_LazyConvTranspose, ConvTranspose1d):
    _target = ConvTranspose1d


class LazyConvTranspose2d(_LazyConvTranspose, ConvTranspose2d):
    _target = ConvTranspose2d


class LazyConvTranspose3d(_LazyConvTranspose, ConvTranspose3d):
    _target = ConvTranspose3d


class _LazyNorm:
    _target = None

    def __init__(self, eps: float = 1e-5, momentum=0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        self._target.__init__(self, 1, eps, momentum, affine, track_running_stats, device=device, dtype=dtype,
                              bias=bias)
        self.num_features = 0

    def reset_parameters(self) -> None:
        if self.num_features:
            self._target.reset_parameters(self)

    def forward(self, input):
        target = type(self)._target
        if self.num_features == 0:
            unbatched = getattr(target, "_n", 0) and input.ndim == target._n + 1  # instance norm on (C, *S)
            c = int(input.shape[0] if unbatched or input.ndim == 1 else input.shape[1])
            self.num_features = c
            for t in (self.weight, self.bias, self.running_mean, self.running_var):
                if t is not None:
                    _resize(t, (c,))
            self.__class__ = target
            self.reset_parameters()  # weight 1, bias 0, running_mean 0, running_var 1 (as the target class)
        return target.forward(self, input)


class LazyBatchNorm1d(_LazyNorm, BatchNorm1d):
    _target = BatchNorm1d


class LazyBatchNorm2d(_LazyNorm, BatchNorm2d):
    """A BatchNorm2d whose num_features is taken from the first input."""
    _target = BatchNorm2d


class LazyBatchNorm3d(_LazyNorm, BatchNorm3d):
    _target = BatchNorm3d


class LazyInstanceNorm1d(_LazyNorm, InstanceNorm1d):
    """As PyTorch's lazy instance norms, affine and running statistics default to True (unlike InstanceNorm)."""
    _target = InstanceNorm1d


class LazyInstanceNorm2d(_LazyNorm, InstanceNorm2d):
    _target = InstanceNorm2d


class LazyInstanceNorm3d(_LazyNorm, InstanceNorm3d):
    _target = InstanceNorm3d


class DataParallel(Module):
    """Runs the wrapped module (kiln has one CPU device, so there is nothing to replicate).

    Kept so PyTorch programs run unchanged; state dict keys carry the `module.` prefix as in PyTorch.
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0):
        super().__init__()
        self.module = module
        self.device_ids, self.output_device, self.dim = device_ids or [], output_device, dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)
