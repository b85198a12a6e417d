"""kubi's facts and operations, run for real against this machine's filesystem.

These prove the shell works, as any user. What a fact makes of given output and the exact
commands an operation plans are data: tests/cases/ (run by tests/unit/test_cases.py).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import time

import pytest

from facts.seed import SeedState
from kubi import ops
from kubi.facts import ManagedFile, ManagedFiles

from .localrun import CommandFailed, LocalHost, execute, plan_op, run_op

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


def test_managed_files_answers_as_managed_file_for_each_path(tmp_path):
    """The batched fact (a converged host's files in one round trip) says, for each path,
    exactly what ManagedFile says of it alone, run for real here."""
    (tmp_path / "plain").write_text("a\n")
    (tmp_path / "link").symlink_to(tmp_path / "plain")
    (tmp_path / "folder").mkdir()
    unsafe = tmp_path / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)  # any user may put a link there: refused
    paths = [str(tmp_path / n) for n in ("plain", "link", "folder", "absent", "open/f")]
    paths.append(str(tmp_path / "with space 'and quote'"))
    local = LocalHost()
    alone = {path: local.get_fact(ManagedFile, path=path) for path in paths}
    assert local.get_fact(ManagedFiles, paths=tuple(paths)) == alone
    assert alone[paths[0]]["type"] == "file" and alone[paths[3]] is None
    assert alone[paths[4]]["type"] == "unsafe"


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
    hosts.chmod(0o640)
    inode = os.stat(hosts).st_ino
    run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.2 b")
    # A new file renamed over the old one (never truncated, then filled), same mode.
    assert os.stat(hosts).st_ino != inode and stat.S_IMODE(os.stat(hosts).st_mode) == 0o640
    run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.3 c")
    assert hosts.read_text().splitlines() == [
        "127.0.0.1 localhost",
        "10.0.0.9 mine",
        "# BEGIN kubi",
        "10.0.0.1 a",
        "10.0.0.3 c",
        "# END kubi",
    ]
    assert not list(tmp_path.glob("hosts.kubi-new*"))
    assert run_op(ops.block, path=str(hosts), content="10.0.0.1 a\n10.0.0.3 c") == []


def test_a_damaged_file_is_repaired_not_reported_unchanged(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# BEGIN kubi\n10.0.0.1 a\n# END kubi\n")  # localhost lost
    required = ("127.0.0.1 localhost",)
    assert run_op(ops.block, path=str(hosts), content="10.0.0.1 a", required=required) != []
    assert hosts.read_text().splitlines()[0] == "127.0.0.1 localhost"
    assert run_op(ops.block, path=str(hosts), content="10.0.0.1 a", required=required) == []
    # Debian's own spelling (a tab, more names) counts as present.
    hosts.write_text("127.0.0.1\tlocalhost my-host\n# BEGIN kubi\n10.0.0.1 a\n# END kubi\n")
    assert run_op(ops.block, path=str(hosts), content="10.0.0.1 a", required=required) == []


def test_managed_file_fact_never_follows_a_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("secret\n")
    link = tmp_path / "f"
    link.symlink_to(target)
    local = LocalHost()
    assert local.get_fact(ManagedFile, path=str(link)) == {"type": "symlink"}
    assert local.get_fact(ManagedFile, path=str(tmp_path)) == {"type": "other"}
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could put a link in it
    fact = local.get_fact(ManagedFile, path=str(shared / "f"))
    assert fact == {"type": "unsafe", "folder": str(shared), "owner": str(os.getuid()),
                    "mode": "drwxrwxrwx"}  # fmt: skip


def planted(tmp_path, mode=0o600):
    """A file that is not kubi's (/etc/shadow in the attack), and the managed path."""
    target = tmp_path / "shadow"
    target.write_text("root:*:19000::::::\n")
    target.chmod(mode)
    return target, tmp_path / "authorized_keys"


def untouched(target, mode=0o600):
    assert oct(target.stat().st_mode & 0o777) == oct(mode)
    assert target.read_text() == "root:*:19000::::::\n"


@pytest.mark.parametrize("content", ["root:*:19000::::::\n", "ssh-ed25519 AAAA dave\n"])
def test_a_link_in_place_of_the_file_is_refused(tmp_path, content):
    target, path = planted(tmp_path)
    path.symlink_to(target)
    with pytest.raises(CommandFailed, match="refusing .*: not a regular file"):
        run_op(ops.file, path=str(path), content=content, mode="644", user=USER, group=GROUP)
    untouched(target)
    assert path.is_symlink()


@pytest.mark.parametrize("check", [None, "true"])
def test_a_link_in_place_of_a_file_to_remove_goes_and_its_target_stays(tmp_path, check):
    """A package's default site is a link: removing it removes the link, never its target."""
    target, path = planted(tmp_path)
    path.symlink_to(target)
    run_op(ops.file, path=str(path), content=None, check=check)
    assert not path.is_symlink() and not path.exists()
    untouched(target)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    run_op(ops.file, path=str(dangling), content=None, check=check)
    assert not dangling.is_symlink()


def test_a_link_to_nothing_whose_removal_is_refused_is_put_back(tmp_path):
    """`[ -e ]` does not see a link to nothing: it stayed under its .kubi-old name."""
    path = tmp_path / "dangling"
    path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(CommandFailed, match="the previous configuration is kept"):
        run_op(ops.file, path=str(path), content=None, check="false")
    assert os.readlink(path) == str(tmp_path / "nowhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling"]


@pytest.mark.parametrize("content", ["ssh-ed25519 AAAA dave\n", "ssh-ed25519 BBBB other\n"])
def test_a_link_swapped_in_between_plan_and_execute_is_refused(tmp_path, content):
    target, path = planted(tmp_path)
    path.write_text("ssh-ed25519 AAAA dave\n")
    path.chmod(0o644)  # the owner changes the mode: kubi plans chmod (or, new keys, a write)
    owner = {"user": USER, "group": GROUP}
    commands = plan_op(ops.file, path=str(path), content=content, mode="600", **owner)
    assert commands  # something to do, planned while the file was a regular file
    path.unlink()
    path.symlink_to(target)  # ... then swapped for a link before the plan runs
    with pytest.raises(CommandFailed, match="refusing .*: not a regular file"):
        execute(commands)
    untouched(target)
    assert path.is_symlink() and os.readlink(path) == str(target)


def test_a_folder_others_may_write_is_refused(tmp_path):
    folder = tmp_path / "ssh"
    folder.mkdir()
    path = folder / "authorized_keys"
    path.write_text("a=1\n")
    path.chmod(0o600)
    owner = {"user": USER, "group": GROUP}
    # Planned while the folder was the user's alone, executed once others may write in it.
    commands = plan_op(ops.file, path=str(path), content="a=1\n", mode="644", **owner)
    folder.chmod(0o777)
    with pytest.raises(CommandFailed, match=f"the folder {folder} .* is not root's alone"):
        execute(commands)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Planned now: the fact sees the folder and the operation refuses before any upload.
    with pytest.raises(CommandFailed, match=f"refusing {path}: the folder {folder}"):
        run_op(ops.file, path=str(path), content="b=2\n", mode="644", **owner)
    assert path.read_text() == "a=1\n" and not (folder / "authorized_keys.kubi-new").exists()


def test_the_package_lists_are_refreshed_once_until_a_source_changes(tmp_path):
    """`ops.refresh_lists`, run for real with an `apt-get` that notes each call: a run's
    installs refresh the lists once, then again when an apt source or key changed since or
    once they are ten minutes old; a failed refresh leaves the stamp as it was."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit "${{FAIL:-0}}"\n')
    (fake / "apt-get").chmod(0o755)
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    stamp = tmp_path / "state" / "apt-lists-refreshed"
    script = ops.refresh_lists(stamp=str(stamp), watched=(str(sources), str(tmp_path / "gone")))

    def refresh(fail: bool = False) -> int:
        env = {"PATH": f"{fake}:/usr/bin:/bin", "FAIL": "1" if fail else "0"}
        ran = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
        return ran.returncode

    def updates() -> int:
        return calls.read_text().count("-q update") if calls.exists() else 0

    assert refresh() == 0 and updates() == 1 and stamp.is_file()
    assert refresh() == 0 and updates() == 1  # fresh: nothing to do
    source = sources / "vendor.list"
    source.write_text("deb http://example.invalid/ /\n")
    assert refresh() == 0 and updates() == 2  # a source added since
    assert refresh() == 0 and updates() == 2
    old = time.time() - 11 * 60
    os.utime(stamp, (old, old))
    os.utime(source, (old - 60, old - 60))
    os.utime(sources, (old - 60, old - 60))
    assert refresh(fail=True) != 0 and updates() == 3  # ten minutes old: refreshed, failed
    assert stamp.stat().st_mtime == old  # not fresh after a failure
    assert refresh() == 0 and updates() == 4 and stamp.stat().st_mtime > old
    always = ops.refresh_lists(always=True, stamp=str(stamp))
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    assert subprocess.run(["sh", "-c", always], env=env).returncode == 0 and updates() == 5
