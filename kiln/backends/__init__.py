"""`kiln.backends`: the `torch.backends` settings programs read and assign.

`cudnn` and `mps` exist so that `torch.backends.cudnn.benchmark = True` and
`torch.backends.mps.is_available()` run unchanged; kiln runs on the CPU, where they have no effect.
"""
from . import cudnn, mps  # noqa: F401
