"""Guards on Python values: a compiled function retraces when a global, closure cell or module
attribute it read changes, and gives the eager result; what stays unguarded behaves as documented
(docs/user-guide.md, "Guards")."""
import math

import numpy as np

import kiln
from kiln import nn

import guard_helper_mod
from conftest import F32_ATOL, F32_RTOL

SCALE = 2.0
MODE = "double"
SHAPE_ARGS = (2, 3)
FLAG = True
OFFSET = None
COUNTER = 0


def _x():
    return kiln.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.0])


def _check(cf, fn, *args):
    got, want = cf(*args), fn(*args)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=F32_RTOL, atol=F32_ATOL)
    return got


def scale_by_global(x):
    return x * SCALE


def test_changed_global_scalar_retraces():
    global SCALE
    cf = kiln.compile(scale_by_global)
    x = _x()
    try:
        assert _check(cf, scale_by_global, x).tolist()[0] == 2.0
        _check(cf, scale_by_global, x)
        SCALE = 5.0
        assert _check(cf, scale_by_global, x).tolist()[0] == 5.0
        assert cf.cache_info().misses == 2 and cf.cache_info().hits == 1
        SCALE = 2.0  # the first trace is still valid for the first value
        assert _check(cf, scale_by_global, x).tolist()[0] == 2.0
        assert cf.cache_info().misses == 2
    finally:
        SCALE = 2.0


def branch_on_globals(x):
    y = x * 2 if MODE == "double" else x - 1
    y = y.reshape(*SHAPE_ARGS) if FLAG else y
    return y if OFFSET is None else y + OFFSET


def test_changed_global_str_tuple_bool_none_retrace():
    global MODE, SHAPE_ARGS, FLAG, OFFSET
    cf = kiln.compile(branch_on_globals)
    x = _x()
    try:
        _check(cf, branch_on_globals, x)
        MODE = "minus"
        _check(cf, branch_on_globals, x)
        SHAPE_ARGS = (3, 2)
        assert tuple(_check(cf, branch_on_globals, x).shape) == (3, 2)
        FLAG = False
        assert tuple(_check(cf, branch_on_globals, x).shape) == (6,)
        OFFSET = 10.0
        _check(cf, branch_on_globals, x)
        assert cf.cache_info().misses == 5
    finally:
        MODE, SHAPE_ARGS, FLAG, OFFSET = "double", (2, 3), True, None


def test_int_to_float_and_nan_values():
    global SCALE
    cf = kiln.compile(scale_by_global)
    x = kiln.tensor([1, 2, 3])
    try:
        SCALE = 2
        assert cf(x).dtype == scale_by_global(x).dtype  # int * int stays integral
        SCALE = 2.0  # equal under ==, but a different type: retrace
        assert cf(x).dtype == scale_by_global(x).dtype == kiln.float32
        assert cf.cache_info().misses == 2
        SCALE = math.nan
        assert np.isnan(cf(x).numpy()).all()
        SCALE = float("nan")  # another nan object: the guard still holds (no retrace storm)
        cf(x)
        assert cf.cache_info().misses == 3
    finally:
        SCALE = 2.0


def test_changed_closure_value_retraces():
    alpha = 0.5

    def f(x):
        return x * alpha + 1

    cf = kiln.compile(f)
    x = _x()
    _check(cf, f, x)
    alpha = 3.0
    assert _check(cf, f, x).tolist()[0] == 4.0
    assert cf.cache_info().misses == 2


def helper(x):
    return x * SCALE + guard_helper_mod.FACTOR


def calls_helper(x):
    return helper(x) + guard_helper_mod.scaled(x)


def test_functions_it_calls_and_user_module_attributes_are_guarded():
    global SCALE
    cf = kiln.compile(calls_helper)
    x = _x()
    try:
        _check(cf, calls_helper, x)
        SCALE = 7.0  # read by helper, not by calls_helper itself
        _check(cf, calls_helper, x)
        guard_helper_mod.FACTOR = -1.0  # read as mod.FACTOR and inside mod.scaled
        _check(cf, calls_helper, x)
        assert cf.cache_info().misses == 3
    finally:
        SCALE, guard_helper_mod.FACTOR = 2.0, 2.0


def test_rebinding_a_function_retraces():
    act = kiln.relu

    def f(x):
        return act(x)

    cf = kiln.compile(f)
    x = _x()
    _check(cf, f, x)
    act = kiln.tanh
    _check(cf, f, x)
    assert cf.cache_info().misses == 2


