"""kubi's facts and operations, run for real against this machine's filesystem.

These prove the shell works, as any user. What a fact makes of given output and the exact
commands an operation plans are data: tests/cases/ (run by tests/unit/test_cases.py).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess

from facts.seed import SeedState
from kubi import ops
from kubi.facts import ManagedFile

from .localrun import LocalHost, run_op

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


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


def test_managed_file_fact(tmp_path):
    path = tmp_path / "f"
    local = LocalHost()
    assert local.get_fact(ManagedFile, path=str(path)) is None
    path.write_text("hello\n")
    path.chmod(0o640)
    fact = local.get_fact(ManagedFile, path=str(path))
    assert fact["mode"] == "640" and (fact["user"], fact["group"]) == (USER, GROUP)
    assert fact["sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


def test_file_write_is_idempotent_and_one_fact(tmp_path):
    path = tmp_path / "conf"
    owner = {"user": USER, "group": GROUP}  # root's in the lab; this user's here
    ran = run_op(ops.file, path=str(path), content="a=1\n", mode="600", **owner)
    # A non-world-readable file: its temporary copy is created 0600 before the upload.
    assert ran[0] == f"install -m 600 -o {USER} -g {GROUP} /dev/null {path}.kubi-new"
    assert ran[1] == f"upload {path}.kubi-new"
    assert path.read_text() == "a=1\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    local_runs = run_op(ops.file, path=str(path), content="a=1\n", mode="600", **owner)
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
