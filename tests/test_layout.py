"""Test modules share code through tests/helpers/, never by importing each other: importing a test
module runs its collection-time code a second time under another name and makes pytest collect
its tests twice or not at all when files are run alone."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(name: str) -> bool:
    return name.split(".")[-1].startswith("test_") and name.removeprefix("tests.").count(".") == 0


def imported_test_modules(tree: ast.AST) -> list[str]:
    """Names of test modules imported anywhere in ``tree`` (top level or inside a function)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if _is_test_module(base):
                found.append(base)
            elif base in ("", "tests"):     # from tests import test_x / from . import test_x
                found += [a.name for a in node.names if a.name.startswith("test_")]
    return found


def test_no_test_module_imports_another():
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 20, files
    offenders = {}
    for path in files:
        names = imported_test_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if names:
            offenders[path.name] = names
    assert not offenders, "test modules importing other test modules (move the shared code to " \
        f"tests/helpers/): {offenders}"


def test_the_check_sees_each_form_of_import():
    forms = ["import test_workflow as tw", "from test_datasets import make_mvtec_ad2",
             "from tests.test_params import FLAGS", "from tests import test_reliability",
             "def f():\n    from test_workflow import dry_run"]
    for source in forms:
        assert imported_test_modules(ast.parse(source)), source
    for source in ["from tests.helpers.workflow_runner import dry_run", "import pytest",
                   "from tests.helpers import workflow_runner", "from rd import params"]:
        assert not imported_test_modules(ast.parse(source)), source
