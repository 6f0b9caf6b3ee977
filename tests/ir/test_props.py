"""Op properties live in the primitive table; the fusion planner's name sets are queries of it."""
import pytest

from kiln.ir import PRIMITIVES, Prop, get_primitive, prims_with
from kiln.ir.primitives import ELEMENTWISE, register
from kiln.passes import fusion


def test_fusion_name_sets_equal_the_lists_they_replaced():
    assert fusion.VIEW_OPS == {"reshape", "permute", "broadcast_to", "slice"}
    assert fusion.EXPENSIVE == {"exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "logistic", "erf",
                                "pow", "div", "floor_divide", "remainder", "random_uniform"}
    assert fusion.SCATTERS == {"scatter", "scatter_add"}
    assert fusion.PROLOGUE_OPS == {"reshape", "permute", "broadcast_to", "slice", "pad"}
    assert fusion.EPILOGUE_VIEWS == {"reshape", "permute"}
    for names in (fusion.VIEW_OPS, fusion.EXPENSIVE, fusion.SCATTERS, fusion.PROLOGUE_OPS, fusion.EPILOGUE_VIEWS):
        assert isinstance(names, frozenset)


def test_prims_with_needs_every_property_and_agrees_with_has():
    both = prims_with(Prop.VIEW | Prop.BIJECTIVE)
    assert both == prims_with(Prop.VIEW) & prims_with(Prop.BIJECTIVE)
    for prop in Prop:
        if prop.value:
            assert prims_with(prop) == {n for n, p in PRIMITIVES.items() if p.has(prop)}
    assert get_primitive("slice").has(Prop.VIEW) and not get_primitive("slice").has(Prop.BIJECTIVE)
    assert not get_primitive("add").has(Prop.EXPENSIVE)


def test_prims_with_rejects_the_empty_property():
    with pytest.raises(ValueError, match="at least one property"):
        prims_with(Prop.NONE)


def test_implied_properties_are_declared():
    for name in prims_with(Prop.VIEW):
        assert get_primitive(name).has(Prop.INDEX_MAP), name
    for name in prims_with(Prop.BIJECTIVE):
        assert get_primitive(name).has(Prop.VIEW), name


@pytest.mark.parametrize("props, message", [(Prop.VIEW, "VIEW needs INDEX_MAP"),
                                            (Prop.INDEX_MAP | Prop.BIJECTIVE, "BIJECTIVE needs VIEW")])
def test_register_rejects_a_property_without_what_it_implies(props, message):
    with pytest.raises(ValueError, match=message):
        register("probe_prim", ELEMENTWISE, lambda avals: (avals[0].shape, avals[0].dtype), lambda x: x, None, 1,
                 props=props)
    assert "probe_prim" not in PRIMITIVES
