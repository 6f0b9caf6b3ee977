"""The helpers every fuzz program and every regression test it writes use (public kiln API only):
the guarded `Flag` module, input construction from specs, the loss and `run`."""
import sys

import numpy as np

import kiln

F = kiln.nn.functional


class Flag(kiln.nn.Module):
    """Python state a compiled function is guarded on: forward branches on `self.training`."""

    def forward(self, x):
        return x * 2 if self.training else x - 1


flag = Flag()


def make_input(spec, seed, i, leaves, args):
    """The leaf tensor (gradients land on it; None for an alias) and the argument (a view of the leaf)
    of input `i` with `spec`; `leaves` and `args` are those made so far (an alias refers to one:
    `same` passes that argument again, `detach` its detached alias, `overlap` the view
    `leaf[:-1]` of an `offset` argument `leaf[1:]`)."""
    shape, dtype, layout, requires_grad, fill, alias = spec
    if alias is not None:
        if layout == "overlap":
            return None, leaves[alias][:-1]
        return None, (args[alias] if layout == "same" else args[alias].detach())
    rng = np.random.default_rng([seed, i])
    nd = len(shape)
    if layout == "transposed" and nd >= 2:
        stored = tuple(reversed(shape))
    elif layout == "strided" and nd >= 1:
        stored = shape[:-1] + (2 * shape[-1],)
    elif layout == "offset" and nd >= 1:
        stored = (shape[0] + 1,) + shape[1:]
    elif layout == "expanded" and nd >= 1:
        stored = (1,) + shape[1:]
    else:
        stored = shape
    if fill == "ones":
        data = np.ones(stored)
    elif fill == "zeros":
        data = np.zeros(stored)
    elif dtype == "bool":
        data = rng.random(stored) < 0.5
    elif dtype.startswith("int"):
        data = rng.integers(-5, 6, stored)
    else:
        data = rng.integers(-16, 17, stored) / 8  # a dyadic grid: small sums and products are exact
    leaf = kiln.tensor(np.asarray(data).astype(dtype), requires_grad=requires_grad)
    if layout == "transposed" and nd >= 2:
        return leaf, leaf.permute(*reversed(range(nd)))
    if layout == "strided" and nd >= 1:
        return leaf, leaf[..., ::2]
    if layout == "offset" and nd >= 1:
        return leaf, leaf[1:]
    if layout == "expanded" and nd >= 1:
        return leaf, leaf.expand(*shape)
    return leaf, leaf


def make_inputs(specs, seed):
    """The leaves and the arguments of `specs` (see `make_input`)."""
    leaves, args = [], []
    for i, spec in enumerate(specs):
        leaf, arg = make_input(spec, seed, i, leaves, args)
        leaves.append(leaf)
        args.append(arg)
    return leaves, args


def loss_of(outs):
    """A scalar loss over the float outputs that need gradients, with a position-dependent cotangent."""
    loss = None
    for o in outs:
        if o.dtype.is_floating_point and o.requires_grad:
            w = ((kiln.arange(o.numel()) % 7 + 1) / 4).to(o.dtype).reshape(o.shape)
            term = (o * w).sum().double()
            loss = term if loss is None else loss + term
    return loss


def path_dtypes(fn, args):
    """Call `fn(*args)`; return its result and the sorted dtype names of the tensors its frame
    holds when it returns (every value of a fuzz program: `v0`, `v1`, ...), or None for a
    function without Python code of its own (a compiled function)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return fn(*args), None
    names = set()

    def on_return(frame, event, arg):
        if event == "return":
            names.update(v.dtype.name for v in frame.f_locals.values() if isinstance(v, kiln.Tensor))
        return on_return

    def on_call(frame, event, arg):
        return on_return if frame.f_code is code else None

    before = sys.gettrace()
    sys.settrace(on_call)
    try:
        out = fn(*args)
    finally:
        sys.settrace(before)
    return out, sorted(names)


def run(fn, specs, seed, training=True):
    """Call `fn` on fresh inputs of `specs` and backpropagate `loss_of` its outputs; return the
    outputs, the leaves' gradients, the arguments' values after the call (in-place updates) and,
    for a plain Python `fn`, the dtypes of the values it computed (`path_dtypes`)."""
    flag.train(training)
    leaves, args = make_inputs(specs, seed)
    kiln.manual_seed(seed)
    outs, dtypes = path_dtypes(fn, args)
    values = [o.detach().numpy().copy() for o in outs]
    loss = loss_of(outs)
    if loss is not None:
        loss.backward()
    grads = [None if leaf is None or leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]
    after = [a.detach().numpy().copy() for a in args]
    return {"output": values, "grad": grads, "argument": after, "dtypes": dtypes}


def check_calls(program, calls, families, backend):
    """Run each of `calls` ((specs, data seed, Module.training, must retrace)) eagerly and through
    `kiln.compile(program, backend=backend)`, and assert they agree under `families`' tolerances
    and that a call marked to retrace did not replay a cached program."""
    from .tolerances import compare_runs

    compiled = kiln.compile(program, backend=backend, recompile_limit=1000)
    for k, (specs, seed, training, retraces) in enumerate(calls):
        misses = compiled.cache_info().misses
        want = run(program, specs, seed, training)
        got = run(compiled, specs, seed, training)
        diff = compare_runs(got, want, families)
        assert diff is None, f"call {k}: {diff[1]}"
        assert not retraces or compiled.cache_info().misses > misses, f"call {k} replayed a cached program"
