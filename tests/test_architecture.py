"""The pure packages import only what DESIGN.md allows (an allowlist; import-linter forbids)."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "advisor/engine": {"numpy", "pandas", "numba", "advisor"},
    "probes/agent": {"httpx", "prometheus_client", "pynvml", "kubernetes", "yaml", "probes"},
}
OWN_PREFIX = {"advisor/engine": "advisor.engine", "probes/agent": "probes.agent"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_it_keeps_the_pure_packages_pure(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            other_app = top in ("advisor", "probes") and not name.startswith(OWN_PREFIX[package])
            if other_app or top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert bad == []
