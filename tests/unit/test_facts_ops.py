"""kubi's facts and operations, run for real against this machine's filesystem."""

from __future__ import annotations

import os
import subprocess

from facts.seed import SeedState
from kubi import ops
from kubi.facts import ManagedFile, ServiceState

from .localrun import LocalHost, run_op


def test_seed_state_reads_this_machine(tmp_path):
    marker = tmp_path / "seeded"
    local = LocalHost()
    state = local.get_fact(
        SeedState, marker=str(marker), modules=("overlay",), sysctls=("net.ipv4.ip_forward",)
    )
    assert state["seeded"] is False
    assert state["hostname"] == subprocess.check_output(["hostname"], text=True).strip()
    assert state["modules"]["overlay"] in ("loaded", "builtin")  # needed by this very lab
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert state["sysctl"]["net.ipv4.ip_forward"] == f.read().strip()
    marker.write_text("x")
    assert local.get_fact(SeedState, marker=str(marker))["seeded"] is True


def test_seed_state_parsing():
    lines = [
        "hostname=cp1", "timezone=Europe/Paris", "container=none", "seeded=no",
        "swap_active=2", "swap_fstab=1", "module.br_netfilter=missing",
        "sysctl.net.bridge.bridge-nf-call-iptables=<absent>", "sysctl.net.ipv4.ip_forward=1",
    ]  # fmt: skip
    assert SeedState().process(lines) == {
        "hostname": "cp1", "timezone": "Europe/Paris", "container": None, "seeded": False,
        "swap_active": 2, "swap_fstab": 1, "modules": {"br_netfilter": "missing"},
        "sysctl": {"net.bridge.bridge-nf-call-iptables": None, "net.ipv4.ip_forward": "1"},
    }  # fmt: skip


def test_managed_file_fact(tmp_path):
    path = tmp_path / "f"
    local = LocalHost()
    assert local.get_fact(ManagedFile, path=str(path)) is None
    path.write_text("hello\n")
    path.chmod(0o640)
    fact = local.get_fact(ManagedFile, path=str(path))
    assert fact["mode"] == "640" and fact["user"] == "root"
    assert fact["sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


def test_service_state_of_an_unknown_unit():
    # Not installed: not active, and no opinion on enablement (it cannot be enabled yet).
    fact = ServiceState().process(["active=inactive", "enabled="])
    assert fact == {"active": False, "enabled": None}
    assert ServiceState().process(["active=active", "enabled=enabled"]) == {
        "active": True,
        "enabled": True,
    }


def test_file_write_is_idempotent_and_one_fact(tmp_path):
    path = tmp_path / "conf"
    ran = run_op(ops.file, path=str(path), content="a=1\n", mode="600")
    # A non-world-readable file: its temporary copy is created 0600 before the upload.
    assert ran[0] == f"install -m 600 -o root -g root /dev/null {path}.kubi-new"
    assert ran[1] == f"upload {path}.kubi-new"
    assert path.read_text() == "a=1\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    local_runs = run_op(ops.file, path=str(path), content="a=1\n", mode="600")
    assert local_runs == []


def test_block_keeps_other_lines_and_replaces_its_own(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.9 mine\n")
    inode = os.stat(hosts).st_ino
    run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.2 b")
    run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.3 c")
    assert hosts.read_text().splitlines() == [
        "127.0.0.1 localhost",
        "10.0.0.9 mine",
        "# BEGIN kubi",
        "10.0.0.1 a",
        "10.0.0.3 c",
        "# END kubi",
    ]
    assert os.stat(hosts).st_ino == inode  # rewritten in place: a bind-mounted file stays valid
    assert run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.3 c") == []
