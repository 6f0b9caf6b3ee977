"""`register` takes every rule of a primitive at once and rejects inconsistent entries."""
import pytest

from kiln.ir.primitives import ELEMENTWISE, PRIMITIVES, register


def _rule(avals):
    return tuple(avals[0].shape), avals[0].dtype


def _vjp(ops, g, inputs, out):
    return (g,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="add"), "already registered"),
    (dict(kind="elementwize"), "unknown kind 'elementwize'"),
    (dict(saves=None), "must declare what it saves"),
    (dict(vjp=None, saves="i"), "there is none"),
    (dict(saves="2"), "below the arity 1"),
    (dict(saves="x"), "may hold only"),
    (dict(save_deps={1: ""}), "save_deps key 1"),
    (dict(save_deps={0: "o1"}), "save_deps[0]"),
])
def test_register_rejects_inconsistent_entries(kwargs, message):
    args = dict(name="probe_prim", kind=ELEMENTWISE, shape_rule=_rule, impl=lambda x: x, vjp=_vjp, arity=1,
                saves="i")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        register(**args)
    assert "probe_prim" not in PRIMITIVES


def test_public_names_are_reexported():
    import kiln.ir.primitives as prims
    from kiln.ir import get_primitive
    assert get_primitive("conv") is prims.PRIMITIVES["conv"]
    assert prims.PRIMITIVES["conv"].saves == "i" and prims.PRIMITIVES["conv"].save_deps == {0: "1", 1: "0"}
    for name in ("Primitive", "ShapeError", "get_primitive", "broadcast_shapes", "random_bits", "MOVEMENT",
                 "ELEMENTWISE", "REDUCTION", "INDEX", "MATMUL", "CONV", "CREATION", "RANDOM"):
        assert hasattr(prims, name), name
