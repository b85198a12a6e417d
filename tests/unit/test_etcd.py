"""`kubi etcd snapshot` (kubi/etcd.py) with the SSH side played by a fake control plane:
what it runs there, what it keeps here, and what it refuses."""

from __future__ import annotations

import hashlib
import json

import pytest

from kubi import etcd
from kubi.inventory import declare
from kubi.ssh import Completed
from tests.plans.conftest import DESCRIPTION
from tests.unit.fake_hosts import FakeHosts

DATA = b"\x00bbolt pages of /registry/configmaps/default/x\x00"
STATUS = {"hash": 1, "revision": 42, "totalKey": 7, "totalSize": len(DATA)}


class FakeHost:
    def __init__(self, name, data=DATA, fail=False):
        self.where, self.data, self.fail, self.commands = name, data, fail, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, command, stdin=b""):
        self.commands.append(command)
        if self.fail:
            return Completed(1, b"", b"Error: context deadline exceeded")
        if command.startswith("set -e;"):
            digest = hashlib.sha256(DATA).hexdigest()
            out = f"{json.dumps(STATUS)}\n{digest}  {etcd.REMOTE_FILE}\n".encode()
            return Completed(0, out, b"")
        return Completed(0, self.data, b"")


@pytest.fixture
def declared(tmp_path):
    description = {**DESCRIPTION, "secrets_dir": str(tmp_path / "secrets")}
    description["groups"] = {
        **DESCRIPTION["groups"],
        "control_plane": [(f"cp{i}", {"ip": f"10.20.0.2{i}"}) for i in (1, 2, 3)],
    }
    description["versions"] = {"kubernetes": "1.33.3"}
    description["containerd"] = {"source": "debian"}  # runs 1.33 (Debian 12)
    return declare(None, **description)


def test_the_snapshot_is_saved_by_the_etcd_image_and_kept_0600(declared, tmp_path):
    hosts = {}

    def connect(name, data):
        return hosts.setdefault(name, FakeHost(name))

    taken = etcd.snapshot(declared, connect, now=0)
    assert taken.path == tmp_path / "secrets" / "etcd-snapshots" / "plan-19700101T000000Z.db"
    assert taken.path.read_bytes() == DATA and (taken.source, taken.revision, taken.keys) == (
        "cp1",
        42,
        7,
    )
    assert oct(taken.path.stat().st_mode & 0o777) == "0o600"
    assert oct(taken.path.parent.stat().st_mode & 0o777) == "0o700"
    save, fetch = hosts["cp1"].commands
    assert "ctr -n k8s.io run --rm --net-host" in save
    assert "registry.k8s.io/etcd:3.5.21-0 kubi-etcd-snapshot-$$ etcdctl" in save
    assert "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt" in save
    assert "etcdutl snapshot status /var/lib/kubi-etcd/snapshot.db -w json" in save
    remote = "/var/lib/kubi-etcd/snapshot.db"
    assert fetch == f"cat {remote}; rc=$?; rm -f {remote}; exit $rc"  # never left there
    assert "cp2" not in hosts  # the first one did it


def test_the_next_control_plane_tries_and_a_damaged_copy_is_refused(declared):
    hosts = {
        "cp1": FakeHost("cp1", fail=True),
        "cp2": FakeHost("cp2", data=DATA + b"!"),
        "cp3": FakeHost("cp3", fail=True),
    }
    with pytest.raises(etcd.SnapshotError) as refused:
        etcd.snapshot(declared, lambda name, data: hosts[name])
    message = str(refused.value)
    assert "cp1: Error: context deadline exceeded" in message
    assert "cp2: the snapshot changed on its way to this machine" in message


def recording(failing=()):
    """Fake hosts where a command holding one of `failing` fails."""

    def answer(host, command):
        if any(f in command for f in failing):
            return Completed(1, b"", b"the init failed")
        return None

    return FakeHosts(answer)


def test_restore_resets_the_others_then_starts_the_first_from_the_snapshot(declared, tmp_path):
    snapshot = tmp_path / "plan-x.db"
    snapshot.write_bytes(DATA)
    hosts, said = recording(), []
    etcd.restore(declared, snapshot, hosts, said.append)
    assert [(name, command.split()[0]) for name, command, _ in hosts.ran] == [
        ("cp2", "install"), ("cp3", "install"), ("cp1", "install"), ("cp1", "set"),
        ("cp1", "kubectl"),
    ]  # fmt: skip
    # the snapshot's Nodes of the others go: their joins would be refused
    assert hosts.ran[4][1].endswith("delete node cp2 cp3 --ignore-not-found")
    assert "kubeadm reset -f" in hosts.ran[0][1] and "--cert-dir" in hosts.ran[0][1]  # PKI kept
    upload = hosts.ran[2]
    assert upload[1].endswith("umask 077 && cat > /var/lib/kubi-etcd/restore.db")
    assert upload[2] == DATA
    script = hosts.ran[3][1]
    assert (
        "etcdutl snapshot restore /var/lib/kubi-etcd/restore.db --data-dir=/var/lib/etcd" in script
    )
    assert "--name=cp1 --initial-cluster=cp1=https://$ip:2380" in script
    assert script.index("etcdutl snapshot restore") < script.index("kubeadm init --config")
    assert script.endswith("--ignore-preflight-errors=DirAvailable--var-lib-etcd")
    assert said[-1].startswith("cp1: the cluster runs again from plan-x.db; run deploys/all.py")


def test_a_failed_restore_says_where_and_why(declared, tmp_path):
    snapshot = tmp_path / "plan-x.db"
    snapshot.write_bytes(DATA)
    with pytest.raises(etcd.SnapshotError, match="cp1: the restore failed: the init failed"):
        etcd.restore(declared, snapshot, recording(failing=("kubeadm init",)), print)


def test_a_dead_control_plane_does_not_stop_the_restore(declared, tmp_path):
    from kubi.ssh import SshError

    snapshot = tmp_path / "plan-x.db"
    snapshot.write_bytes(DATA)
    hosts, said = recording(), []

    def connect(name, data):
        if name == "cp3":
            raise SshError("cannot connect to cp3 (10.20.0.23:22) over SSH as root: no answer")
        return hosts(name, data)

    etcd.restore(declared, snapshot, connect, said.append)
    assert said[1].startswith("cp3: unreachable, not reset (cannot connect to cp3")
    assert said[1].endswith("run kubi node remove cp3")
    assert [name for name, _, _ in hosts.ran] == ["cp2", "cp1", "cp1", "cp1"]
    assert hosts.ran[-1][1].endswith("delete node cp2 cp3 --ignore-not-found")
