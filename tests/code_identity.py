"""Code identity: a cached computation's key holds its class's `code_version`,
so a change to what the class computes with must either bump that version
(its entries are keyed anew) or say, in tests/code_identity.json, why its
results cannot change. tests/test_code_identity.py holds the tree to that.

What a class computes with: its own module, its bases' in the computation
packages (COMPUTATION; not the cache engine), the modules it declares in
`computes_with` (the runtimes, input decoding, what goes into its keys), and
every module of the computation packages they import, directly or lazily,
found by reading the imports (ast). A module's identity is its syntax tree without
docstrings, so comments and layout change nothing.

    python tests/code_identity.py                 # record after bumping versions
    python tests/code_identity.py --why "TEXT"    # record a change that leaves results as they were
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).with_name("code_identity.json")
# Where pre-processing, networks, decoding, drawing, filters and tracking live.
COMPUTATION = ("runner.native.", "runner.models.", "runner.backends.export", "runner.boxes", "runner.filters",
               "runner.tracking", "runner.formats", "runner.evaluation")
NOT_COMPUTATION = ("runner.models.fabricate", "runner.models.registry", "runner.models.__main__")


def versioned() -> dict[str, type]:
    """Every class whose `code_version` is in cache keys: the model families'
    estimators (both engines) and the cached steps."""
    sys.path.insert(0, str(ROOT))
    from runner.families import FAMILIES, STEPS
    classes = {c for row in FAMILIES.values() for c in (row.reference, row.native) if c is not None}
    classes |= {c for c in STEPS.values() if hasattr(c, "code_version")}
    return {f"{c.__module__}.{c.__qualname__}": c for c in sorted(classes, key=lambda c: c.__qualname__)}


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(name: str) -> set[str]:
    """The runner modules `name` imports anywhere in its text."""
    tree = ast.parse(module_file(name).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {n for n in found if n.startswith("runner") and module_file(n)}


def computes_with(cls: type) -> list[str]:
    """The modules `cls` computes with (see the module's docstring): found by
    reading imports, and those it declares (`computes_with`: the runtimes'
    sessions, decoding of inputs, what goes into keys)."""
    declared = [m for c in cls.__mro__ for m in getattr(c, "computes_with", ())]
    todo = [cls.__module__, *(c.__module__ for c in cls.__mro__ if c.__module__.startswith(COMPUTATION)), *declared]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [n for n in imported(name) if n.startswith(COMPUTATION) and not n.startswith(NOT_COMPUTATION)]
    return sorted(seen)


def identity(name: str) -> str:
    """The module's syntax tree without docstrings (runner.hashing.source_fingerprint)."""
    from runner.hashing import source_fingerprint
    return source_fingerprint(str(module_file(name)))


def current() -> dict[str, dict]:
    return {name: {"version": cls.code_version, "sources": {m: identity(m) for m in computes_with(cls)}}
            for name, cls in versioned().items()}


def problems(recorded: dict, now: dict) -> list[str]:
    """One line per class whose computation changed while its version did not."""
    lines = []
    for name, entry in now.items():
        old = recorded.get(name)
        if old is None:
            lines.append(f"{name} is not in tests/code_identity.json: run python tests/code_identity.py")
            continue
        changed = sorted(m for m, d in entry["sources"].items() if old["sources"].get(m) != d)
        changed += sorted(set(old["sources"]) - set(entry["sources"]))
        if changed and entry["version"] == old["version"]:
            lines.append(f"{name} computes with {', '.join(changed)}, which changed, but its code_version is "
                         f"still {entry['version']}: bump it (its cache entries are keyed anew) or, if its results "
                         "cannot change, say why: python tests/code_identity.py --why 'TEXT'")
    return lines


def record(why: str | None) -> list[str]:
    """Write the record; the classes that needed a reason and got none."""
    recorded = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    needing = [line.split(" ", 1)[0] for line in problems(recorded, current()) if "code_version is still" in line]
    if needing and not why:
        return needing
    out = {}
    for name, entry in current().items():
        old = recorded.get(name, {})
        kept = old.get("unchanged", []) if old.get("version") == entry["version"] else []
        if name in needing:
            changed = sorted(m for m, d in entry["sources"].items() if old["sources"].get(m) != d)
            kept = [*kept, {"why": why, "changed": changed}]
        out[name] = {**entry, "unchanged": kept}
    RECORD.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return []


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--why", help="why the changed computations' results are unchanged")
    missing = record(parser.parse_args().why)
    if missing:
        sys.exit(f"{', '.join(missing)} changed without a new code_version: bump it, or pass --why 'TEXT'")
