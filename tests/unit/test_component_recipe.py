"""The README's recipe for a new component, followed for a tiny one in a copy of the project.

The steps are exactly those of README.md ("Adding a component"): an entry in
kubi/components.py, deploys/<name>.py, templates/<name>/, a settings model in
kubi/config/<name>.py with its field in Settings, and its tests. Then, in that copy:
the config takes the new section (and refuses a typo in it), `deploys/all.py` runs the
new component in the list's order, and its verification suite is found and aimed at the
hosts of its roles. Nothing else of the project is touched: if a step were missing from
the recipe, one of these checks would fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache")

ENTRY = """
    Component(
        "motd",
        "the platform's name in every host's login message",
        roles=ALL_ROLES,
        settings="motd",
    ),
)
"""

SETTINGS = '''
"""Settings of the login message (deploys/motd.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from kubi.config.types import Section


class MotdSettings(Section):
    """What every host says at login."""

    greeting: Annotated[str, Field(pattern=r"^[A-Za-z0-9 ,.!-]{1,60}$")] = "Welcome"
'''

DEPLOY = '''
"""motd: the platform's name in every host's login message.

    pyinfra inventories/<env>.py deploys/motd.py
"""

from kubi import ops
from kubi.deploy import component, entry_script, me, platform
from kubi.templates import render


@component("motd")
def motd() -> None:
    cfg = platform()
    ops.file(
        name="login message",
        path="/etc/motd",
        content=render("motd", "motd", greeting=cfg.motd.greeting, platform=cfg.name,
                       host=me().short_name),
    )


if entry_script(__name__):
    motd()
'''

TEMPLATE = "{{ greeting }} on {{ host }}, a host of platform {{ platform }}.\n"

VERIFY = '''
"""motd: every host names its platform at login."""


def test_login_message(node, platform, spec):
    assert platform.name in node.file("/etc/motd").content_string
'''

PLAN = '''
"""Plans of deploys/motd.py."""

from .harness import plan, uploads


def test_fresh_host(description):
    facts = {"kubi.facts.ManagedFile": {"path=/etc/motd": None}}
    written = uploads(plan("deploys/motd.py", "w1", description, facts))
    assert written == {"/etc/motd": "Welcome on w1, a host of platform plan.\\n"}
'''

# Everything else of the platform off: the plan of all.py then needs no other facts.
PROBE = """
import json, sys
from kubi import components
from tests.plans.conftest import DESCRIPTION
from tests.plans.harness import plan
from kubi.config import ConfigError, validate

off = {name: False for name in components.NAMES if name != "motd"}
description = {**DESCRIPTION, "components": off, "motd": {"greeting": "Hello"}}
facts = {"kubi.facts.ManagedFile": {"path=/etc/motd": None}}
result = {
    "order": list(components.NAMES),
    "plan": plan("deploys/all.py", "cp1", description, facts, components=True),
}
try:
    validate({**DESCRIPTION, "motd": {"greting": "Hi"}}, source="t")
except ConfigError as exc:
    result["typo"] = exc.problems
print(json.dumps(result))
"""


def _follow_the_recipe(copy: Path) -> None:
    # 1. its entry in the list, at the end of the order
    listing = copy / "kubi" / "components.py"
    text = listing.read_text()
    head, sep, tail = text.rpartition("\n)\n")
    assert sep, "kubi/components.py: the COMPONENTS tuple ends with a line ')'"
    listing.write_text(head + ENTRY + tail)
    # 2. deploys/<name>.py
    (copy / "deploys" / "motd.py").write_text(DEPLOY.lstrip())
    # 3. templates/<name>/
    (copy / "templates" / "motd").mkdir()
    (copy / "templates" / "motd" / "motd.j2").write_text(TEMPLATE)
    # 4. its settings model and its field in Settings
    (copy / "kubi" / "config" / "motd.py").write_text(SETTINGS.lstrip())
    assembly = copy / "kubi" / "config" / "platform.py"
    text = assembly.read_text()
    text = text.replace(
        "from kubi.config.nginx import NginxSettings\n",
        "from kubi.config.motd import MotdSettings\nfrom kubi.config.nginx import NginxSettings\n",
    )
    marker = "    graylog: GraylogSettings = GraylogSettings()\n"
    assert marker in text
    text = text.replace(marker, marker + "    motd: MotdSettings = MotdSettings()\n")
    assembly.write_text(text)
    # 5. its tests
    (copy / "tests" / "verify" / "test_motd.py").write_text(VERIFY.lstrip())
    (copy / "tests" / "plans" / "test_motd_plan.py").write_text(PLAN.lstrip())


def _run(copy: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run(
        [sys.executable, *argv], cwd=copy, env=env, capture_output=True, text=True, timeout=300
    )


def test_recipe_for_a_new_component(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=SKIP)
    _follow_the_recipe(copy)

    probe = _run(copy, "-c", PROBE)
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout)
    assert result["order"][-1] == "motd"
    assert result["plan"][0] == "motd | login message: upload /etc/motd.kubi-new <<" + json.dumps(
        "Hello on cp1, a host of platform plan.\n"
    )
    assert "field 'motd.greting': unknown field (did you mean 'greeting'?)" in result["typo"][0]

    # The copy's own tests pass, the new component's among them (the plan) ...
    tests = _run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "tests/plans/test_motd_plan.py", "tests/unit/test_components.py")  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    # ... and its verification suite runs on every host of its roles.
    inventory = copy / "inventories" / "recipe.py"
    inventory.write_text(
        textwrap.dedent(
            """
            from kubi.inventory import declare
            from tests.plans.conftest import DESCRIPTION

            globals().update(declare(__file__, **DESCRIPTION).pyinfra_groups())
            """
        )
    )
    collected = _run(copy, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                     "tests/verify/test_motd.py", "--inventory", str(inventory))  # fmt: skip
    assert collected.returncode == 0, collected.stdout[-3000:]
    hosts = sorted(
        line.split("[")[1].rstrip("]") for line in collected.stdout.splitlines() if "::" in line
    )
    assert hosts == ["cp1", "in1", "out1", "repo1", "w1"]
