"""kubeadm's configuration of each node (kubi/kubeadm.py): its content, and kubeadm's own
`config validate` of every kind of node when a real kubeadm binary is present."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from kubi import kubeadm
from kubi.cluster_pki import cluster_pki
from kubi.inventory import declare
from kubi.secrets import Secrets

from ..conftest import KUBEADM, needs_kubeadm
from ..plans.conftest import DESCRIPTION

IPS = {"in1": "10.20.0.11", "out1": "10.20.0.12", "repo1": "10.20.0.13", "w1": "10.20.0.31"}
IPS |= {f"cp{i}": f"10.20.0.2{i}" for i in (1, 2, 3)}


@pytest.fixture
def platform():
    description = copy.deepcopy(DESCRIPTION)
    description["groups"]["control_plane"] = [(f"cp{i}", {"ip": IPS[f"cp{i}"]}) for i in (1, 2, 3)]
    description["versions"] = {"kubernetes": "1.33.3"}
    description["containerd"] = {"source": "debian"}  # runs 1.33 (Debian 12)
    return declare(None, **description).config


@pytest.fixture
def pki(tmp_path):
    return cluster_pki(Secrets(tmp_path / "secrets"))


def documents(platform, name, pki) -> dict[str, dict]:
    text = kubeadm.config(platform, platform.host(name), IPS, pki)
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text)}


def test_the_first_control_plane_initialises(platform, pki):
    docs = documents(platform, "cp1", pki)
    assert set(docs) == {
        "InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
        "KubeProxyConfiguration",
    }  # fmt: skip
    init, cluster = docs["InitConfiguration"], docs["ClusterConfiguration"]
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"  # the table's, for 1.33
    assert init["bootstrapTokens"][0]["token"] == pki.bootstrap_token
    assert init["certificateKey"] == pki.certificate_key
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.20.0.21", "bindPort": 6443}
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "10.20.0.21"}
    ]
    assert "skipPhases" not in init  # CoreDNS by default
    assert cluster["kubernetesVersion"] == "v1.33.3"
    assert cluster["controlPlaneEndpoint"] == "kube-api.plan.kubi.internal:6444"
    assert cluster["networking"] == {
        "podSubnet": "10.233.64.0/18", "serviceSubnet": "10.233.0.0/18",
        "dnsDomain": "cluster.local",
    }  # fmt: skip
    sans = cluster["apiServer"]["certSANs"]
    assert sans[:3] == ["kube-api.plan.kubi.internal", "localhost", "127.0.0.1"]
    assert {"10.20.0.21", "10.20.0.22", "10.20.0.23"} <= set(sans)
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"  # containerd's


def test_other_control_planes_and_workers_join_checking_the_ca(platform, pki):
    cp2 = documents(platform, "cp2", pki)["JoinConfiguration"]
    token = cp2["discovery"]["bootstrapToken"]
    assert token["apiServerEndpoint"] == "kube-api.plan.kubi.internal:6444"
    assert token["caCertHashes"] == [pki.discovery_hash]
    assert cp2["controlPlane"]["certificateKey"] == pki.certificate_key
    assert cp2["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "10.20.0.22"
    worker = documents(platform, "w1", pki)
    assert set(worker) == {"JoinConfiguration"}
    assert "controlPlane" not in worker["JoinConfiguration"]
    # A worker never gets the key that decrypts the control planes' certificates.
    assert pki.certificate_key not in kubeadm.config(platform, platform.host("w1"), IPS, pki)


def test_lab_like_nodes(platform, pki):
    lab = platform.model_copy(
        update={
            "kubernetes": platform.kubernetes.model_copy(
                update={"coredns": False, "nodes_are_containers": True}
            ),
            "containerd": platform.containerd.model_copy(update={"cgroup_driver": "cgroupfs"}),
        }
    )
    docs = documents(lab, "cp1", pki)
    assert docs["InitConfiguration"]["skipPhases"] == ["addon/coredns"]
    assert docs["KubeletConfiguration"]["failSwapOn"] is False
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "cgroupfs"
    assert docs["KubeProxyConfiguration"]["conntrack"] == {"maxPerCore": 0}


def test_an_older_minor_gets_its_own_api(platform, pki):
    old = platform.model_copy(
        update={"versions": platform.versions.model_copy(update={"kubernetes": "1.30.2"})}
    )
    docs = documents(old, "w1", pki)
    join = docs["JoinConfiguration"]
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.20.0.31"}


@needs_kubeadm
@pytest.mark.parametrize("name", ["cp1", "cp2", "w1"])
def test_kubeadm_validates_every_kind_of_node(platform, pki, tmp_path, name):
    path = tmp_path / "kubeadm.yaml"
    path.write_text(kubeadm.config(platform, platform.host(name), IPS, pki))
    result = subprocess.run(
        [str(KUBEADM), "config", "validate", "--config", str(path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout.lower()


def test_kubeadm_patches_are_named_as_kubeadm_reads_them(tmp_path):
    from kubi.config import ConfigError
    from kubi.config.platform import validate
    from tests.plans.conftest import DESCRIPTION

    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "etcd+json.json").write_text("[]")
    ok = validate({**DESCRIPTION, "kubernetes": {"kubeadm_patches": str(patches)}}, source="t")
    assert ok.kubernetes.kubeadm_patches == patches
    (patches / "etcd.yml").write_text("x")  # kubeadm would skip it without a word
    with pytest.raises(ConfigError, match=r"etcd\.yml: not a kubeadm patch file; name it"):
        validate({**DESCRIPTION, "kubernetes": {"kubeadm_patches": str(patches)}}, source="t")
    with pytest.raises(ConfigError, match="is not a folder on this machine"):
        validate(
            {**DESCRIPTION, "kubernetes": {"kubeadm_patches": str(tmp_path / "no")}}, source="t"
        )
