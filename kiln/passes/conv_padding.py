"""Make every convolution's zero padding an explicit `pad` node.

    conv(x, w, padding=P)  ->  conv(pad(x, lo=P.lo, hi=P.hi), w, padding=0)

A convolution without padding reads its input at affine positions (`o * stride + k * dilation`),
so the native lowering (`kiln/codegen/conv_lower.py`) loads consecutive output positions as one
vector instead of clamping every index at the border. The fusion planner writes a pad that
feeds a convolution to memory (a small copy, not a per-tap select inside the GEMM loop). A
forward convolution and its weight gradient pad the same input alike, so `cse` leaves one
padded copy for both.
"""
from __future__ import annotations

from ..ir.graph import Graph
from .builder import GraphBuilder


def explicit_conv_padding(graph: Graph) -> Graph:
    """Rewrite each padded `conv` into `pad` + an unpadded `conv` (same values, same names)."""
    if not any(n.op == "conv" and any(lo or hi for lo, hi in n.attrs["padding"]) for n in graph.nodes):
        return graph
    b = GraphBuilder(graph)
    for n in graph.nodes:
        pads = n.attrs.get("padding") if n.op == "conv" else None
        if not pads or not any(lo or hi for lo, hi in pads):
            b.copy(n)
            continue
        x, w = b.mapped_inputs(n)
        rank = len(x.shape)
        xp = b.emit("pad", [x], {"lo": (0, 0) + tuple(lo for lo, _ in pads),
                                 "hi": (0, 0) + tuple(hi for _, hi in pads),
                                 "interior": (0,) * rank, "value": 0.0}, loc=n.loc)
        attrs = dict(n.attrs, padding=((0, 0),) * (rank - 2))
        b.env[id(n)] = b.emit("conv", [xp, w], attrs, name=n.name, loc=n.loc)
    return b.finish()
