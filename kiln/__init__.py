"""kiln: a deep-learning compiler with PyTorch's eager API.

    import kiln
    x = kiln.randn(3, 4, requires_grad=True)
    f = kiln.compile(lambda x: (x.relu() * 2).sum())
    print(kiln.make_graph(f.fn)(x))
"""
from . import config
from .ir import dtypes as _dt
from .ir.dtypes import DType as dtype
from .ir.graph import Graph, Node
from .ir.parser import parse_graph
from .frontend import methods as _methods  # noqa: F401  (installs Tensor methods)
from .frontend.tensor import Size, Tensor, TracingError, device
from .frontend.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .frontend.ops import *  # noqa: F401,F403
from .frontend.ops import abs, all, any, max, min, pow, round, sum  # noqa: F401  (shadow builtins on purpose)
from .frontend.creation import (Generator, arange, as_tensor, bernoulli, default_generator, empty, empty_like, eye,
                                from_numpy, full, full_like, get_default_dtype, initial_seed, linspace, manual_seed,
                                normal, ones, ones_like, rand, rand_like, randint, randint_like, randn, randn_like,
                                randperm, seed, set_default_dtype, tensor, zeros, zeros_like)
from .frontend.layouts import (channels_last, channels_last_3d, contiguous_format, layout, memory_format,
                               preserve_format, strided)
from .frontend.legacy import (BFloat16Tensor, BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor,
                              HalfTensor, IntTensor, LongTensor, ShortTensor)
from .frontend.compile import compile, make_graph
from .frontend.dlpack import from_dlpack
from .frontend.lowered import Lowered, ShapeDtype
from .frontend.transforms import grad, value_and_grad, vjp
from .runtime.profiler import profiler
from .runtime.threads import get_num_threads, init_threads as _init_threads, set_num_threads

_init_threads()
from .frontend import autograd_api as autograd

float32 = float = _dt.float32
float64 = double = _dt.float64
float16 = half = _dt.float16
int32 = int = _dt.int32
int64 = long = _dt.int64
bool = _dt.bool_

__version__ = "0.1.0"


def is_tensor(obj) -> "builtins.bool":
    return isinstance(obj, Tensor)


def numel(t: Tensor) -> "builtins.int":
    return t.numel()

from .frontend.serialization import save, load  # noqa: E402
from . import optim, utils  # noqa: E402
from . import nn  # noqa: E402
from . import accelerator, backends, cuda  # noqa: E402
from .backends.cuda import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: E402
from . import export  # noqa: E402  (a callable module: kiln.export(fn, *args) exports)
from .export import Dim, ExportedProgram, load_exported  # noqa: E402
