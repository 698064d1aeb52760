"""ARCHITECTURE §2: who may import whom, checked with an ast walk over every module."""

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
ASSESSMENT_STDLIB_ONLY_FORBIDDEN = {"os", "flask", "requests", "fhir", "sqlalchemy", "orjson", "time", "tomllib", "socket", "subprocess"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_layer_imports_only_layers_below_it(package):
    offenders = []
    for module in _modules(package):
        for name in _imports(module):
            if name in PACKAGES and name not in ALLOWED[package]:
                offenders.append(f"{module.relative_to(ROOT)} imports {name}")
            if name == "tests":
                offenders.append(f"{module.relative_to(ROOT)} imports tests")
    assert offenders == []


def test_assessment_is_pure():
    offenders = [
        f"{m.relative_to(ROOT)} imports {name}"
        for m in _modules("assessment")
        for name in _imports(m)
        if name in ASSESSMENT_STDLIB_ONLY_FORBIDDEN
    ]
    assert offenders == []


def test_no_module_is_a_grab_bag_named_utils_or_helpers():
    names = {m.stem for p in PACKAGES for m in _modules(p)}
    assert not names & {"utils", "helpers", "misc"}
