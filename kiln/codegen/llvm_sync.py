"""Waiting between native threads: spin briefly, then sleep in the kernel (Linux futex).

A thread that waits for another (at the barrier after each kernel, or a pool worker waiting
for the next program) first spins on the word it waits for, with a CPU pause, for about
`SPIN_CYCLES` cycles of the cycle counter: a partner that is running arrives within
microseconds. Past that the partner is most likely not running (another process holds its
core), and spinning on would hold this core for the scheduler's whole time slice (measured on
the loaded 2-core development box: a 2-thread MLP step went from ~5 ms to 67 ms with spinning
barriers). So the waiter sleeps on the word (`FUTEX_WAIT`), which frees its core for the
partner, and the thread that changes the word wakes it (`FUTEX_WAKE`) when a sleeper says so.

The futex calls are raw system calls written as inline assembly (x86-64 and AArch64 Linux),
so compiled programs and shared libraries need no symbol from libc. Elsewhere `futex_supported`
is False and waiters only spin.
"""
from __future__ import annotations

import platform
import sys

from llvmlite import ir

I32, I64 = ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()

SPIN_CYCLES = 1 << 17  # ~40-60 us at the 2-3 GHz of a cycle counter, then sleep
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129

_SYSCALLS = {  # machine: (futex syscall number, instruction, constraint string)
    "x86_64": (202, "syscall", "={rax},{rax},{rdi},{rsi},{rdx},{r10},~{rcx},~{r11},~{memory}"),
    "aarch64": (98, "svc #0", "={x0},{x8},{x0},{x1},{x2},{x3},~{memory}"),
}


def _machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def futex_supported() -> bool:
    """Can generated code sleep on a futex on this host (little-endian Linux on x86-64 or
    AArch64: the futex word is the generation, the low half of the i64 state)?"""
    return sys.platform.startswith("linux") and _machine() in _SYSCALLS and sys.byteorder == "little"


def futex(b: ir.IRBuilder, addr: ir.Value, op_code: int, val: ir.Value) -> ir.Value:
    """Emit `syscall(SYS_futex, addr, op_code, val, NULL)` (returns the i64 result)."""
    nr, insn, constraint = _SYSCALLS[_machine()]
    fty = ir.FunctionType(I64, [I64, PTR, I64, I64, I64])
    asm = ir.InlineAsm(fty, insn, constraint, side_effect=True)
    return b.call(asm, [ir.Constant(I64, nr), addr, ir.Constant(I64, op_code), val, ir.Constant(I64, 0)])


def cpu_pause(b: ir.IRBuilder) -> None:
    """A spin-loop hint (x86 `pause`, AArch64 `yield`); nothing on other machines."""
    insn = {"x86_64": "pause", "aarch64": "yield"}.get(_machine())
    if insn:
        b.call(ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), insn, "~{memory}", side_effect=True), [])


def render_wait(m: ir.Module, name: str) -> ir.Function:
    """`void wait(ptr state, i64 seen)`: return once the generation (the low 32 bits of the i64
    `state`) differs from `seen`'s. Spins for about SPIN_CYCLES cycles first; then, on futex hosts,
    counts itself in the high 32 bits of `state` (so `advance` knows to wake it), sleeps while the
    generation is unchanged, and counts itself out. Both halves change only through atomic
    read-modify-writes of the one word, so a wake-up cannot be missed."""
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, I64]), name=name)
    fn.linkage = "internal"
    state, seen64 = fn.args
    entry, spin, pause, sleep, done = (fn.append_basic_block(s) for s in ("entry", "spin", "pause", "sleep", "done"))
    b = ir.IRBuilder(entry)
    seen = b.trunc(seen64, I32)
    clock = m.declare_intrinsic("llvm.readcyclecounter", (), ir.FunctionType(I64, []))
    t0 = b.call(clock, [])
    b.branch(spin)
    b.position_at_end(spin)
    tries = b.phi(I64)
    tries.add_incoming(ir.Constant(I64, 0), entry)
    now = b.trunc(b.load_atomic(state, "acquire", 8, typ=I64), I32)
    b.cbranch(b.icmp_unsigned("!=", now, seen), done, pause)
    b.position_at_end(pause)
    cpu_pause(b)
    more = b.add(tries, ir.Constant(I64, 1))
    tries.add_incoming(more, pause)
    if futex_supported():
        # the cycle counter (0 where the target has none: then the try count alone ends the spin)
        spent = b.sub(b.call(clock, []), t0)
        long_ = b.or_(b.icmp_unsigned(">", spent, ir.Constant(I64, SPIN_CYCLES)),
                      b.icmp_unsigned(">", more, ir.Constant(I64, SPIN_CYCLES)))
        b.cbranch(long_, sleep, spin)
        b.position_at_end(sleep)
        old = b.atomic_rmw("add", state, ir.Constant(I64, 1 << 32), "seq_cst")
        with b.if_then(b.icmp_unsigned("==", b.trunc(old, I32), seen)):
            futex(b, state, FUTEX_WAIT_PRIVATE, b.zext(seen, I64))
        b.atomic_rmw("sub", state, ir.Constant(I64, 1 << 32), "seq_cst")
        # re-check; the spin budget is spent, so an unchanged word sends it straight back to sleep
        tries.add_incoming(more, b.block)
        b.branch(spin)
    else:
        b.branch(spin)
        b.position_at_end(sleep)
        b.unreachable()
    b.position_at_end(done)
    b.ret_void()
    return fn


def advance(b: ir.IRBuilder, state: ir.Value) -> None:
    """Move the generation of the i64 `state` on by one and wake the threads `wait`ing on it."""
    old = b.atomic_rmw("add", state, ir.Constant(I64, 1), "seq_cst")
    if futex_supported():
        with b.if_then(b.icmp_unsigned("!=", b.lshr(old, ir.Constant(I64, 32)), ir.Constant(I64, 0))):
            futex(b, state, FUTEX_WAKE_PRIVATE, ir.Constant(I64, 0x7FFFFFFF))
