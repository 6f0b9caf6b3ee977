"""View ops that change nothing (`x[:]`, `x[0:n]`, `x[...]`, `x.view(x.shape)`, an identity
permute, `x.t()` of a vector) return a new view of `x`, as PyTorch does: another tensor object
sharing x's memory, version counter and autograd history, never `x` itself. So a compiled call
may take `x` beside `x[0:n]` (a base and its view), as PyTorch's eager code does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln

WHOLE_VIEWS = {
    "slice_0_n": lambda x: x[0:3],
    "slice_all": lambda x: x[:],
    "ellipsis": lambda x: x[...],
    "two_slices": lambda x: x[:, :],
    "view_same": lambda x: x.view(3, 2),
    "reshape_same": lambda x: x.reshape(3, 2),
    "permute_identity": lambda x: x.permute(0, 1),
    "transpose_same_dim": lambda x: x.transpose(1, 1),
    "narrow_all": lambda x: x.narrow(0, 0, 3),
    "expand_same": lambda x: x.expand(3, 2),
    "squeeze_nothing": lambda x: x.squeeze(),
    "split_whole": lambda x: x.split(3)[0],
    "movedim_same": lambda x: x.movedim(0, 0),
}


def _pair(lib, requires_grad=False):
    return lib.tensor(np.arange(6.0, dtype=np.float32).reshape(3, 2), requires_grad=requires_grad)


@pytest.mark.parametrize("name", sorted(WHOLE_VIEWS))
def test_a_whole_view_is_a_new_view_sharing_memory_and_version(name):
    view = WHOLE_VIEWS[name]
    x, tx = _pair(kiln), _pair(torch)
    v, tv = view(x), view(tx)
    assert (v is x) == (tv is tx) == False  # noqa: E712
    assert v._base is x and tv._base is tx
    v.add_(1)  # through the view: the base sees it, and both version counters move
    tv.add_(1)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    assert x._version == v._version == tx._version == tv._version == 1
    x.mul_(2)  # through the base: the view sees it
    tx.mul_(2)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    assert x._version == v._version == tv._version == 2


@pytest.mark.parametrize("name", sorted(WHOLE_VIEWS))
def test_a_whole_view_carries_the_gradient_to_its_base(name):
    view = WHOLE_VIEWS[name]
    x, tx = _pair(kiln, True), _pair(torch, True)
    v, tv = view(x), view(tx)
    assert v.requires_grad and v.grad_fn is not None and tv.grad_fn is not None
    (v * kiln.arange(6.0).reshape(3, 2)).sum().backward()
    (tv * torch.arange(6.0).reshape(3, 2)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_flatten_and_contiguous_still_return_their_input():
    # these two are not views in PyTorch when nothing changes: they return the input itself
    x, tx = kiln.ones(4), torch.ones(4)
    assert (x.flatten() is x) and (tx.flatten() is tx)
    assert (x.contiguous() is x) and (tx.contiguous() is tx)


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("name", ["slice_0_n", "slice_all", "ellipsis", "view_same"])
def test_a_base_and_its_whole_view_as_two_arguments(backend, name):
    view = WHOLE_VIEWS[name]

    def program(a, b):
        a.add_(1)  # seen through b: one storage
        return b * 2, a + b

    compiled = kiln.compile(program, backend=backend)
    for _ in range(2):  # the trace, then the cache hit
        x, tx = _pair(kiln), _pair(torch)
        v, tv = view(x), view(tx)
        got, want = compiled(x, v), program(tx, tv)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w.detach().numpy())
        np.testing.assert_array_equal(x.numpy(), tx.numpy())
        assert x._version >= 1 and v._version == x._version  # the write-back shows in the shared counter
    # two distinct tensors of the same shapes must not reuse the aliased program
    a, b, ta, tb = _pair(kiln), _pair(kiln), _pair(torch), _pair(torch)
    for g, w in zip(compiled(a, b), program(ta, tb)):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert compiled.cache_info().misses == 2


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_the_same_tensor_twice_is_still_refused(backend):
    compiled = kiln.compile(lambda a, b: a + b, backend=backend)
    x = kiln.ones(3)
    with pytest.raises(RuntimeError, match="passed twice"):
        compiled(x, x)
    with pytest.raises(RuntimeError, match="passed twice"):
        compiled(x, x.detach())
