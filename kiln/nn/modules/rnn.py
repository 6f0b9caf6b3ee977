"""`RNN`, `LSTM`, `GRU` (multi-layer, bidirectional, batch_first) and their single-step cells.

Parameter names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n) and initialisation
U(-1/sqrt(hidden), 1/sqrt(hidden)) follow PyTorch, so state dicts load either way.
The recurrence is unrolled eagerly (one small matmul per step and direction).
"""
from __future__ import annotations

import math

from ...frontend import ops as K
from ...frontend.creation import empty, zeros
from ...frontend.tensor import Tensor
from .. import functional as F
from .. import init
from ..parameter import Parameter
from ..utils.rnn import PackedSequence, pad_packed_sequence
from .module import Module

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _gates(x, h, w_ih, w_hh, b_ih, b_hh):
    return K.add(F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh))


def _rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, relu: bool):
    pre = _gates(x, h, w_ih, w_hh, b_ih, b_hh)
    return F.relu(pre) if relu else K.tanh(pre)


def _lstm_update(gates, c):
    i, f, g, o = K.chunk(gates, 4, -1)
    i, f, g, o = K.sigmoid(i), K.sigmoid(f), K.tanh(g), K.sigmoid(o)
    c = K.add(K.mul(f, c), K.mul(i, g))
    return K.mul(o, K.tanh(c)), c


def _lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return _lstm_update(_gates(x, h, w_ih, w_hh, b_ih, b_hh), c)


def _gru_update(gi, gh, h):
    i_r, i_z, i_n = K.chunk(gi, 3, -1)
    h_r, h_z, h_n = K.chunk(gh, 3, -1)
    r = K.sigmoid(K.add(i_r, h_r))
    z = K.sigmoid(K.add(i_z, h_z))
    n = K.tanh(K.add(i_n, K.mul(r, h_n)))
    return K.add(n, K.mul(z, K.sub(h, n)))


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return _gru_update(F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh), h)


