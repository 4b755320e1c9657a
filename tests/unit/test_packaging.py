"""The distribution carries every module of the package, not only what an editable install sees."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_every_folder_with_python_or_data_is_a_package_the_build_finds() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_packages(str(ROOT), **config["packages"]["find"]))
    folders = {
        ".".join(d.relative_to(ROOT).parts)
        for d in (ROOT / "datomic_aws").rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(f.is_file() for f in d.iterdir())
    } | {"datomic_aws"}
    # A folder without __init__.py would be skipped by the build although its files ship nowhere.
    assert folders == found
    for package, patterns in config["package-data"].items():
        folder = ROOT.joinpath(*package.split("."))
        assert all(any(folder.glob(p)) for p in patterns), package
