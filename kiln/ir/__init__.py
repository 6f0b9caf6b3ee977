"""kiln's intermediate representation: graphs of primitives. Imports nothing else of kiln."""
from .dtypes import DType, get_dtype, result_type
from .graph import Graph, Node
from .parser import IRParseError, parse_graph
from .primitives import PRIMITIVES, Primitive, Prop, ShapeError, get_primitive, prims_with
from .printer import format_graph
from .ruleops import RuleOps
from .verifier import VerificationError, verify

__all__ = ["DType", "get_dtype", "result_type", "Graph", "Node", "IRParseError", "parse_graph", "PRIMITIVES",
           "Primitive", "Prop", "ShapeError", "get_primitive", "prims_with", "format_graph", "RuleOps",
           "VerificationError", "verify"]
