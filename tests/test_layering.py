"""Layers point down only: every import of every dpkit module (read from the source, imports inside functions too).

From the bottom: the accountants; the LDP mechanisms; then, side by side and blind to each other, the audits and
private training (``dpkit`` outside its subpackages); the application layer (the command line) on top. Option
parsing (click) lives in the application layer only. A new package joins by a row in ``LAYERS``; a module belongs
to the layer of its longest matching prefix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]

# layer -> (rank, module prefixes). A module may import its own layer and any layer of lower rank; two layers of
# the same rank may not import each other.
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "accountants": (0, ("dpkit.accountants",)),
    "mechanisms": (1, ("dpkit.mechanisms",)),
    "audits": (2, ("dpkit.audits",)),
    "training": (2, ("dpkit",)),
    "application": (3, ("dpkit.cli",)),
}
# third-party package -> the only layers that may import it
RESTRICTED: dict[str, set[str]] = {"click": {"application"}}


def _modules() -> dict[str, Path]:
    """Every module of the distribution by its import name (from pyproject's package-dir mapping)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    modules = {}
    for name, folder in package_dir.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = [*name.split("."), *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def layer_of(module: str) -> str | None:
    best, best_len = None, -1
    for layer, (_, prefixes) in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    return best


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code (functions, ``if TYPE_CHECKING`` blocks)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


def test_every_module_has_a_layer():
    assert MODULES, "no module found"
    assert {m for m in MODULES if layer_of(m) is None} == set()
    for layer in LAYERS:  # no empty row: a renamed package must be renamed here too
        assert any(layer_of(m) == layer for m in MODULES), layer


def test_imports_are_read_inside_functions_too():
    """The reader sees a lazy import in a function body (dpkit.cli.account imports its report tables there)."""
    assert "dpkit.cli.report" in imports_of("dpkit.cli.account")
    assert "dpkit.accountants" in imports_of("dpkit.cli.report")


def _allowed(src: str, dst: str) -> bool:
    return src == dst or LAYERS[dst][0] < LAYERS[src][0]


def test_layers_point_down_only():
    bad = []
    for module in sorted(MODULES):
        src = layer_of(module)
        for target in sorted(imports_of(module)):
            if target.split(".")[0] != "dpkit":
                continue
            dst = layer_of(target)
            assert src is not None and dst is not None
            if not _allowed(src, dst):
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    assert bad == []


def test_audits_and_training_are_blind_to_each_other():
    assert not _allowed("audits", "training") and not _allowed("training", "audits")


def test_restricted_packages_stay_in_their_layers():
    bad = []
    for module in sorted(MODULES):
        for target in imports_of(module):
            allowed = RESTRICTED.get(target.split(".")[0])
            if allowed is not None and layer_of(module) not in allowed:
                bad.append(f"{module} ({layer_of(module)}) imports {target}")
    assert bad == []
