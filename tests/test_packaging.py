"""One distribution, one import namespace: ``dpkit`` (its subpackages map the repository's top-level folders)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _folder_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the mapped roots, by its import name."""
    names = set()
    for name, folder in _config()["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            names.add(".".join([name, *rel.parts]))
    return names


def test_every_package_folder_is_listed():
    listed = set(_config()["packages"])
    assert listed == _folder_packages()


def test_only_dpkit_is_a_top_level_package():
    assert {p.split(".")[0] for p in _config()["packages"]} == {"dpkit"}


@pytest.mark.multiprocess
def test_old_top_level_names_are_not_importable_outside_the_repository(tmp_path):
    code = (
        "import importlib.util, dpkit.accountants, dpkit.mechanisms, dpkit.audits.ldp\n"
        "print([importlib.util.find_spec(n) is None for n in ('accountants', 'mechanisms', 'audits')])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True, True, True]"


@pytest.mark.multiprocess
def test_top_level_names_import_on_first_use():
    """``dpkit`` exports its training names lazily (PEP 562): same objects, torch loaded only when one is used."""
    code = (
        "import sys, dpkit\n"
        "before = 'torch' in sys.modules\n"
        "from dpkit import PrivacyEngine\n"
        "from dpkit.privacy_engine import PrivacyEngine as defined\n"
        "print(before, 'torch' in sys.modules, PrivacyEngine is defined is dpkit.PrivacyEngine)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_top_level_exports():
    import dpkit

    namespace: dict = {}
    exec("from dpkit import *", namespace)
    assert set(dpkit.__all__) <= set(namespace)
    assert set(dpkit.__all__) <= set(dir(dpkit))
    for name in dpkit.__all__:
        assert getattr(dpkit, name).__name__ == name
    with pytest.raises(AttributeError, match="no_such_name"):
        dpkit.no_such_name  # noqa: B018