def counts_calls(x):
    global COUNTER
    COUNTER += 1  # a side effect, not a constant: runs at trace time only, and is not guarded
    return x + 1


def test_state_the_function_changes_is_not_a_guard():
    cf = kiln.compile(counts_calls)
    for _ in range(3):
        cf(_x())
    assert cf.cache_info().misses == 1 and COUNTER == 1


class Config:
    SCALE = 3.0


def test_class_attribute_retraces():
    def f(x):
        return x * Config.SCALE

    cf = kiln.compile(f)
    x = _x()
    try:
        _check(cf, f, x)
        Config.SCALE = -2.0
        assert _check(cf, f, x).tolist()[0] == -2.0
    finally:
        Config.SCALE = 3.0


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.scale = 2.0
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        y = self.act(self.lin(x)) * self.scale
        return self.extra(y)

    def extra(self, y):
        return y + (1.0 if self.training else -1.0)


def test_module_attributes_retrace():
    m = Scaled()
    x = kiln.randn(5, 6)

    @kiln.compile
    def f(x):
        return m(x)

    cm = kiln.compile(m)
    m.compile()
    for changed in range(4):
        for call in (f, cm, m):
            got = call(x)
            with kiln.no_grad():
                want = m.forward(x)
            np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=F32_RTOL, atol=F32_ATOL)
        if changed == 0:
            m.scale = 0.25  # read by forward
        elif changed == 1:
            m.act.negative_slope = 0.5  # a child's attribute, read by LeakyReLU.forward
        elif changed == 2:
            m.eval()  # self.training, read by a method forward calls
    assert f.cache_info().misses == 4 and cm.cache_info().misses == 4


def test_layers_in_a_sequential_are_guarded():
    seq = nn.Sequential(nn.Linear(6, 6), nn.LeakyReLU(0.01), nn.Dropout(0.0))
    cf = kiln.compile(seq)
    x = kiln.randn(4, 6)
    cf(x)
    seq[1].negative_slope = 2.0
    np.testing.assert_allclose(cf(x).detach().numpy(), seq(x).detach().numpy(), rtol=F32_RTOL, atol=F32_ATOL)
    assert cf.cache_info().misses == 2


def test_replaced_submodule_retraces():
    m = Scaled()
    cm = kiln.compile(m)
    x = kiln.randn(2, 6)
    cm(x)
    m.act = nn.Tanh()
    np.testing.assert_allclose(cm(x).detach().numpy(), m(x).detach().numpy(), rtol=F32_RTOL, atol=F32_ATOL)
    assert cm.cache_info().misses == 2


class PlainSettings:
    def __init__(self):
        self.scale = 2.0


SETTINGS = PlainSettings()
TABLE = {"scale": 2.0}


def reads_unguarded(x):
    return x * SETTINGS.scale + TABLE["scale"]


def test_documented_unguarded_values_keep_the_traced_constant():
    """Attributes of plain objects and dict items are not guarded (docs/user-guide.md, Guards):
    the cached trace keeps the old constants until `cache_clear()`."""
    cf = kiln.compile(reads_unguarded)
    x = _x()
    first = cf(x).numpy()
    try:
        SETTINGS.scale, TABLE["scale"] = 10.0, 100.0
        np.testing.assert_allclose(cf(x).numpy(), first)  # the documented stale behaviour
        assert cf.cache_info().misses == 1
        cf.cache_clear()
        np.testing.assert_allclose(cf(x).numpy(), reads_unguarded(x).numpy())
    finally:
        SETTINGS.scale, TABLE["scale"] = 2.0, 2.0


def test_plain_function_has_no_guards():
    """The dispatch path of `x + 1` checks nothing beyond the input signature."""
    cf = kiln.compile(lambda x: x + 1)
    x = _x()
    cf(x)
    entry = next(iter(cf._cache.values()))[0]
    assert entry.guards == []


@kiln.compile
def compiled_inner(x):
    return x * SCALE


def calls_compiled_inner(x):
    return compiled_inner(x) + 1


def test_a_compiled_function_called_inside_another_is_guarded():
    """The inner compiled function is inlined into the outer trace: what it reads is guarded too."""
    global SCALE
    cf = kiln.compile(calls_compiled_inner)
    x = _x()
    try:
        _check(cf, calls_compiled_inner, x)
        SCALE = -4.0
        assert _check(cf, calls_compiled_inner, x).tolist()[0] == -3.0
    finally:
        SCALE = 2.0
