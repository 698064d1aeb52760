"""The migration scripts ship inside the package: ``pip install .`` (not only an editable
checkout) can migrate. setuptools' own ``build_py`` step (what goes into the wheel) runs on a
copy of the sources; the built tree alone then migrates a database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "backpain_cds", "cds_hooks", "fhir_mapping", "assessment",
           "smart_launch", "knowledge")

BUILD = """
from setuptools.dist import Distribution
from setuptools.config.pyprojecttoml import apply_configuration
dist = apply_configuration(Distribution({"script_name": "setup.py"}), "pyproject.toml")
dist.get_command_obj("build").build_base = "out"
dist.run_command("build_py")
"""

MIGRATE = """
import sys
import sqlalchemy as sa
import backpain_cds
from backpain_cds import schema
engine = sa.create_engine(sys.argv[1])
print(backpain_cds.__file__)
print(schema.upgrade(engine)[1].state.value)
"""


def _files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_built_package_carries_every_migration_file_and_migrates(tmp_path):
    pytest.importorskip("setuptools", reason="setuptools is not installed in this environment")
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                        if (ROOT / name).is_dir() else {}))
    built = subprocess.run([sys.executable, "-W", "ignore", "-c", BUILD], cwd=src, check=False,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    lib = src / "out" / "lib"
    assert _files(lib / "backpain_cds" / "migrations") == _files(ROOT / "backpain_cds" / "migrations")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = subprocess.run([sys.executable, "-c", MIGRATE, f"sqlite:///{elsewhere / 'db.sqlite3'}"],
                         cwd=elsewhere, check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(lib)})
    assert ran.returncode == 0, ran.stderr
    module_file, state = ran.stdout.splitlines()
    assert Path(module_file).is_relative_to(lib)  # the built tree, not the checkout
    assert state == "current"
