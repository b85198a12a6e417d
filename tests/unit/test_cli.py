"""`kubi config` and pyinfra itself refuse a bad inventory before connecting anywhere.

The bad inventories point at loopback addresses on a closed port: even if validation
regressed, no packet could leave this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubi import components

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def write_inventory(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "env.py"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    from kubi.inventory import declare
    platform = declare(
        __file__,
        name="loop",
        groups={
            "input": [("in1", {"address": "127.0.0.11"})],
            "output": [("out1", {"address": "127.0.0.12"})],
            "repository": [("repo1", {"address": "127.0.0.13"})],
            "control_plane": [("cp1", {"address": "127.0.0.21"})%(extra_cp)s],
            "workers": [("w1", {"address": "127.0.0.31", "ssh_port": %(port)s})],
        },
        ssh={"port": 1, "connect_timeout": 1},
        %(extra)s
    )
    globals().update(platform.pyinfra_groups())
"""


def inventory(tmp_path, extra_cp="", port="1", extra=""):
    return write_inventory(tmp_path, GOOD % {"extra_cp": extra_cp, "port": port, "extra": extra})


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_config_check_ok(tmp_path):
    result = run(str(BIN / "kubi"), "config", "check", str(inventory(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ok (5 hosts, platform 'loop')" in result.stdout


def test_example_production_inventory_is_valid():
    result = run(str(BIN / "kubi"), "config", "check", "inventories/prod.py")
    assert result.returncode == 0, result.stderr
    assert "inventories/prod.py: ok (9 hosts" in result.stdout


def test_config_show_prints_effective_defaults(tmp_path):
    result = run(str(BIN / "kubi"), "config", "show", str(inventory(tmp_path)))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["network"]["pod_cidr"] == "10.233.64.0/18"
    assert shown["seed"]["upgrade"] == "first"
    assert [h["name"] for h in shown["hosts"]] == ["in1", "out1", "repo1", "cp1", "w1"]
    # Every component, on or off, in converge order.
    assert list(shown["components"]) == list(components.NAMES)
    assert all(shown["components"].values())


BAD = {"extra_cp": ', ("cp2", {"address": "127.0.0.22"})', "port": '"22"', "extra": "sed={},"}


def test_config_check_lists_every_problem(tmp_path):
    result = run(str(BIN / "kubi"), "config", "check", str(inventory(tmp_path, **BAD)))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].endswith("env.py: 3 problem(s) in the platform description")
    assert any("field 'sed': unknown field" in line for line in lines)
    assert any("host 'w1' (group 'workers'), field 'ssh_port'" in line for line in lines)
    assert any("etcd needs an odd number" in line for line in lines)


def test_pyinfra_stops_before_connecting(tmp_path):
    bad = inventory(tmp_path, **BAD)
    result = run(str(BIN / "pyinfra"), "-y", str(bad), "deploys/seed.py")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "3 problem(s) in the platform description" in output
    assert "Connecting" not in output and "Connected" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", ["check", "show"])
def test_missing_inventory_file(tmp_path, command):
    result = run(str(BIN / "kubi"), "config", command, str(tmp_path / "absent.py"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
