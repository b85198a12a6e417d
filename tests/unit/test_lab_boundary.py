"""The lab engine knows no component: only kubi.lab.platform may import the platform config.

Checked twice: statically (every import statement of an engine module, also those inside
functions) and at run time (importing the engine in a fresh interpreter loads none of them).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "kubi" / "lab"
ENGINE = ("__init__", "plan", "machine", "rootfs", "hosts", "kubernetes", "images", "mirror", "dns")
# What the engine must never load: components, the platform config, pyinfra's side.
FORBIDDEN = (
    "kubi.config", "kubi.graylog", "kubi.registry", "kubi.charts", "kubi.inventory",
    "kubi.deploy", "kubi.facts", "kubi.ops", "kubi.nginx", "kubi.secrets", "kubi.pki",
    "kubi.templates", "kubi.lab.platform", "deploys", "facts", "pyinfra", "pydantic",
)  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import; spell the module out"
            names |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return names


def _forbidden(names: set[str]) -> set[str]:
    return {n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}


def test_every_lab_module_is_either_engine_or_platform():
    assert {p.stem for p in LAB.glob("*.py")} == {*ENGINE, "platform"}


@pytest.mark.parametrize("module", ENGINE)
def test_engine_module_imports_only_the_standard_library_and_the_engine(module):
    names = _imports(LAB / f"{module}.py")
    lazily = {"kubi.lab.platform"} if module == "__init__" else set()  # loaded on first use
    assert _forbidden(names) - lazily == set()
    outside = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"kubi"}
    assert outside == set(), f"kubi.lab.{module} imports third-party {outside}"
    kubi = {n for n in names if n.startswith("kubi") and n not in ("kubi", "kubi.lab")}
    assert {n.split(".")[2] for n in kubi if n.startswith("kubi.lab.")} <= {*ENGINE, "platform"}
    assert all(n.startswith("kubi.lab.") for n in kubi), kubi


def test_the_platform_module_is_where_the_config_comes_in():
    names = _imports(LAB / "platform.py")
    assert {"kubi.config", "kubi.graylog"} <= names


def test_importing_and_using_the_engine_loads_no_component():
    """`kubi lab up/down/status` import exactly this: the engine, never the config."""
    code = (
        "import sys\n"
        "from kubi import lab\n"
        "from kubi.lab import hosts, machine, plan, rootfs\n"
        "lab.up, lab.down, lab.status, lab.leftovers, lab.check_route, lab.LAB_DIR\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "kubi.lab.hosts" in loaded
    assert _forbidden(set(loaded)) == set()


def test_the_platform_names_load_the_platform_on_first_use():
    code = (
        "import sys\n"
        "from kubi import lab\n"
        "assert 'kubi.config' not in sys.modules\n"
        "lab.platform_description, lab.person_key, lab.LAB_PEOPLE\n"
        "assert 'kubi.config' in sys.modules and 'kubi.lab.platform' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
