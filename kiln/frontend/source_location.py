"""Where in the user's code something happened: the first stack frame outside the kiln package."""
from __future__ import annotations

import os
import sys

_KILN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_location(depth: int = 1) -> str:
    """'file:line' of the innermost stack frame outside the kiln package (the user's code)."""
    f = sys._getframe(depth)
    while f is not None:
        fn = f.f_code.co_filename
        if not os.path.abspath(fn).startswith(_KILN_DIR + os.sep) and not fn.startswith("<frozen"):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"
