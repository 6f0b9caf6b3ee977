"""`kiln.backends.cuda`: the CUDA backend's numeric settings, as `torch.backends.cuda`.

`kiln.backends.cuda.matmul.allow_tf32` (default False, as PyTorch's): float32 matmuls and
convolutions compiled for the cuda backend may multiply on the tensor cores in TF32 (10-bit
mantissa inputs, float32 accumulation). Off, they are float32 FMAs. float16 inputs always use
the tensor cores. `kiln.set_float32_matmul_precision("high")` is the same switch ("highest":
off); the setting is read when a program runs, so it applies to programs compiled before it.
Unlike PyTorch, convolutions follow this switch too (there is no cuDNN: `cudnn.allow_tf32` has
no effect).
"""
from __future__ import annotations

_PRECISIONS = ("highest", "high", "medium")
_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """"highest": float32 matmuls in float32; "high" (and "medium", which kiln treats as "high"):
    TF32 on the tensor cores allowed. As `torch.set_float32_matmul_precision`."""
    global _precision
    if precision not in _PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: precision must be one of {', '.join(_PRECISIONS)}, "
                         f"got {precision!r}")
    _precision = precision


def get_float32_matmul_precision() -> str:
    """The current float32 matmul precision ("highest", "high" or "medium")."""
    return _precision


class _Matmul:
    """`kiln.backends.cuda.matmul`: `allow_tf32` reads and sets the float32 matmul precision."""
    __slots__ = ()

    @property
    def allow_tf32(self) -> bool:
        return _precision != "highest"

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"kiln.backends.cuda.matmul.allow_tf32 must be True or False, got {value!r}")
        set_float32_matmul_precision("high" if value else "highest")

    def __repr__(self) -> str:
        return f"kiln.backends.cuda.matmul(allow_tf32={self.allow_tf32})"


matmul = _Matmul()


def is_built() -> bool:
    """True: the cuda backend is part of kiln (whether a device is usable: `kiln.cuda.is_available()`)."""
    return True
