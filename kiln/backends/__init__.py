"""`kiln.backends`: the `torch.backends` settings programs read and assign.

`cuda.matmul.allow_tf32` chooses how the cuda backend multiplies float32 matrices (kiln/backends/cuda.py).

`cudnn` and `mps` exist so that `torch.backends.cudnn.benchmark = True` and
`torch.backends.mps.is_available()` run unchanged; kiln runs on the CPU, where they have no effect.
"""
from . import cuda, cudnn, mps  # noqa: F401
