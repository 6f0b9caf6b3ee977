"""kiln in one page: eager tensors with autograd, then the same function compiled.

Run: python examples/quickstart.py
"""
import kiln


def mlp_loss(x, w1, b1, w2, target):
    h = (x @ w1 + b1).relu()
    logits = h @ w2
    return ((logits.softmax(dim=-1) - target) ** 2).mean()


kiln.manual_seed(0)
x = kiln.randn(8, 16)
w1 = kiln.randn(16, 32, requires_grad=True)
b1 = kiln.zeros(32, requires_grad=True)
w2 = kiln.randn(32, 4, requires_grad=True)
target = kiln.one_hot(kiln.randint(0, 4, (8,)), 4).float()

# Eager: runs immediately, records a tape for backward().
loss = mlp_loss(x, w1, b1, w2, target)
loss.backward()
print("eager loss:   ", loss.item())
print("eager dL/db1[:4]:", b1.grad[:4])

# The traced graph: what kiln.compile will run (one line per primitive).
print(kiln.make_graph(mlp_loss)(x, w1.detach(), b1.detach(), w2.detach(), target))

# Compiled: traced once per input signature, then the cached graph runs.
compiled = kiln.compile(mlp_loss)
with kiln.no_grad():
    out = compiled(x, w1, b1, w2, target)
    out = compiled(x, w1, b1, w2, target)
print("compiled loss:", out.item())
print(compiled.cache_info())
assert abs(out.item() - loss.item()) < 1e-6
