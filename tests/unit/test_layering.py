"""ARCHITECTURE §2: who may import whom, checked with an ast walk over every module.

``assessment`` is pure: it may import only the standard-library modules in
:data:`ASSESSMENT_STDLIB_ALLOWED` (no I/O, no clock, no environment), and may not call the clock
(``datetime.now()``, ``date.today()``…) or import by name at run time (``importlib``,
``__import__``). This is an allow-list on purpose: a forbidden-list misses what nobody thought of.
The self-tests at the bottom feed each known evasion through the checker and expect it caught.

Within the layers, no module imports one that imports it back, directly or through others
(:func:`_cycles`; e.g. a rule module and ``assessment/rules/situation.py``): every import,
also one inside a function or under ``TYPE_CHECKING``, is an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backpain_cds", "cds_hooks", "smart_launch", "fhir_mapping", "assessment", "knowledge")
#: package -> project packages it may import
ALLOWED = {
    "backpain_cds": {"backpain_cds", "cds_hooks", "smart_launch", "fhir_mapping", "assessment", "knowledge"},
    "cds_hooks": {"cds_hooks", "fhir_mapping", "assessment", "knowledge"},
    "smart_launch": {"smart_launch", "fhir_mapping", "assessment", "knowledge"},
    "fhir_mapping": {"fhir_mapping", "assessment", "knowledge"},
    "assessment": {"assessment"},
    "knowledge": set(),
}
#: Standard-library modules ``assessment`` may import: data structures, typing, text and maths.
#: Nothing here reads files, the network, the environment or the clock.
ASSESSMENT_STDLIB_ALLOWED = frozenset({
    "__future__", "abc", "bisect", "collections", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "heapq", "itertools", "math", "operator", "re", "statistics",
    "string", "types", "typing", "zoneinfo",
})
#: Calls that read the clock even though their module (``datetime``) is allowed.
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"})
#: Names that import by string, past any import check.
DYNAMIC_IMPORTS = frozenset({"__import__", "import_module", "exec", "eval"})
#: Code outside the packages that must not import ``tests`` either.
OTHER_CODE_DIRS = ("bench", "tools")
#: Import cycles that exist and are left for later (each a set of modules); any other fails.
KNOWN_CYCLES: list[set[str]] = []


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _impurities(source: str) -> list[str]:
    """Why ``source`` would not be pure enough for ``assessment`` (empty list = pure)."""
    tree = ast.parse(source)
    found = [f"imports {name}" for name in sorted(_imports(tree))
             if name not in PACKAGES and name not in ASSESSMENT_STDLIB_ALLOWED]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in CLOCK_CALLS:
                found.append(f"line {node.lineno}: calls {name}() (the clock)")
            if name in DYNAMIC_IMPORTS:
                found.append(f"line {node.lineno}: calls {name}() (import/eval by string)")
        elif isinstance(node, ast.Name) and node.id in DYNAMIC_IMPORTS:
            found.append(f"line {node.lineno}: refers to {node.id}")
    return found


def _module_imports(sources: dict[str, str], packages: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """Module name -> the modules among ``sources`` it imports (``from p import m`` counts as m
    when m is a module, else as p; relative imports are resolved, ``packages`` naming the
    modules that are packages)."""
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        deps = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in sources)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    parts = name.split(".") if name in packages else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    module = ".".join(parts + ([module] if module else []))
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    if submodule in sources:
                        deps.add(submodule)
                    elif module in sources:
                        deps.add(module)
        deps.discard(name)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for dep in sorted(graph[module]):
            if dep not in index:
                visit(dep)
                low[module] = min(low[module], low[dep])
            elif dep in stack:
                low[module] = min(low[module], index[dep])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(directory: str):
    return sorted(p for p in (ROOT / directory).rglob("*.py") if ".venv" not in p.parts)


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_layer_imports_only_layers_below_it(package):
    offenders = []
    for module in _modules(package):
        for name in _imports(_parse(module)):
            if name in PACKAGES and name not in ALLOWED[package]:
                offenders.append(f"{module.relative_to(ROOT)} imports {name}")
            if name == "tests":
                offenders.append(f"{module.relative_to(ROOT)} imports tests")
    assert offenders == []


@pytest.mark.parametrize("directory", OTHER_CODE_DIRS)
def test_nothing_outside_tests_imports_tests(directory):
    offenders = [f"{m.relative_to(ROOT)} imports tests"
                 for m in _modules(directory) if "tests" in _imports(_parse(m))]
    assert offenders == []


def test_no_module_imports_one_that_imports_it_back():
    modules = [m for p in PACKAGES for m in _modules(p)]
    sources = {_module_name(m): m.read_text(encoding="utf-8") for m in modules}
    packages = frozenset(_module_name(m) for m in modules if m.name == "__init__.py")
    cycles = _cycles(_module_imports(sources, packages))
    assert [c for c in cycles if c not in KNOWN_CYCLES] == []
    assert [c for c in KNOWN_CYCLES if c not in cycles] == [], "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_the_cycle_check_catches_a_cycle_through_a_function_level_import():
    sources = {
        "assessment.rules.situation": "def build():\n    from assessment.rules import mscc_red_flags\n",
        "assessment.rules.mscc_red_flags": "from assessment.rules.situation import build\n",
        "assessment.rules": "",
        "assessment.engine": "from assessment.rules import mscc_red_flags\n",
    }
    assert _cycles(_module_imports(sources)) == [{"assessment.rules.situation", "assessment.rules.mscc_red_flags"}]


def test_the_cycle_check_resolves_relative_imports():
    sources = {
        "fhir_mapping": "",
        "fhir_mapping.extract": "from .matchconfig import load\n",
        "fhir_mapping.matchconfig": "def load():\n    from . import extract\n",
    }
    packages = frozenset({"fhir_mapping"})
    assert _cycles(_module_imports(sources, packages)) == [{"fhir_mapping.extract", "fhir_mapping.matchconfig"}]


def test_assessment_is_pure():
    offenders = [f"{m.relative_to(ROOT)}: {why}"
                 for m in _modules("assessment") for why in _impurities(m.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.parametrize("evasion", [
    "import msgspec",
    "from pathlib import Path\nimport json\n",
    "from datetime import datetime\nstamp = datetime.now()\n",
    "import datetime\nstamp = datetime.date.today()\n",
    "import importlib\nmod = importlib.import_module('os')\n",
    "mod = __import__('os')\n",
    "from os import environ\n",
    "import time\n",
])
def test_the_purity_check_catches_each_known_evasion(evasion):
    assert _impurities(evasion), evasion


def test_the_purity_check_passes_pure_code():
    assert _impurities("from datetime import datetime, timedelta\nfrom assessment.facts import Facts\n"
                       "def later(t: datetime) -> datetime:\n    return t + timedelta(days=1)\n") == []


def test_no_module_is_a_grab_bag_named_utils_or_helpers():
    names = {m.stem for p in PACKAGES for m in _modules(p)}
    assert not names & {"utils", "helpers", "misc"}
