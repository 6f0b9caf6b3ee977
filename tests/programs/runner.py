"""Run one corpus program under PyTorch, kiln eager and kiln with the whole step compiled.

A program module is written as a PyTorch program against a framework passed in as ``torch``:

- ``build_models(torch) -> dict``: the modules (and free tensors, e.g. an image being optimised) the step trains;
- ``make_step(torch, models) -> step``: builds optimizers and returns ``step(*batch)``, one whole training step
  (zero_grad, forward, loss, backward, optimizer step) returning the loss tensor, or a tuple of loss tensors;
- ``make_data(torch) -> list[tuple]``: seeded synthetic batches; called with PyTorch only, and the runner hands
  kiln the same numbers;
- optional ``STEPS`` (default 4), ``RTOL``/``ATOL`` (float32 loss tolerance).

PyTorch's initial weights are copied into kiln, so the three runs start from the same state.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import torch

import kiln

PROGRAMS = [
    "mnist_mlp", "cifar_cnn", "dcgan", "vae", "word_lstm", "char_gru", "transformer_lm",
    "style_transfer", "siamese", "super_resolution", "time_sequence_lbfgs",
]
MODES = ("torch", "kiln", "compiled")


@dataclass
class Run:
    """The losses of one run, one row per step (several columns when a step returns several losses)."""
    losses: np.ndarray
    step_seconds: list[float] = field(default_factory=list)


def load(name: str) -> ModuleType:
    """The program module ``<name>`` of this package."""
    return importlib.import_module(f"{__package__}.{name}")


def _to_kiln(value, dtype):
    if isinstance(value, torch.Tensor):
        array = value.detach().numpy().copy()
        if dtype is not None and array.dtype.kind == "f":
            array = array.astype(dtype)
        return kiln.from_numpy(array)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_kiln(v, dtype) for v in value)
    return value


def _to_torch(value, dtype):
    if isinstance(value, torch.Tensor) and dtype is not None and value.is_floating_point():
        return value.to(getattr(torch, np.dtype(dtype).name))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_torch(v, dtype) for v in value)
    return value


def _initial_state(program: ModuleType) -> tuple[dict, list]:
    """PyTorch's models (built once, seeded) and data; every run starts from copies of these."""
    torch.manual_seed(0)
    models = program.build_models(torch)
    torch.manual_seed(1)
    data = program.make_data(torch)
    return models, data


def _losses(out) -> list[float]:
    if isinstance(out, (tuple, list)):
        return [float(o.item()) for o in out]
    return [float(out.item())]


def run(program: ModuleType, mode: str, *, dtype=None, steps: int | None = None) -> Run:
    """Train ``program`` for ``steps`` steps in ``mode`` (one of ``MODES``); ``dtype=np.float64`` runs it in double."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    steps = steps or getattr(program, "STEPS", 4)
    reference, data = _initial_state(program)
    lib = torch if mode == "torch" else kiln
    torch.manual_seed(0)
    models = program.build_models(lib)
    for name, ref in reference.items():
        if isinstance(ref, torch.nn.Module):
            state = {k: (_to_kiln(v, dtype) if lib is kiln else _to_torch(v.clone(), dtype))
                     for k, v in ref.state_dict().items()}
            if dtype is not None:
                models[name].double()
            models[name].load_state_dict(state)
        else:
            models[name] = _to_kiln(ref, dtype) if lib is kiln else _to_torch(ref.detach().clone(), dtype)
    batches = [_to_kiln(b, dtype) if lib is kiln else _to_torch(b, dtype) for b in data]
    if mode == "compiled" and hasattr(program, "make_compiled_step"):
        # the program says how its users compile it (LBFGS: the closure, around an eager line search)
        step = program.make_compiled_step(lib, models, kiln.compile)
    else:
        step = program.make_step(lib, models)
        if mode == "compiled":
            step = kiln.compile(step)
    rows, seconds = [], []
    for i in range(steps):
        start = time.perf_counter()
        out = step(*batches[i % len(batches)])
        rows.append(_losses(out))
        seconds.append(time.perf_counter() - start)
    return Run(np.array(rows), seconds)


def max_difference(a: Run, b: Run) -> float:
    """The largest relative loss difference between two runs, over all steps."""
    return float(np.max(np.abs(a.losses - b.losses) / np.maximum(np.abs(a.losses), 1e-6)))
