"""The training workloads (mlp, mlp1024, cnn, lstm, loader, adam); `kernels.py` adds the kernel ones.

Each workload builds one zero-argument `step()` per column (see `registry.py` for the
columns). The model code is written once against a framework namespace (`T`, `nn`, `F`,
`optim`), so the kiln and PyTorch versions are literally the same program with the import
changed, and kiln's model starts from a copy of PyTorch's initial weights.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .registry import (COLUMNS, KILN_COMPILE, PEERS, REGISTRY, SUBPROCESS_COLUMNS, Prepared, Skip, Workload,
                       kiln_backend, register)

__all__ = ["COLUMNS", "PEERS", "REGISTRY", "SUBPROCESS_COLUMNS", "Prepared", "Skip", "Workload", "register"]

# the training workloads run on kiln and PyTorch (the same model source); numpy/jax do not apply
TRAINING_COLUMNS = ["kiln eager", *KILN_COMPILE, "torch eager", "torch.compile"]


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

    if column in KILN_COMPILE:
        compiled = T.compile(train_step, backend=kiln_backend(column))
        step = lambda: compiled(x, y)  # noqa: E731
        lower = lambda: compiled.lower(x, y)  # noqa: E731
        notes.append(f"whole step compiled ({kiln_backend(column)} backend)")
    elif column == "torch.compile":
        compiled = T.compile(train_step)
        step = lambda: compiled(x, y)  # noqa: E731
    else:
        step = lambda: train_step(x, y)  # noqa: E731
    return Prepared(step=step, loss_of=lambda loss: float(loss.detach().item()), notes=notes,
                    lower=lower if column in KILN_COMPILE else None)


def _mlp_step(batch: int):
    def build(column: str, quick: bool) -> Prepared:
        if column == "jax.jit":
            return jax_mlp_step(batch)
        return _classification_step(column, make_mlp, (batch, 784), _sgd_momentum(0.01, 0.9))
    return build


register("mlp", "MLP 784-128-64-10 (ReLU), batch 64, CrossEntropyLoss, SGD(lr=0.01, momentum=0.9): one training step",
         columns=[*TRAINING_COLUMNS, "jax.jit"])(_mlp_step(64))
register("mlp1024", "MLP 784-128-64-10 (ReLU), batch 1024, CrossEntropyLoss, SGD(lr=0.01, momentum=0.9): one "
                    "training step", columns=[*TRAINING_COLUMNS, "jax.jit"])(_mlp_step(1024))


@register("cnn", "CNN Conv(3,32)-ReLU-Pool-Conv(32,64)-ReLU-Pool-Linear(4096,128)-ReLU-Linear(128,10), batch 64 "
                 "of 3x32x32, CrossEntropyLoss, SGD(lr=0.001, momentum=0.9): one training step",
          columns=[*TRAINING_COLUMNS, "jax.jit"])
def cnn(column: str, quick: bool) -> Prepared:
    if column == "jax.jit":
        return jax_cnn_step()
    return _classification_step(column, make_cnn, (64, 3, 32, 32), _sgd_momentum(0.001, 0.9))


@register("lstm", "LSTM classifier: LSTM(10, 256, 2 layers, batch_first) with zero h0/c0, Linear(256, 10) on the "
                  "last step, batch 64 x 32 steps, CrossEntropyLoss, Adam(lr=0.001): one training step",
          columns=[*TRAINING_COLUMNS, "jax.jit"])
def lstm(column: str, quick: bool) -> Prepared:
    if column == "jax.jit":
        return jax_lstm_step()
    return _classification_step(column, make_lstm, (64, 32, 10), lambda optim, params: optim.Adam(params, lr=1e-3))


@register("loader", "DataLoader epoch: TensorDataset of 10,000 x 784 float32 + int64 labels, batch 64, shuffle "
                    "with a seeded generator (157 batches); time per epoch",
          columns=["kiln eager", "torch eager"])  # data loading runs outside compiled code
def loader(column: str, quick: bool) -> Prepared:
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
                  "with fixed gradients", columns=TRAINING_COLUMNS)
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
    lower = None
    if column in KILN_COMPILE:
        step = T.compile(opt.step, backend=kiln_backend(column))
        lower = step.lower
    elif column == "torch.compile":
        step = T.compile(opt.step)
    else:
        step = opt.step

    def run():
        step()
        return params[0]
    return Prepared(step=run, loss_of=lambda p: float(p.detach().sum().item()),
                    notes=["'first_loss' is the sum of the first parameter after one step"], lower=lower)


# -- JAX: the MLP step written with jax.numpy (same weights, data, loss and SGD momentum) -----
def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        raise Skip(f"jax is not installed ({e}); pip install 'kiln[bench]'") from None
    return jax, jnp


def jax_mlp_step(batch: int = 64) -> Prepared:
    """`mlp` under jax.jit: forward, cross-entropy, grad and SGD(momentum) in one jitted function
    (the same weights and data as the other columns)."""
    jax, jnp = _jax()
    params = {k: jnp.asarray(v) for k, v in _reference_weights(make_mlp).items()}
    names = ["fc1", "fc2", "fc3"]

    def loss_fn(p, x, y):
        h = x
        for i, n in enumerate(names):
            h = h @ p[f"{n}.weight"].T + p[f"{n}.bias"]
            if i < len(names) - 1:
                h = jax.nn.relu(h)
        return _jax_cross_entropy(jax, jnp, h, y)

    update, init = _jax_sgd_momentum(jnp, 0.01, 0.9)
    return _jax_step(loss_fn, params, *_classification_data((batch, 784)), update, init)


def _jax_step(loss_fn, params: dict, x_np: np.ndarray, y_np: np.ndarray, update, init_state) -> Prepared:
    """A jitted step `(params, state, x, y) -> (params, state, loss)`: forward, grad and `update`."""
    jax, jnp = _jax()
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))

    @jax.jit
    def train_step(p, state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        p, state = update(p, g, state)
        return p, state, loss

    box = {"p": params, "s": init_state(params)}

    def step():
        box["p"], box["s"], loss = train_step(box["p"], box["s"], x, y)
        return loss.block_until_ready()
    return Prepared(step=step, loss_of=lambda loss: float(loss),
                    notes=["initial weights copied from PyTorch", "forward+grad+update in one jax.jit"])


def _jax_cross_entropy(jax, jnp, logits, y):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _jax_sgd_momentum(jnp, lr: float, momentum: float):
    """torch.optim.SGD with momentum: the first step's buffer is the gradient itself."""
    def update(p, g, state):
        buf, first = state
        buf = {k: jnp.where(first, g[k], momentum * buf[k] + g[k]) for k in p}
        return {k: p[k] - lr * buf[k] for k in p}, (buf, False)
    return update, lambda p: ({k: jnp.zeros_like(v) for k, v in p.items()}, True)


