"""The numerics policy's path rule: a float value is held to the tolerance of the least precise
float dtype its program computed in (a float64 output of float32 ops gets float32's bound)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln.testing.prelude import path_dtypes, run
from kiln.testing.tolerances import EXACT, compare_runs, tolerance


def test_path_widens_to_the_least_precise_float_dtype():
    assert tolerance("float64", ("reduction",), path=("float32",)) == tolerance("float32", ("reduction",))
    assert tolerance("float64", ("reduction",), path=("float16", "float32")) == tolerance("float16", ("reduction",))
    assert tolerance("float32", ("matmul",), path=("float64", "int64", "bool")) == tolerance("float32", ("matmul",))
    assert tolerance("float64", ("elementwise",), grad=True, path=("float32",)) == \
        tolerance("float32", ("elementwise",), grad=True)


def test_integer_values_stay_exact_on_any_path():
    assert tolerance("int64", ("reduction",), path=("float16",)) == EXACT
    assert tolerance("float64", ("exact",), path=("float16",)) == EXACT


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown op family 'blas'"):
        tolerance("float32", ("blas",), path=("float64",))


def test_path_dtypes_records_every_value_of_the_eager_run():
    def program(v0):
        v1 = v0.float()
        v2 = v1.softmax(0)
        v3 = v2.double()
        return (v3,)
    out, names = path_dtypes(program, [kiln.ones(3, dtype=kiln.float64)])
    assert names == ["float32", "float64"]
    assert out[0].dtype == kiln.float64
    assert path_dtypes(kiln.compile(program), [kiln.ones(3, dtype=kiln.float64)])[1] is None


def _result(value, dtypes):
    return {"output": [np.asarray(value)], "grad": [], "argument": [], "dtypes": dtypes}


def test_compare_runs_uses_the_eager_runs_path():
    want = np.float64(0.17317910492420197)
    got = np.float64(np.float32(want) + np.finfo(np.float32).eps * np.float32(want))  # float32's last place
    assert compare_runs(_result(got, None), _result(want, ["float32", "float64"]), ("reduction",)) is None
    diff = compare_runs(_result(got, None), _result(want, ["float64"]), ("reduction",))
    assert diff is not None and diff[0] == "output" and "rtol=1e-12" in diff[1]
    assert compare_runs(_result(got, None), _result(want, None), ("reduction",)) is not None


def test_run_keeps_the_path_of_an_eager_program_only():
    def program(v0):
        v1 = v0.half()
        return (v1.float(),)
    specs = [((2,), "float32", "contiguous", False, "grid", None)]
    assert run(program, specs, 0)["dtypes"] == ["float16", "float32"]
    assert run(kiln.compile(program), specs, 0)["dtypes"] is None
