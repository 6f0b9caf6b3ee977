"""A compiled function's output that is a new tensor eagerly (`x * 1`, `x + 0`, `x.clone()`)
owns its memory, though the optimized graph passes the input through: an in-place update of
the input after the call, or the call's own write-back, must not change it (as in PyTorch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln

BACKENDS = ["reference", "llvm"]

PROGRAMS = {
    "mul_one": lambda x: x * 1,
    "add_zero": lambda x: x + 0,
    "clone": lambda x: x.clone(),
    "transposed_clone": lambda x: x.t().clone(),
    "detached_clone": lambda x: x.detach().clone(),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_new_output_does_not_follow_its_input(backend, name):
    program = PROGRAMS[name]
    compiled = kiln.compile(program, backend=backend)
    x, tx = kiln.arange(4.0).reshape(2, 2), torch.arange(4.0).reshape(2, 2)
    out, want = compiled(x), program(tx)
    x.add_(10)
    tx.add_(10)
    np.testing.assert_array_equal(out.numpy(), want.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_copy_taken_before_an_update_keeps_the_old_values(backend):
    def program(x):
        y = x * 1
        x.add_(1)  # written back into x after the graph ran: y must not see it
        return y, x + 0

    compiled = kiln.compile(program, backend=backend)
    x, tx = kiln.zeros(3), torch.zeros(3)
    for got, want in zip(compiled(x), program(tx)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(x.numpy(), tx.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_argument_returned_still_shares_its_memory(backend):
    # eagerly `return x` is x itself: the compiled output shares x's memory, as before
    compiled = kiln.compile(lambda x, y: (x, y * 1), backend=backend)
    x, y = kiln.zeros(2), kiln.zeros(2)
    same, new = compiled(x, y)
    x.add_(1)
    y.add_(1)
    assert same.numpy().tolist() == [1.0, 1.0] and new.numpy().tolist() == [0.0, 0.0]
