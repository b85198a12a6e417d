"""Day-2 operations (kubi/cluster_ops.py) with fake control planes: the order, and what a
failure leaves said."""

from __future__ import annotations

import json

import pytest

from kubi import cluster_ops
from kubi.inventory import declare
from kubi.ssh import Completed
from tests.plans.conftest import DESCRIPTION
from tests.unit.fake_hosts import FakeHosts


class FakeHost:
    def __init__(self, name, rc, ran):
        self.name, self.rc, self.ran = name, rc, ran

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, command, stdin=b""):
        self.ran.append((self.name, command))
        return Completed(self.rc, b"", b"" if self.rc == 0 else b"etcd did not come back")


@pytest.fixture
def declared(tmp_path):
    description = {**DESCRIPTION, "secrets_dir": str(tmp_path / "s")}
    description["groups"] = {
        **DESCRIPTION["groups"],
        "control_plane": [(f"cp{i}", {"ip": f"10.20.0.2{i}"}) for i in (1, 2, 3)],
    }
    return declare(None, **description)


def test_renewal_goes_one_control_plane_at_a_time(declared):
    ran, said = [], []
    cluster_ops.renew_certificates(declared, lambda n, d: FakeHost(n, 0, ran), said.append)
    assert [name for name, _ in ran] == ["cp1", "cp2", "cp3"]
    command = ran[0][1]
    # answering before, renewed, restarted, answering again before the next one
    assert command.index("readyz") < command.index("kubeadm certs renew all")
    restart = command.index("for p in etcd kube-apiserver kube-controller-manager kube-scheduler")
    assert command.index("kubeadm certs renew all") < restart < command.rindex("readyz")
    assert command.rindex("readyz") < command.index("10257/healthz")  # the controllers too
    assert said[-1] == "cp3: certificates renewed, control plane restarted and answering"


def test_a_failure_stops_and_names_what_is_left(declared):
    ran = []

    def connect(name, data):
        return FakeHost(name, 1 if name == "cp2" else 0, ran)

    with pytest.raises(cluster_ops.ClusterOpError) as stopped:
        cluster_ops.renew_certificates(declared, connect, lambda line: None)
    assert str(stopped.value) == (
        "cp2: etcd did not come back; not renewed yet: cp3; run kubi check, then kubi certs "
        "renew again"
    )
    assert [name for name, _ in ran] == ["cp1", "cp2"]


def recorder(members=(), dead=()):
    """Fake hosts where etcd lists `members`; `dead` ones cannot be reached."""

    def answer(host, command):
        if command.endswith("/list -X POST -d '{}'"):
            listed = [{"ID": "1234", "name": m} for m in members]
            return Completed(0, json.dumps({"members": listed}).encode(), b"")
        return None

    return FakeHosts(answer, dead=dead)


def test_removing_a_worker(declared):
    hosts, said = recorder(), []
    cluster_ops.remove_node(declared, "w1", hosts, said.append)
    steps = [(name, command.split()[0]) for name, command, _ in hosts.ran]
    assert steps == [("cp1", "if"), ("w1", "kubeadm"), ("cp1", "kubectl")]
    drain, reset, delete = (command for _, command, _ in hosts.ran)
    assert "drain w1 --ignore-daemonsets --delete-emptydir-data --force --timeout=180s" in drain
    assert reset.startswith("kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock")
    assert "--cert-dir" not in reset  # nothing of the cluster stays on a node that leaves
    assert "rm -rf /etc/kubernetes/kubi" in reset  # its kubeadm configuration: the token
    assert delete.endswith("delete node w1 --ignore-not-found")
    assert said[-1].startswith("w1: out of the cluster; take it out of the inventory")


def test_a_dead_control_plane_is_forgotten_by_the_others(declared):
    hosts, said = recorder(members=("cp1", "cp2", "cp3"), dead=("cp3",)), []
    cluster_ops.remove_node(declared, "cp3", hosts, said.append)
    assert said[1].startswith("cp3: unreachable, not reset")
    removal = hosts.ran[-1]
    assert removal[0] == "cp1" and removal[1].endswith('/remove -X POST -d \'{"ID": "1234"}\'')
    assert "cp3: etcd member removed" in said


def test_the_only_control_plane_and_other_hosts_are_refused(declared, tmp_path):
    one = declare(None, **{**DESCRIPTION, "secrets_dir": str(tmp_path / "s1")})
    with pytest.raises(cluster_ops.ClusterOpError, match="the only control plane"):
        cluster_ops.remove_node(one, "cp1", recorder(), print)
    with pytest.raises(cluster_ops.ClusterOpError, match="no Kubernetes node"):
        cluster_ops.remove_node(declared, "repo1", recorder(), print)
