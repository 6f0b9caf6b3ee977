"""Parse the text form written by `printer.format_graph` back into an equal Graph."""
from __future__ import annotations

import ast
import re

from . import dtypes as dt
from .graph import Graph, Node
from .primitives import ShapeError, get_primitive


class IRParseError(ValueError):
    """Malformed IR text; the message names the line number and what is wrong."""


_HEADER = re.compile(r"^graph\s+([\w.]+)\((.*)\)\s*\{$")
_PARAM = re.compile(r"^%([\w.]+):\s*(\w+)\[([\d,\s]*)\]$")
_NODE = re.compile(r"^%([\w.]+):\s*(\w+)\[([\d,\s]*)\]\s*=\s*(\w+)\(([^)]*)\)(?:\s*\{(.*)\})?$")
_RETURN = re.compile(r"^return\s*\((.*)\)$")
_NAMES = {"inf": float("inf"), "nan": float("nan"), "True": True, "False": False, "None": None}


def _split_top(text: str) -> list[str]:
    """Split at commas that are not nested in brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _literal(node: ast.AST):
    """A safe evaluator: numbers, strings, tuples, lists, unary minus, inf/nan/True/False/None and dtype names."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Name):
        if node.id in _NAMES:
            return _NAMES[node.id]
        try:
            return dt.get_dtype(node.id)
        except TypeError:
            pass
    raise ValueError(f"unsupported attribute syntax: {ast.dump(node)}")


def parse_value(text: str):
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"bad attribute value {text!r}: {e}") from None


def _shape(text: str, lineno: int) -> tuple[int, ...]:
    text = text.strip()
    try:
        return tuple(int(s) for s in text.split(",")) if text else ()
    except ValueError:
        raise IRParseError(f"line {lineno}: bad shape [{text}]; expected sizes separated by commas, "
                           "e.g. [2,3]") from None


def parse_graph(text: str) -> Graph:
    """Parse IR text; raises IRParseError naming the line for any malformed or ill-typed line."""
    lines = [(k + 1, ln.strip()) for k, ln in enumerate(text.splitlines())]
    lines = [(k, ln) for k, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise IRParseError("empty IR text")
    k, first = lines[0]
    m = _HEADER.match(first)
    if not m:
        raise IRParseError(f"line {k}: expected 'graph NAME(%arg: f32[..], ...) {{', got {first!r}")
    g = Graph(m.group(1))
    env: dict[str, Node] = {}

    def lookup(name: str, lineno: int) -> Node:
        name = name.strip()
        if not name.startswith("%") or name[1:] not in env:
            raise IRParseError(f"line {lineno}: undefined value {name!r}")
        return env[name[1:]]

    def dtype_of(short: str, lineno: int):
        try:
            return dt.get_dtype(short)
        except TypeError as e:
            raise IRParseError(f"line {lineno}: {e}") from None

    for p in _split_top(m.group(2)):
        pm = _PARAM.match(p)
        if not pm:
            raise IRParseError(f"line {k}: bad parameter {p!r}; expected '%name: f32[2,3]'")
        if pm.group(1) in env:
            raise IRParseError(f"line {k}: duplicate value name %{pm.group(1)}")
        env[pm.group(1)] = g.add_input(_shape(pm.group(3), k), dtype_of(pm.group(2), k), name=pm.group(1))
    done = closed = False
    for k, ln in lines[1:]:
        if done:
            if ln != "}" or closed:
                raise IRParseError(f"line {k}: text after the return statement: {ln!r}")
            closed = True
            continue
        if ln == "}":
            raise IRParseError(f"line {k}: missing 'return (...)' line before the closing brace")
        rm = _RETURN.match(ln)
        if rm:
            g.set_outputs([lookup(x, k) for x in _split_top(rm.group(1))])
            done = True
            continue
        nm = _NODE.match(ln)
        if not nm:
            raise IRParseError(f"line {k}: cannot parse {ln!r}; expected '%name: f32[2,3] = op(%a, %b) {{attr=value}}'")
        name, short, shape_s, op, args_s, attrs_s = nm.groups()
        if name in env:
            raise IRParseError(f"line {k}: duplicate value name %{name}")
        try:
            prim = get_primitive(op)
        except KeyError as e:
            raise IRParseError(f"line {k}: {e.args[0]}") from None
        inputs = [lookup(a, k) for a in _split_top(args_s)]
        attrs = {}
        for item in _split_top(attrs_s or ""):
            if "=" not in item:
                raise IRParseError(f"line {k}: attribute {item!r} is not 'name=value'")
            key, val = item.split("=", 1)
            try:
                attrs[key.strip()] = parse_value(val)
            except ValueError as e:
                raise IRParseError(f"line {k}: {e}") from None
        shape, dtype = _shape(shape_s, k), dtype_of(short, k)
        try:
            rshape, rdtype = prim.abstract_eval(inputs, attrs)
        except ShapeError as e:
            raise IRParseError(f"line {k}: {e}") from None
        if tuple(rshape) != shape or rdtype != dtype:
            raise IRParseError(f"line {k}: %{name} is declared {short}[{shape_s}] but {op} gives "
                               f"{rdtype.short}[{','.join(map(str, rshape))}]")
        env[name] = g.add_node(op, inputs, attrs, shape, dtype, name=name)
    if not done:
        raise IRParseError("missing 'return (...)' line")
    if not closed:
        raise IRParseError(f"line {lines[-1][0]}: missing the closing brace '}}' after the return statement "
                           "(truncated text?)")
    return g
