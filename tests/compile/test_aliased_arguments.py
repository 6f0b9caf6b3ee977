"""One tensor passed twice to a compiled function is refused on every call, not only while tracing:
a cache hit for the signature of two distinct tensors must not run the program on one aliased pair."""
import pytest

import kiln


def _add_into(a, b):
    a.add_(b)
    return a * 2


@pytest.mark.parametrize("alias", [lambda x: x, lambda x: x.detach(), lambda x: x.data])
def test_aliased_arguments_refused_on_a_cache_hit(alias):
    fn = kiln.compile(_add_into)
    fn(kiln.ones(3), kiln.ones(3))  # traced for two distinct tensors
    x = kiln.ones(3)
    with pytest.raises(RuntimeError, match="passed twice"):
        fn(x, alias(x))
    assert x.tolist() == [1.0, 1.0, 1.0]  # nothing ran
    assert fn.cache_info().misses == 1


def test_aliased_arguments_refused_through_keywords_and_containers():
    fn = kiln.compile(lambda xs, b=None: xs[0] + xs[1] + b)
    a, b = kiln.ones(2), kiln.ones(2)
    assert fn([a, b], b=kiln.ones(2)).tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="passed twice"):
        fn([a, b], b=a)
    with pytest.raises(RuntimeError, match="passed twice"):
        fn([a, a], b=b)


def test_aliased_arguments_refused_while_tracing():
    fn = kiln.compile(_add_into)
    x = kiln.ones(2)
    with pytest.raises(RuntimeError, match="passed twice"):
        fn(x, x)
    assert fn(x, kiln.ones(2)).tolist() == [4.0, 4.0]  # the function stays usable


def test_distinct_tensors_with_equal_values_run():
    fn = kiln.compile(_add_into)
    a = kiln.ones(2)
    assert fn(a, a.clone()).tolist() == [4.0, 4.0]
    assert fn(a, a.clone()).tolist() == [8.0, 8.0]
