"""Helpers for the pass tests: IR text in, IR text out."""
from __future__ import annotations

import textwrap

from kiln.ir import parse_graph, verify


def ir(text: str):
    """Parse (dedented) IR text into a verified Graph."""
    return verify(parse_graph(textwrap.dedent(text)))


def assert_pass(pass_fn, src: str, expected: str) -> None:
    """Run `pass_fn` on the IR `src` and compare the text of the result with `expected`."""
    g = ir(src)
    before = str(g)
    out = verify(pass_fn(g))
    assert str(g) == before, "the pass mutated its input graph"
    want = ir(expected)
    assert str(out) == str(want), f"got:\n{out}\nexpected:\n{want}"


def assert_unchanged(pass_fn, src: str) -> None:
    g = ir(src)
    assert pass_fn(g) is g
