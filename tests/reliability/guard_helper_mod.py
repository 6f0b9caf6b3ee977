"""A user module whose globals a compiled function reads through `mod.attr` (test_guards)."""
FACTOR = 2.0


def scaled(x):
    return x * FACTOR
