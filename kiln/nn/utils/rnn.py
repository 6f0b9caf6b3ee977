"""`kiln.nn.utils.rnn`: padding variable-length sequences (PackedSequence is not supported)."""
from __future__ import annotations

from typing import Sequence

from ...frontend import ops as K
from ...frontend.tensor import Tensor

__all__ = ["pad_sequence", "unpad_sequence"]


def pad_sequence(sequences: Sequence[Tensor], batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack (L_i, *) tensors into (L_max, B, *) (or (B, L_max, *)), padding with `padding_value`."""
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
            pads = [0, 0] * len(trailing) + ([0, extra] if padding_side == "right" else [extra, 0])
            from ..functional import pad
            s = pad(s, tuple(pads), value=padding_value)
        padded.append(s)
    return K.stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths: Tensor, batch_first: bool = False) -> list[Tensor]:
    """Split a padded batch back into its sequences of the given lengths."""
    x = padded_sequences if batch_first else K.transpose(padded_sequences, 0, 1)
    return [x[i, :int(n)] for i, n in enumerate(lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
