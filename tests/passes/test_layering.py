"""A lower layer never imports a higher one: kiln.ir imports nothing else of kiln, kiln.passes
only kiln.ir (so e.g. run_plan, an interpreter, lives in kiln.runtime), kiln.codegen only
kiln.ir and kiln.passes (it reads the fusion plan). kiln.config imports nothing of kiln, so
every layer may read its settings."""
import ast
import pathlib

import pytest

import kiln

KILN = pathlib.Path(kiln.__file__).parent
ALLOWED = {"ir": {"ir", "config"}, "passes": {"ir", "passes", "config"},
           "codegen": {"ir", "passes", "codegen", "config"}}


def _kiln_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, top-level kiln subpackage) of every kiln import in `path`."""
    package = list(path.relative_to(KILN).parts[:-1])
    out = []
    if path.name == "config.py":
        package = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            names = base + (node.module.split(".") if node.module else [])
            if not names:  # `from .. import x` at the top of kiln
                names = [a.name for a in node.names][:1]
            out.append((node.lineno, names[0]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kiln."):
            out.append((node.lineno, node.module.split(".")[1]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("kiln.")]
    return out


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_lower_layers(layer):
    bad = [f"{p.relative_to(KILN)}:{line} imports kiln.{top}"
           for p in sorted((KILN / layer).rglob("*.py")) for line, top in _kiln_imports(p)
           if top not in ALLOWED[layer]]
    assert not bad, "\n".join(bad)


def test_config_imports_nothing_of_kiln():
    assert not _kiln_imports(KILN / "config.py")
