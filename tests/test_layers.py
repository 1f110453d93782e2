"""The package's layers, read from its import statements: core <- data <- papers <- book.

``core`` never imports ``data``, ``papers`` or ``book``; ``papers`` never import ``book``; every
package ``__init__`` only re-exports; every module stays under 600 lines.
"""
from __future__ import annotations

import ast

import pytest

from paragraph_planning import cache

ROOT = cache.PACKAGE_ROOT
PKG = "paragraph_planning"
ALLOWED = {  # layer -> layers its modules may import (besides itself)
    "util": set(),
    "cache": {"util"},
    "charts": {"util"},
    "prose": set(),
    "core": {"util", "cache"},
    "data": {"util", "cache", "core"},
    "papers": {"util", "cache", "core", "data", "charts", "prose"},
    "workshop": {"util", "cache", "core", "data", "papers", "charts", "prose"},
    "book": {"util", "cache", "core", "data", "papers", "charts", "prose", "workshop"},
}
MODULES = sorted(
    ".".join([PKG, *f.relative_to(ROOT).with_suffix("").parts]).removesuffix(".__init__")
    for f in ROOT.rglob("*.py") if "__pycache__" not in f.parts
)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PKG


@pytest.mark.parametrize("module", [m for m in MODULES if layer(m) in ALLOWED], ids=lambda m: m)
def test_imports_respect_the_layers(module):
    own = layer(module)
    bad = sorted(m for m in cache._imports(module, ROOT) if layer(m) != own and layer(m) not in ALLOWED[own])
    assert not bad, f"{module} ({own}) imports {bad}; {own} may import only {sorted(ALLOWED[own]) or 'nothing'}"


def test_the_rule_catches_a_violation(tmp_path):
    """The check above reads real imports: a core module importing the book would be caught."""
    import shutil

    root = tmp_path / PKG
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "core" / "bad.py").write_text("def f():\n    from ..book import runner\n    return runner\n")
    assert "paragraph_planning.book.runner" in cache._imports("paragraph_planning.core.bad", root)


LAZY = {"__getattr__", "__dir__"}  # the top-level package re-exports lazily (PEP 562), nothing else


@pytest.mark.parametrize("init", sorted(ROOT.rglob("__init__.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_package_inits_only_reexport(init):
    top = init.parent == ROOT
    for node in ast.parse(init.read_text()).body:
        targets = [getattr(t, "id", "") for t in node.targets] if isinstance(node, ast.Assign) else []
        ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or targets == ["__all__"] or (
            top and (targets == ["_EXPORTS"] or (isinstance(node, ast.FunctionDef) and node.name in LAZY)))
        assert ok, f"{init}: line {node.lineno} defines code; package __init__ files only re-export"


def test_the_top_level_exports_every_name_lazily_from_its_module():
    import importlib
    import subprocess
    import sys

    import paragraph_planning as pp

    for name, module in pp._EXPORTS.items():
        assert getattr(pp, name) is getattr(importlib.import_module(f"{PKG}.{module}"), name), name
    assert sorted(pp.__all__) == sorted(pp._EXPORTS) and set(pp.__all__) <= set(dir(pp))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pp.nope  # noqa: B018
    # importing the package (as the command line does) loads neither torch nor transformers
    code = "import sys, paragraph_planning.book.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize("path", sorted(f for f in ROOT.rglob("*.py") if "__pycache__" not in f.parts),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n < 600, f"{path.relative_to(ROOT)} has {n} lines: split it by what its parts do"