class _Step:
    """One direction of one layer, with the weights transposed (and LSTM/RNN biases summed) once per call."""

    def __init__(self, mode, w_ih, w_hh, b_ih, b_hh, w_hr, batch):
        self.mode = mode
        self.w_ih_t, self.w_hh_t = K.t(w_ih), K.t(w_hh)
        self.w_hr_t = None if w_hr is None else K.t(w_hr)
        gate = w_ih.shape[0]
        if mode == "GRU":  # the hidden bias sits inside r * (W_hn h + b_hn): keep the two biases apart
            self.b_ih = None if b_ih is None else K.expand(b_ih, (batch, gate))
            self.b_hh = None if b_hh is None else K.expand(b_hh, (batch, gate))
        else:
            b = None if b_ih is None else K.add(b_ih, b_hh)
            self.b = None if b is None else K.expand(b, (batch, gate))

    def __call__(self, x, h, c):
        xi = K.matmul(x, self.w_ih_t)
        hh = K.matmul(h, self.w_hh_t)
        if self.mode == "GRU":
            if self.b_ih is not None:
                xi, hh = K.add(xi, self.b_ih), K.add(hh, self.b_hh)
            return _gru_update(xi, hh, h), None
        pre = K.add(xi, hh)
        if self.b is not None:
            pre = K.add(pre, self.b)
        if self.mode == "LSTM":
            h, c = _lstm_update(pre, c)
            return (h if self.w_hr_t is None else K.matmul(h, self.w_hr_t)), c
        return (F.relu(pre) if self.mode == "RNN_RELU" else K.tanh(pre)), None


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive int, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"{name}: input_size must be a positive int, got {input_size!r}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        ndir = 2 if bidirectional else 1
        gate = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(ndir):
                in_sz = input_size if layer == 0 else real_hidden * ndir
                suffix = "_reverse" if d == 1 else ""
                names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
                shapes = [(gate, in_sz), (gate, real_hidden)]
                if bias:
                    names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
                    shapes += [(gate,), (gate,)]
                if proj_size > 0:
                    names.append(f"weight_hr_l{layer}{suffix}")
                    shapes.append((proj_size, hidden_size))
                for n, s in zip(names, shapes):
                    setattr(self, n, Parameter(empty(s, dtype=dtype)))
                self._flat_weights_names.extend(names)
        self.reset_parameters()

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        per = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    def flatten_parameters(self) -> None:
        """No-op (kept for PyTorch compatibility)."""

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def _layer_params(self, layer: int, d: int):
        suffix = "_reverse" if d == 1 else ""
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        b_ih = getattr(self, f"bias_ih_l{layer}{suffix}") if self.bias else None
        b_hh = getattr(self, f"bias_hh_l{layer}{suffix}") if self.bias else None
        w_hr = getattr(self, f"weight_hr_l{layer}{suffix}") if self.proj_size else None
        return w_ih, w_hh, b_ih, b_hh, w_hr

    def _check_input(self, input: Tensor) -> bool:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor or a PackedSequence, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D input instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{input.shape[-1]}")
        return input.ndim == 3

    def _check_hidden(self, h: Tensor, expected: tuple, what: str) -> None:
        if tuple(h.shape) != expected:
            raise RuntimeError(f"Expected {what} size {expected}, got {list(h.shape)}")

    def _run(self, input, hx):
        """Returns (output (T, B, D*H) or batch-first or packed, h_n, c_n (LSTM) or None)."""
        packed = isinstance(input, PackedSequence)
        masks = None
        if packed:
            x, lengths = pad_packed_sequence(input._replace(unsorted_indices=None))  # (T, B, I), sorted order
            if x.shape[-1] != self.input_size:
                raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                                   f"{x.shape[-1]}")
            lens = lengths.numpy()
            masks = [Tensor._make((t < lens).reshape(-1, 1)) for t in range(x.shape[0])]
            if hx is not None and input.sorted_indices is not None:  # hx comes in the caller's batch order
                order = input.sorted_indices
                hx = tuple(K.index_select(h, 1, order) for h in hx) if isinstance(hx, (tuple, list)) else \
                    K.index_select(hx, 1, order)
            batched = True
        else:
            batched = self._check_input(input)
            if batched:
                x = K.transpose(input, 0, 1) if self.batch_first else input  # (T, B, I)
            else:
                x = K.unsqueeze(input, 1)  # unbatched (T, I) -> (T, 1, I); batch_first does not apply
        T, B = x.shape[0], x.shape[1]
        ndir = 2 if self.bidirectional else 1
        H = self.hidden_size
        Hp = self.proj_size or H
        is_lstm = self.mode == "LSTM"
        expected = (self.num_layers * ndir, B, Hp)
        expected_c = (self.num_layers * ndir, B, H)
        if hx is None:
            h0 = zeros(expected, dtype=x.dtype)
            c0 = zeros(expected_c, dtype=x.dtype) if is_lstm else None
        else:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
                h0, c0 = hx
            else:
                h0, c0 = hx, None
            if not batched:
                self._check_hidden(h0, (self.num_layers * ndir, Hp), "hidden")
                h0 = K.unsqueeze(h0, 1)
                if is_lstm:
                    self._check_hidden(c0, (self.num_layers * ndir, H), "cell")
                    c0 = K.unsqueeze(c0, 1)
            self._check_hidden(h0, expected, "hidden")
            if is_lstm:
                self._check_hidden(c0, expected_c, "cell")
        h0s = K.unbind(h0, 0)
        c0s = K.unbind(c0, 0) if is_lstm else None
        layer_in = list(K.unbind(x, 0))
        hn, cn = [], []
        for layer in range(self.num_layers):
            dir_outs = []
            for d in range(ndir):
                step = _Step(self.mode, *self._layer_params(layer, d), B)
                k = layer * ndir + d
                h = h0s[k]
                c = c0s[k] if is_lstm else None
                outs = [None] * T
                for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                    h_new, c_new = step(layer_in[t], h, c)
                    if masks is not None:  # finished sequences keep their state (reverse: not started yet)
                        h_new = K.where(masks[t], h_new, h)
                        c_new = K.where(masks[t], c_new, c) if is_lstm else None
                    h, c = h_new, c_new
                    outs[t] = h
                dir_outs.append(outs)
                hn.append(h)
                if is_lstm:
                    cn.append(c)
            layer_in = dir_outs[0] if ndir == 1 else [K.cat([a, b], -1) for a, b in zip(*dir_outs)]
            if self.dropout and layer < self.num_layers - 1 and self._guarded_training() and layer < self.num_layers - 1:
                layer_in = [F.dropout(v, self.dropout, True) for v in layer_in]
        h_n = K.stack(hn, 0)
        c_n = K.stack(cn, 0) if is_lstm else None
        if packed:
            bs = input.batch_sizes.tolist()
            out = PackedSequence(K.cat([v[:b] for v, b in zip(layer_in, bs)], 0), input.batch_sizes,
                                 input.sorted_indices, input.unsorted_indices)
            if input.unsorted_indices is not None:
                h_n = K.index_select(h_n, 1, input.unsorted_indices)
                c_n = K.index_select(c_n, 1, input.unsorted_indices) if is_lstm else None
            return out, h_n, c_n
        out = K.stack(layer_in, 0)  # (T, B, D*H)
        if not batched:
            out, h_n = K.squeeze(out, 1), K.squeeze(h_n, 1)
            c_n = K.squeeze(c_n, 1) if is_lstm else None
        elif self.batch_first:
            out = K.transpose(out, 0, 1)
        return out, h_n, c_n


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu); returns (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        out, h_n, _ = self._run(input, hx)
        return out, h_n


class LSTM(RNNBase):
    """LSTM with PyTorch's gate order (i, f, g, o); returns (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        out, h_n, c_n = self._run(input, hx)
        return out, (h_n, c_n)


class GRU(RNNBase):
    """GRU with PyTorch's gate order (r, z, n); returns (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)

    def forward(self, input, hx=None):
        out, h_n, _ = self._run(input, hx)
        return out, h_n


class RNNCellBase(Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), dtype=dtype))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, dtype=dtype))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def _prep(self, input, hx):
        if input.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[-1]} expected "
                               f"{self.input_size}")
        batched = input.ndim == 2
        x = input if batched else K.unsqueeze(input, 0)
        return x, batched

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, batched = self._prep(input, hx)
        h = zeros((x.shape[0], self.hidden_size), dtype=x.dtype) if hx is None else \
            (hx if batched else K.unsqueeze(hx, 0))
        h = _rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity == "relu")
        return h if batched else K.squeeze(h, 0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, batched = self._prep(input, hx)
        if hx is None:
            h = c = zeros((x.shape[0], self.hidden_size), dtype=x.dtype)
        else:
            h, c = hx
            if not batched:
                h, c = K.unsqueeze(h, 0), K.unsqueeze(c, 0)
        h, c = _lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (K.squeeze(h, 0), K.squeeze(c, 0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, batched = self._prep(input, hx)
        h = zeros((x.shape[0], self.hidden_size), dtype=x.dtype) if hx is None else \
            (hx if batched else K.unsqueeze(hx, 0))
        h = _gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if batched else K.squeeze(h, 0)
