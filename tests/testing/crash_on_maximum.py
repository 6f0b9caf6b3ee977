"""A deliberate native crash, run by `kiln.testing.isolate`'s subprocess before it checks a
program (test_isolate.py): every llvm program that computes a `maximum` reads an unmapped address."""
import ctypes

from kiln.runtime import llvm_backend

_real_run = llvm_backend.LLVMExecutable.run
_UNMAPPED = 0x7FF0_DEAD_B000  # high in user space, far from any mapping (page 0 may be mapped)


def _crashing_run(self, inputs):
    if any(n.op == "maximum" for n in self.graph.nodes):
        ctypes.string_at(_UNMAPPED, 1)  # SIGSEGV
    return _real_run(self, inputs)


llvm_backend.LLVMExecutable.run = _crashing_run
