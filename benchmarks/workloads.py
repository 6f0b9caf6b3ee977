"""The workload registry: each workload builds one zero-argument `step()` per framework column.

A workload is a function `build(column, quick) -> Prepared`; it raises `Skip(reason)` when a
column cannot run (a missing package, `kiln.nn` not written yet, ...). Columns:

- `kiln eager`     kiln tensors, eager numpy execution
- `kiln.compile`   the same step wrapped in `kiln.compile` (today: the reference interpreter)
- `torch eager`    PyTorch, eager
- `torch.compile`  PyTorch with `torch.compile` (run in a subprocess with a time box, see harness)

The model code is written once against a framework namespace (`T`, `nn`, `F`, `optim`),
so the kiln and PyTorch versions are literally the same program with the import changed,
and kiln's model starts from a copy of PyTorch's initial weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

COLUMNS = ["kiln eager", "kiln.compile", "torch eager", "torch.compile"]


class Skip(Exception):
    """This (workload, column) cannot run here; the message says why."""


@dataclass
class Prepared:
    """A ready-to-time training step and what to report about it."""

    step: Callable[[], Any]  # one training step; returns the loss tensor
    loss_of: Callable[[Any], float]  # the float value of what step() returned
    notes: list[str] = field(default_factory=list)


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[str, bool], Prepared]


REGISTRY: dict[str, Workload] = {}


def register(name: str, description: str):
    def deco(fn: Callable[[str, bool], Prepared]) -> Callable[[str, bool], Prepared]:
        REGISTRY[name] = Workload(name, description, fn)
        return fn
    return deco


# -- frameworks ----------------------------------------------------------------------------------
def _torch():
    try:
        import torch
    except ImportError as e:
        raise Skip(f"PyTorch is not installed ({e})") from None
    return torch


def _kiln_namespace():
    import kiln
    try:
        import kiln.nn as nn
        import kiln.nn.functional as F
        nn.Module, nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.CrossEntropyLoss  # noqa: B018
    except (ImportError, AttributeError) as e:
        raise Skip(f"kiln.nn is not available yet ({type(e).__name__}: {e})") from None
    import kiln.optim as optim
    return kiln, nn, F, optim


def _torch_namespace():
    torch = _torch()
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    return torch, nn, F, optim


def _namespace(column: str):
    return _kiln_namespace() if column.startswith("kiln") else _torch_namespace()


# -- models: one source, two frameworks ---------------------------------------------------------
def make_mlp(nn, F):
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 64)
            self.fc3 = nn.Linear(64, 10)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)
    return MLP()


def make_cnn(nn, F):
    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc1 = nn.Linear(64 * 8 * 8, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 64 * 8 * 8)
            x = F.relu(self.fc1(x))
            return self.fc2(x)
    return CNN()


def _reference_weights(make_model) -> dict[str, np.ndarray]:
    """PyTorch's default initial weights for the model (seeded), as numpy arrays."""
    torch, nn, F, _ = _torch_namespace()
    torch.manual_seed(0)
    return {k: v.detach().numpy().copy() for k, v in make_model(nn, F).state_dict().items()}


def make_lstm(nn, F):
    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(10, 256, 2, batch_first=True)
            self.fc = nn.Linear(256, 10)

        def forward(self, x):
            h0 = x.new_zeros(2, x.size(0), 256)
            c0 = x.new_zeros(2, x.size(0), 256)
            out, _ = self.lstm(x, (h0, c0))
            return self.fc(out[:, -1, :])
    return LSTMClassifier()


def _sgd_momentum(lr: float, momentum: float):
    return lambda optim, params: optim.SGD(params, lr=lr, momentum=momentum)


