"""Every environment variable the server reads is in `.env.example` and README's table.

The names are collected by parsing the source with `ast`: the `env_*("NAME", ...)` helper
calls in `config/` and `os.environ.get("NAME")` / `os.environ["NAME"]` / `os.getenv("NAME")`
in `config/`, `dashboard/`, `advisor/` (engine included) and `probes/`. `probes/agent/` is
configured by its CLI and config file, not the environment; it is checked separately so a
variable it starts reading is documented in README's agent section instead. Test-only
variables (`CI`, `TEST_REDIS_URL`, `GCA_*` of the test support) are read under `tests/` only.
"""

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("config", "dashboard", "advisor", "probes")
AGENT = ROOT / "probes" / "agent"


def _is_os_environ(node: ast.expr) -> bool:
    # os.environ, or a bare `environ` imported from os
    if isinstance(node, ast.Attribute) and node.attr == "environ":
        return isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _constant_str(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _reads_environment(func: ast.expr, *, env_helpers: bool) -> bool:
    """Whether a call to `func` reads the variable named by its first argument."""
    if isinstance(func, ast.Attribute):
        if func.attr == "get":
            return _is_os_environ(func.value)
        if func.attr == "getenv":
            return isinstance(func.value, ast.Name) and func.value.id == "os"
        return env_helpers and func.attr.startswith("env_")
    if isinstance(func, ast.Name):
        return func.id == "getenv" or (env_helpers and func.id.startswith("env_"))
    return False


def _names_read(tree: ast.AST, *, env_helpers: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        name: str | None = None
        if isinstance(node, ast.Call) and node.args:
            if _reads_environment(node.func, env_helpers=env_helpers):
                name = _constant_str(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            name = _constant_str(node.slice)
        if name is not None:
            names.add(name)
    return names


def _python_files(folder: Path) -> Iterable[Path]:
    return (path for path in sorted(folder.rglob("*.py")) if "__pycache__" not in path.parts)


def server_variables() -> set[str]:
    names: set[str] = set()
    for package in SERVER_PACKAGES:
        for path in _python_files(ROOT / package):
            if AGENT in path.parents:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            names |= _names_read(tree, env_helpers=package == "config")
    return names


def agent_variables() -> set[str]:
    names: set[str] = set()
    for path in _python_files(AGENT):
        names |= _names_read(ast.parse(path.read_text(), filename=str(path)), env_helpers=False)
    return names


def env_example_names() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def readme_table_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_it_finds_the_variables_the_settings_and_the_report_renderer_read() -> None:
    # Guards the collector itself: a parser that found nothing would pass the checks below.
    found = server_variables()
    assert {"DEBUG", "DATABASE_URL", "EMAIL_HOST_PASSWORD", "BROWSER_PATH"} <= found
    assert not {"CI", "TEST_REDIS_URL"} & found


def test_it_lists_every_server_variable_in_env_example() -> None:
    undocumented = server_variables() - env_example_names()
    assert undocumented == set(), f"add to .env.example: {sorted(undocumented)}"


def test_it_lists_every_server_variable_in_the_readme_table() -> None:
    undocumented = server_variables() - readme_table_names()
    assert undocumented == set(), f"add to README's environment table: {sorted(undocumented)}"


def test_it_finds_no_environment_reads_in_the_agent() -> None:
    # The agent takes --flags or its YAML config; a variable read here would belong in
    # README's agent section, not in the server's .env.example.
    assert agent_variables() == set()
