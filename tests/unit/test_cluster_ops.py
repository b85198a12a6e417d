"""Day-2 operations (kubi/cluster_ops.py) with fake control planes: the order, and what a
failure leaves said."""

from __future__ import annotations

import pytest

from kubi import cluster_ops
from kubi.inventory import declare
from kubi.ssh import Completed
from tests.plans.conftest import DESCRIPTION


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
    assert command.index("pkill -x kube-apiserver") < command.rindex("readyz")
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
