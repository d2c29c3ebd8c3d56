"""The test suite itself: no assertion that cannot fail.

`assert (x and y) or None == det` parses as `(x and y) or (None == det)`: any
truthy left side passes. This flags an `or` inside an assert with a comparison
whose left side is a literal (`None == det`), or a literal operand (`x or True`)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT


def suspicious_asserts(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        for sub in ast.walk(node.test):
            if not (isinstance(sub, ast.BoolOp) and isinstance(sub.op, ast.Or)):
                continue
            for operand in sub.values:
                literal_left = (isinstance(operand, ast.Compare) and isinstance(operand.left, ast.Constant)
                                and isinstance(operand.ops[0], (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)))
                if literal_left or isinstance(operand, ast.Constant):
                    found.append(f"line {node.lineno}: assert {ast.unparse(node.test)}")
    return found


def test_the_checker_finds_the_reviewed_pattern():
    assert suspicious_asserts('assert ("x" and str(name)) or None == det')
    assert not suspicious_asserts('assert (str(name) if "x" else None) == det')


def suite_files() -> list:
    """Every Python file of the tests and benchmarks, in every sub-folder (tests/faults/ too)."""
    return sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))


def test_no_assert_in_tests_or_benchmarks_is_vacuous():
    files = suite_files()
    assert ROOT / "tests" / "faults" / "test_bad_inputs.py" in files  # sub-folders are read
    problems = {str(p.relative_to(ROOT)): found for p in files if (found := suspicious_asserts(p.read_text()))}
    assert problems == {}