def _jax_adam(jnp, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """torch.optim.Adam (bias-corrected, eps outside the square root)."""
    def update(p, g, state):
        m, v, t = state
        t = t + 1
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in p}
        v = {k: b2 * v[k] + (1 - b2) * g[k] * g[k] for k in p}
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        return {k: p[k] - lr * (m[k] / c1) / (jnp.sqrt(v[k] / c2) + eps) for k in p}, (m, v, t)
    return update, lambda p: ({k: jnp.zeros_like(a) for k, a in p.items()},
                              {k: jnp.zeros_like(a) for k, a in p.items()}, jnp.float32(0))


def _classification_data(input_shape):
    rng = np.random.default_rng(0)  # the same draws as _classification_step: the same batch
    x = rng.standard_normal(input_shape).astype(np.float32)
    return x, rng.integers(0, 10, size=(input_shape[0],)).astype(np.int64)


def jax_cnn_step() -> Prepared:
    """`cnn` under jax.jit: lax convolutions (NCHW/OIHW, as PyTorch) and reduce_window max pooling."""
    jax, jnp = _jax()
    from jax import lax
    params = {k: jnp.asarray(v) for k, v in _reference_weights(make_cnn).items()}

    def conv_relu_pool(h, w, b):
        h = lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + b[None, :, None, None])
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_fn(p, x, y):
        h = conv_relu_pool(x, p["conv1.weight"], p["conv1.bias"])
        h = conv_relu_pool(h, p["conv2.weight"], p["conv2.bias"]).reshape(x.shape[0], -1)
        h = jax.nn.relu(h @ p["fc1.weight"].T + p["fc1.bias"])
        return _jax_cross_entropy(jax, jnp, h @ p["fc2.weight"].T + p["fc2.bias"], y)

    update, init = _jax_sgd_momentum(jnp, 0.001, 0.9)
    return _jax_step(loss_fn, params, *_classification_data((64, 3, 32, 32)), update, init)


def jax_lstm_step() -> Prepared:
    """`lstm` under jax.jit: the two LSTM layers as lax.scan over time (PyTorch's gate order i, f, g, o)."""
    jax, jnp = _jax()
    from jax import lax
    params = {k: jnp.asarray(v) for k, v in _reference_weights(make_lstm).items()}

    def layer(p, l, xs):  # xs: (T, B, F)
        wi, wh = p[f"lstm.weight_ih_l{l}"], p[f"lstm.weight_hh_l{l}"]
        b = p[f"lstm.bias_ih_l{l}"] + p[f"lstm.bias_hh_l{l}"]
        hidden = wh.shape[1]

        def cell(carry, xt):
            h, c = carry
            i, f, g, o = jnp.split(xt @ wi.T + h @ wh.T + b, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        zeros = jnp.zeros((xs.shape[1], hidden), xs.dtype)
        return lax.scan(cell, (zeros, zeros), xs)[1]

    def loss_fn(p, x, y):
        h = layer(p, 1, layer(p, 0, jnp.swapaxes(x, 0, 1)))
        return _jax_cross_entropy(jax, jnp, h[-1] @ p["fc.weight"].T + p["fc.bias"], y)

    update, init = _jax_adam(jnp, 1e-3)
    return _jax_step(loss_fn, params, *_classification_data((64, 32, 10)), update, init)


from . import kernels  # noqa: E402,F401  (registers the kernel workloads after the training ones)
