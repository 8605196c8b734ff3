"""The house rules of ../shared/DESIGN.md, checked on the source itself.

- Inside a feature only its Dagster wiring (assets, sensors, schedules, resources, partitions,
  definitions) imports Dagster: every other module imports with Dagster blocked.
- The environment is read in settings, the CLIs and the harness only.
- Nobody imports another feature's `_private` name; the package has no import cycles.
- No module is over 600 lines.
Each scanner is also run on a planted violation, so a check that stopped seeing would fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atge_assets"
WIRING = {"assets", "sensors", "schedules", "resources", "partitions", "definitions"}
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def feature_of(module: str) -> str:
    """`atge_assets.load.engine` -> `load`; the package's own top-level modules are `atge_assets`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "atge_assets"


def is_wiring(module: str) -> bool:
    return module.rsplit(".", 1)[-1] in WIRING


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, source: str, is_package: bool = False) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the source."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            out += [(target, a.name, node.lineno) for a in node.names]
    return out


def env_reads(source: str) -> list[int]:
    """Lines that read the process environment (os.environ, os.getenv, os.environ.get, ...)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "getenv", "environb") for a in node.names):
            lines.append(node.lineno)
    return lines


def env_allowed(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module == "atge_assets.settings" or last == "cli" or feature_of(module) == "harness"


def private_cross_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    bad = []
    for target, name, line in imports(module, source, is_package):
        if not target.startswith("atge_assets"):
            continue
        other = feature_of(target if name is None or target.count(".") > 1
                           else f"{target}.{name}")
        names = target.split(".") + ([name] if name else [])
        private = [n for n in names[1:] if n.startswith("_") and n != "__init__"]
        if private and other != feature_of(module):
            bad.append(f"{module}:{line} imports {'.'.join(names)}")
    return bad


def top_level_imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """Modules of the package imported at module level (lazy imports inside functions are how
    a cycle is deliberately broken, so they do not count)."""
    out = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("atge_assets")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


# -- the package ---------------------------------------------------------------------------------
def test_logic_modules_import_without_dagster():
    logic = [m for m in modules() if not is_wiring(m)
             and m not in ("atge_assets.definitions", "atge_assets.lib.resources")]
    assert "atge_assets.load.engine" in logic and "atge_assets.load.assets" not in logic
    code = ("import importlib, sys\nsys.modules['dagster'] = None\nbad = []\n"
            f"for m in {logic!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except ImportError as e:\n        bad.append(f'{m}: {e}')\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, timeout=300)
    assert out.returncode == 0, "these import Dagster:\n" + out.stdout + out.stderr[-2000:]


def test_the_environment_is_read_only_in_settings_clis_and_harness():
    bad = [f"{m}:{line}" for m, p in modules().items() if not env_allowed(m)
           for line in env_reads(p.read_text())]
    assert not bad, f"environment read outside settings.py, cli.py and harness/: {bad}"


def test_no_private_imports_across_features():
    bad = [b for m, p in modules().items()
           for b in private_cross_imports(m, p.read_text(), p.name == "__init__.py")]
    assert not bad, bad


def test_no_import_cycles():
    mods = modules()
    graph = {m: {t for t in top_level_imports(m, p.read_text(), p.name == "__init__.py")
                 if t in mods and t != m}
             for m, p in mods.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_module_over_600_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    assert not {m: n for m, n in sizes.items() if n > MAX_LINES}


def test_every_feature_has_its_folder_and_wiring():
    for feature in ("deployments", "trends", "load", "abtest", "monitoring", "notify"):
        assert (PACKAGE / feature / "definitions.py").exists(), feature
    assert not (PACKAGE / "core").exists() and not (PACKAGE / "defs").exists()


# -- the scanners see what they must (so the checks above can fail) --------------------------------
@pytest.mark.parametrize("source", [
    "import os\nx = os.environ['A']\n", "import os\nx = os.getenv('A')\n",
    "from os import environ\n", "import os\nx = os.environ.get('A', 1)\n",
])
def test_env_scanner_sees_a_read(source):
    assert env_reads(source)


def test_env_scanner_ignores_a_mapping_argument():
    assert not env_reads("def f(env):\n    return env.get('ATGE_X')\n")
    assert env_allowed("atge_assets.settings") and env_allowed("atge_assets.abtest.cli")
    assert not env_allowed("atge_assets.abtest.settings")


def test_private_scanner_sees_a_cross_feature_import():
    src = "from atge_assets.deployments.assets import _resolve\n"
    assert private_cross_imports("atge_assets.load.assets", src)
    assert not private_cross_imports("atge_assets.deployments.sensors", src)
    assert private_cross_imports("atge_assets.load.assets",
                                 "from atge_assets.deployments import _helpers\n")
    assert not private_cross_imports("atge_assets.load.assets",
                                     "from atge_assets.deployments.assets import resolve\n")


def test_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "atge_assets.lib.history.schema" in top_level_imports(
        "atge_assets.lib.history.engine", "from atge_assets.lib.history.schema import md\n")
    assert "atge_assets.lib.http" in top_level_imports(
        "atge_assets.load.engine", "from ..lib import http\n")


def test_dagster_blocking_is_real():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['dagster'] = None; "
                          "import atge_assets.load.assets"], capture_output=True, text=True,
                         cwd=PACKAGE.parent, timeout=120)
    assert out.returncode != 0 and "dagster" in out.stderr
