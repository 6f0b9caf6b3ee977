"""`kiln.nn`: PyTorch's `torch.nn` (modules, parameters, losses, `functional`, `init`) on kiln tensors.

    import kiln.nn as nn
    import kiln.nn.functional as F
"""
from . import functional, init, parallel, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules_all
from .parameter import Buffer, Parameter

__all__ = list(_modules_all) + ["Parameter", "Buffer", "functional", "init", "parallel", "utils"]