def _classification_step(column: str, make_model, input_shape, make_opt) -> Prepared:
    T, nn, F, optim = _namespace(column)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(input_shape).astype(np.float32)
    y_np = rng.integers(0, 10, size=(input_shape[0],)).astype(np.int64)
    model = make_model(nn, F)
    notes = []
    try:
        weights = _reference_weights(make_model)
        model.load_state_dict({k: T.tensor(v) for k, v in weights.items()})
        notes.append("initial weights copied from PyTorch")
    except Skip:
        pass
    x, y = T.tensor(x_np), T.tensor(y_np)
    criterion = nn.CrossEntropyLoss()
    opt = make_opt(optim, model.parameters())

    def train_step(x, y):
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if column == "kiln.compile":
        compiled = T.compile(train_step)
        step = lambda: compiled(x, y)  # noqa: E731
        notes.append("whole step compiled (reference interpreter backend)")
    elif column == "torch.compile":
        compiled = T.compile(train_step)
        step = lambda: compiled(x, y)  # noqa: E731
    else:
        step = lambda: train_step(x, y)  # noqa: E731
    return Prepared(step=step, loss_of=lambda loss: float(loss.detach().item()), notes=notes)


@register("mlp", "MLP 784-128-64-10 (ReLU), batch 64, CrossEntropyLoss, SGD(lr=0.01, momentum=0.9): one training step")
def mlp(column: str, quick: bool) -> Prepared:
    return _classification_step(column, make_mlp, (64, 784), _sgd_momentum(0.01, 0.9))


@register("cnn", "CNN Conv(3,32)-ReLU-Pool-Conv(32,64)-ReLU-Pool-Linear(4096,128)-ReLU-Linear(128,10), batch 64 "
                 "of 3x32x32, CrossEntropyLoss, SGD(lr=0.001, momentum=0.9): one training step")
def cnn(column: str, quick: bool) -> Prepared:
    return _classification_step(column, make_cnn, (64, 3, 32, 32), _sgd_momentum(0.001, 0.9))


@register("lstm", "LSTM classifier: LSTM(10, 256, 2 layers, batch_first) with zero h0/c0, Linear(256, 10) on the "
                  "last step, batch 64 x 20 steps, CrossEntropyLoss, Adam(lr=0.001): one training step")
def lstm(column: str, quick: bool) -> Prepared:
    return _classification_step(column, make_lstm, (64, 20, 10), lambda optim, params: optim.Adam(params, lr=1e-3))


@register("loader", "DataLoader epoch: TensorDataset of 10,000 x 784 float32 + int64 labels, batch 64, shuffle "
                    "with a seeded generator (157 batches); time per epoch")
def loader(column: str, quick: bool) -> Prepared:
    if column.endswith("compile"):
        raise Skip("not applicable (data loading runs outside compiled code)")
    if column.startswith("kiln"):
        import kiln as T
        from kiln.utils.data import DataLoader, TensorDataset
    else:
        T = _torch()
        from torch.utils.data import DataLoader, TensorDataset
    rng = np.random.default_rng(0)
    x = T.tensor(rng.standard_normal((10_000, 784)).astype(np.float32))
    y = T.tensor(rng.integers(0, 10, 10_000).astype(np.int64))
    dl = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=T.Generator().manual_seed(0))

    def epoch():
        n = 0
        for xb, yb in dl:
            n += xb.shape[0]
        return n
    return Prepared(step=epoch, loss_of=float, notes=["'first_loss' is the number of samples seen"])


@register("adam", "Adam optimizer step alone (lr=1e-3) on the MLP's parameters (784x128, 128, 128x64, 64, 64x10, 10) "
                  "with fixed gradients")
def adam(column: str, quick: bool) -> Prepared:
    if column.startswith("kiln"):
        import kiln as T
        import kiln.optim as optim
    else:
        T = _torch()
        import torch.optim as optim
    rng = np.random.default_rng(0)
    shapes = [(128, 784), (128,), (64, 128), (64,), (10, 64), (10,)]
    params = [T.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    for p in params:
        p.grad = T.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32))
    opt = optim.Adam(params, lr=1e-3)
    step = T.compile(opt.step) if column.endswith("compile") else opt.step

    def run():
        step()
        return params[0]
    return Prepared(step=run, loss_of=lambda p: float(p.detach().sum().item()),
                    notes=["'first_loss' is the sum of the first parameter after one step"])
