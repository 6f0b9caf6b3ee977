"""`kiln.nn.utils.rnn`: padded and packed variable-length sequences, with torch.nn.utils.rnn's names.

A `PackedSequence` holds the valid time steps of a batch sorted by decreasing length,
time-major: `data` is (sum(lengths), *), `batch_sizes[t]` the number of sequences still
running at step t. `RNN`, `LSTM` and `GRU` accept one and return one.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ...frontend import ops as K
from ...frontend.creation import tensor
from ...frontend.tensor import Tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence", "pad_sequence",
           "unpad_sequence", "unpack_sequence"]


class PackedSequence(NamedTuple):
    """Valid steps of variable-length sequences, time-major and sorted by decreasing length."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args, **kwargs) -> "PackedSequence":
        return self._replace(data=self.data.to(*args, **kwargs))

    @property
    def is_cuda(self) -> bool:
        return False


def _lengths(lengths) -> np.ndarray:
    if isinstance(lengths, Tensor):
        return np.asarray(lengths._concrete("sequence lengths"), dtype=np.int64).reshape(-1)
    return np.asarray(list(lengths), dtype=np.int64).reshape(-1)


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded (T, B, *) (or (B, T, *)) batch whose sequence b has length lengths[b]."""
    lens = _lengths(lengths)
    if lens.size and lens.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' that "
                           "is <= 0")
    x = K.transpose(input, 0, 1) if batch_first else input
    if lens.size != x.shape[1]:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {lens.size} (batch_size="
                           f"{x.shape[1]})")
    if lens.max() > x.shape[0]:
        raise RuntimeError(f"pack_padded_sequence: a length ({lens.max()}) exceeds the padded sequence length "
                           f"({x.shape[0]})")
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
                               "sidestep this requirement if you do not need ONNX exportability.")
        sorted_idx = unsorted_idx = None
    else:
        order = np.argsort(-lens, kind="stable")
        lens = lens[order]
        sorted_idx = tensor(order)
        unsorted_idx = tensor(np.argsort(order))
        x = K.index_select(x, 1, sorted_idx)
    batch_sizes = np.array([(lens > t).sum() for t in range(int(lens.max()))], dtype=np.int64)
    steps = [x[t, :int(bs)] for t, bs in enumerate(batch_sizes)]
    return PackedSequence(K.cat(steps, 0), tensor(batch_sizes), sorted_idx, unsorted_idx)


def _unpack_steps(sequence: PackedSequence) -> list[Tensor]:
    bs = _lengths(sequence.batch_sizes)
    return list(K.split(sequence.data, [int(b) for b in bs], 0))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Inverse of pack_padded_sequence: (padded batch in the original order, lengths)."""
    from ..functional import pad
    bs = _lengths(sequence.batch_sizes)
    b = int(bs[0])
    steps = _unpack_steps(sequence)
    tail = (0, 0) * (sequence.data.ndim - 1)
    rows = [pad(s, tail + (0, b - s.shape[0]), value=padding_value) if s.shape[0] < b else s for s in steps]
    t_max = len(rows)
    if total_length is not None:
        if total_length < t_max:
            raise ValueError(f"Expected total_length to be at least the length of the longest sequence ({t_max}), "
                             f"but got total_length={total_length}")
        filler = K.full_const(padding_value, (b,) + tuple(sequence.data.shape[1:]), sequence.data.dtype)
        rows += [filler] * (total_length - t_max)
    out = K.stack(rows, 0)  # (T, B, *) in sorted order
    lengths = np.array([(bs > i).sum() for i in range(b)], dtype=np.int64)
    if sequence.unsorted_indices is not None:
        out = K.index_select(out, 1, sequence.unsorted_indices)
        lengths = lengths[_lengths(sequence.unsorted_indices)]
    if batch_first:
        out = K.transpose(out, 0, 1)
    return out, tensor(lengths)


def pad_sequence(sequences: Sequence[Tensor], batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack (L_i, *) tensors into (L_max, B, *) (or (B, L_max, *)), padding with `padding_value`."""
    from ..functional import pad
    seqs = list(sequences)
    if not seqs:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    trailing = tuple(seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"pad_sequence: sequence {i} has shape {list(s.shape)}, expected [*, "
                               f"{', '.join(map(str, trailing))}]")
    longest = max(s.shape[0] for s in seqs)
    padded = []
    for s in seqs:
        extra = longest - s.shape[0]
        if extra:
            pads = (0, 0) * len(trailing) + ((0, extra) if padding_side == "right" else (extra, 0))
            s = pad(s, pads, value=padding_value)
        padded.append(s)
    return K.stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list[Tensor]:
    """Split a padded batch back into its sequences of the given lengths."""
    x = padded_sequences if batch_first else K.transpose(padded_sequences, 0, 1)
    return [x[i, :int(n)] for i, n in enumerate(_lengths(lengths))]


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of (L_i, *) tensors."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
