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
    assert shown["components"] == {c.name: c.default for c in components.COMPONENTS}
    assert not shown["components"]["images"]  # on only where nodes lack the internet


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


# --- every category of bad string: one problem list, the field named, exit 2 -------------------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c a@laptop"
# Built in parts: no committed file carries a private key header.
PEM = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END"


def person(name: str, key: str = KEY, role: str = "ops") -> dict:
    return {"name": name, "role": role, "keys": [key]}


CATEGORIES = {
    "control character": (
        {"seed": {"ntp_servers": ["pool.ntp.org\n"]}},
        "field 'seed.ntp_servers.0': must be a lower-case DNS name",
    ),
    "shell syntax": (
        {"seed": {"extra_packages": ["vim;reboot"]}},
        "field 'seed.extra_packages.0': must be a Debian package name",
    ),
    "truncated key": (
        {"users": [person("alice", KEY[:60])]},
        "user 'alice', field 'keys.0': its key data is truncated (copy the whole line)",
    ),
    "key type mismatch": (
        {"users": [person("alice", KEY.replace("ssh-ed25519", "ssh-rsa"))]},
        "user 'alice', field 'keys.0': its key data is a ssh-ed25519 key, not ssh-rsa",
    ),
    "system account": (
        {"users": [person("opensearch")]},
        "user 'opensearch', field 'name': 'opensearch' is a system or service account",
    ),
    "same person twice": (
        {"users": [person("alice"), person("alice", role="dev")]},
        "field 'users': 'alice' listed more than once",
    ),
    "kubernetes version": (
        {"versions": {"kubernetes": "1.29.3"}},
        "field 'versions.kubernetes': minor 1.29 is not supported by kubi "
        "(kubi/config/kubernetes.toml); supported: 1.30, 1.31, 1.32, 1.33, 1.34",
    ),
    "private key for a path": (
        {"ssh": {"port": 1, "connect_timeout": 1, "key": PEM}},
        "field 'ssh.key': must be the path of a file, not its content",
    ),
    "certificate for a path": (
        {
            "registry": {
                "tls_cert": PEM.replace("OPENSSH PRIVATE KEY", "CERTIFICATE"),
                "tls_key": str(ROOT / "pyproject.toml"),
            }
        },
        "field 'registry.tls_cert': must be the path of a file, not its content",
    ),  # fmt: skip
    "odd shape": (
        {"network": {"pod_cidr": 5}},
        "field 'network.pod_cidr': must be an IPv4 CIDR string",
    ),
}


def bad_inventory(tmp_path: Path, overrides: dict) -> Path:
    extra = "".join(f"{key}={value!r}, " for key, value in overrides.items() if key != "ssh")
    body = GOOD % {"extra_cp": "", "port": "1", "extra": extra}
    if "ssh" in overrides:
        body = body.replace('ssh={"port": 1, "connect_timeout": 1},', f"ssh={overrides['ssh']!r},")
    return write_inventory(tmp_path, body)


def assert_one_problem_list(output: str, expected: str) -> None:
    assert "Traceback" not in output, output
    assert "1 problem(s) in the platform description" in output, output
    assert f"  - {expected}" in output, output
    for secret in ("PRIVATE KEY", "CERTIFICATE", "b3BlbnNz"):
        assert secret not in output, output


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_config_check_refuses_each_category_with_the_field_named(tmp_path, category):
    overrides, expected = CATEGORIES[category]
    result = run(str(BIN / "kubi"), "config", "check", str(bad_inventory(tmp_path, overrides)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_problem_list(result.stderr, expected)
    assert result.stdout == ""


@pytest.mark.parametrize("category", ["control character", "private key for a path"])
def test_pyinfra_refuses_each_category_before_connecting(tmp_path, category):
    overrides, expected = CATEGORIES[category]
    result = run(
        str(BIN / "pyinfra"), "-y", str(bad_inventory(tmp_path, overrides)), "deploys/seed.py"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert_one_problem_list(output, expected)
    assert "Connecting" not in output and "Connected" not in output


def test_inventory_that_fails_to_run_is_one_problem(tmp_path):
    body = "secret = " + repr(PEM) + "\nraise ValueError(secret)\n"
    result = run(str(BIN / "kubi"), "config", "check", str(write_inventory(tmp_path, body)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "the inventory file failed to run (ValueError, line 2): fix the file" in result.stderr
    assert "PRIVATE KEY" not in result.stderr + result.stdout
