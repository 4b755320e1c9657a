"""The package's shape, as issue 12 set it: no module over 500 lines, no function over 60, and only
the command layer imports click or prints (README, Architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "datomic_aws"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# The command layer and the shell-completion module, which uses click's own protocol (it prints
# nothing); the sandbox is the demo's, a command of its own.
CLICK_ALLOWED = {"cli.py", "app/completion.py"}


def _modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 50
    return found


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}


def test_only_the_command_layer_imports_click() -> None:
    importers = set()
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("sandbox/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "click" or n.startswith("click.") for n in names):
                importers.add(rel)
    assert importers <= CLICK_ALLOWED, importers - CLICK_ALLOWED
    assert "cli.py" in importers
