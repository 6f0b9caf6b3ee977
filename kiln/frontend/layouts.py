"""`kiln.strided` and the memory formats (`kiln.contiguous_format`, `channels_last`, ...): PyTorch's names.

kiln tensors are dense and strided (row-major when they own their memory); the compiler picks
the layout of compiled buffers itself. So a `memory_format=` argument is accepted and the values
come out the same as in PyTorch; only PyTorch's stride choice for `channels_last` is not copied.
"""
from __future__ import annotations


class _Named:
    """A module-level singleton known by its name (`kiln.<name>`, pickled by name)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"kiln.{self.name}"

    def __reduce__(self):
        return self.name


class layout(_Named):
    """A tensor layout. kiln has one: `kiln.strided` (no sparse layouts)."""


class memory_format(_Named):
    """A memory format request (`contiguous_format`, `preserve_format`, `channels_last`, `channels_last_3d`)."""


strided = layout("strided")
contiguous_format = memory_format("contiguous_format")
preserve_format = memory_format("preserve_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
