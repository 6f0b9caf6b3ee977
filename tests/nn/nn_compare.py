"""Helpers for comparing kiln.nn against PyTorch: copy weights, run forward/backward, compare."""
from __future__ import annotations

import numpy as np

import kiln

RTOL = 1e-5


def close(a, b, rtol: float = RTOL, what: str = "") -> None:
    """|a - b| <= rtol * max(|b|) elementwise (relative to the tensor's scale), shapes equal."""
    a = np.asarray(a.detach().numpy() if hasattr(a, "detach") else a, dtype=np.float64)
    b = np.asarray(b.detach().numpy() if hasattr(b, "detach") else b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-6)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} exceeds {rtol} x scale {scale:.3g}"


def copy_weights(tmod, kmod) -> None:
    """Load a torch module's state dict (torch key names) into a kiln module, strictly."""
    kmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


def k(arr: np.ndarray, grad: bool = False):
    t = kiln.from_numpy(np.array(arr))
    return t.requires_grad_(True) if grad else t


def check_module(torch, tmod, kmod, *inputs: np.ndarray, grad_inputs: bool = True, rtol: float = RTOL,
                 seed: int = 0, out_index=None, needs_grad=None) -> None:
    """Same weights, same inputs: outputs, input gradients and parameter gradients agree.

    `needs_grad` (one bool per input) picks which floating inputs get a gradient; by default all do
    when `grad_inputs` is true (integer inputs never do)."""
    copy_weights(tmod, kmod)
    if needs_grad is None:
        needs_grad = [grad_inputs] * len(inputs)
    assert len(needs_grad) == len(inputs), f"needs_grad has {len(needs_grad)} entries for {len(inputs)} inputs"
    wants = [g and x.dtype.kind == "f" for g, x in zip(needs_grad, inputs)]
    t_in = [torch.tensor(x, requires_grad=w) for x, w in zip(inputs, wants)]
    k_in = [k(x, w) for x, w in zip(inputs, wants)]
    t_out = tmod(*t_in)
    k_out = kmod(*k_in)
    if out_index is not None:
        t_out, k_out = out_index(t_out), out_index(k_out)
    close(k_out, t_out, rtol, "forward")
    rng = np.random.default_rng(seed + 9_999)  # not seed 0: tests draw their inputs from default_rng(0) streams
    ct = rng.standard_normal(tuple(t_out.shape)).astype(np.float32 if t_out.dtype == torch.float32 else np.float64)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    for ti, ki in zip(t_in, k_in):
        if ti.requires_grad:
            close(ki.grad, ti.grad, rtol, "input grad")
    tparams = dict(tmod.named_parameters())
    kparams = dict(kmod.named_parameters())
    assert sorted(tparams) == sorted(kparams)
    for name, tp in tparams.items():
        if tp.grad is None:
            assert kparams[name].grad is None, name
            continue
        close(kparams[name].grad, tp.grad, rtol, f"grad of {name}")
