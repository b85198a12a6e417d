"""Plans of deploys/kubernetes.py: packages, the cluster PKI and kubeadm's configuration."""

from __future__ import annotations

import pytest
import yaml

from kubi.cluster_pki import cluster_pki
from kubi.secrets import Secrets

from .conftest import managed
from .harness import plan, uploads

KEYRING = "/etc/apt/keyrings/kubi-kubernetes.gpg"
CONFIG = "/etc/kubernetes/kubi/kubeadm.yaml"
PKI = [
    "ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt",
    "etcd/ca.key", "sa.key", "sa.pub",
]  # fmt: skip
SOURCES = "/etc/apt/sources.list.d/kubi-kubernetes.list"
PINS = "/etc/apt/preferences.d/kubi-kubernetes"
UPSTREAM_KEY = "DE15B14486CD377B9E876E1A234654DA9A296436"


def facts(files=None, installed=None, keyring=None):
    files = files or {}
    paths = [SOURCES, PINS, CONFIG, *(f"/etc/kubernetes/pki/{name}" for name in PKI)]
    state = {
        "keyrings": {KEYRING: keyring}, "joined": False, "control_plane": False,
        "kubeadm": None, "apiserver_expiry": None,
    }  # fmt: skip
    return {
        "facts.kubernetes.KubernetesNodeState": {f"keyring={KEYRING}": state},
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ManagedFile": {f"path={p}": files.get(p) for p in paths},
    }


@pytest.fixture
def node(description, tmp_path):
    description["secrets_dir"] = str(tmp_path / "secrets")
    description["versions"] = {"kubernetes": "1.33.3"}
    return description


def test_fresh_control_plane(node, tmp_path):
    lines = plan("deploys/kubernetes.py", "cp1", node, facts())
    key = next(line for line in lines if line.startswith("repository key kubernetes"))
    # The channel's key, kept only when it is the pinned one, through the platform's proxy.
    assert "http://HTTPS///pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key" in key
    assert f"gpg --batch --export {UPSTREAM_KEY}" in key
    written = uploads(lines)
    assert written[SOURCES].splitlines()[-1] == (
        f"deb [signed-by={KEYRING}] http://HTTPS///pkgs.k8s.io/core:/stable:/v1.33/deb/ /"
    )
    for package in ("kubeadm", "kubelet", "kubectl"):
        assert f"Package: {package}\nPin: version 1.33.3-*\nPin-Priority: 1001\n" in written[PINS]
    install = next(line for line in lines if line.startswith("Kubernetes packages "))
    assert "install kubeadm kubelet kubectl" in install
    # The deployer's PKI, the same on every control plane; keys root's alone.
    pki = cluster_pki(Secrets(tmp_path / "secrets"))
    for name, content in pki.pki_files().items():
        assert written[f"/etc/kubernetes/pki/{name}"] == content
    key_install = "\n".join(line for line in lines if line.startswith("cluster PKI ca.key:"))
    assert "install -m 600 -o root -g root /dev/null /etc/kubernetes/pki/ca.key.kubi-new" in (
        key_install
    )  # 0600 before a byte of the key is written
    docs = {d["kind"]: d for d in yaml.safe_load_all(written[CONFIG])}
    assert docs["InitConfiguration"]["bootstrapTokens"][0]["token"] == pki.bootstrap_token
    config = "\n".join(line for line in lines if line.startswith("kubeadm configuration:"))
    assert "kubeadm config validate --config /etc/kubernetes/kubi/kubeadm.yaml" in config
    assert "/dev/null /etc/kubernetes/kubi/kubeadm.yaml.kubi-new" in config  # 0600 from birth


def test_workers_get_no_pki_and_join(node):
    written = uploads(plan("deploys/kubernetes.py", "w1", node, facts()))
    assert not [path for path in written if path.startswith("/etc/kubernetes/pki/")]
    kinds = [d["kind"] for d in yaml.safe_load_all(written[CONFIG])]
    assert kinds == ["JoinConfiguration"]


def test_a_mirror_that_signs_again(node):
    node["kubernetes"] = {
        "apt_mirror": "http://10.20.0.1:3150",
        "packages_key": "0123456789ABCDEF0123456789ABCDEF01234567",
    }
    lines = plan("deploys/kubernetes.py", "w1", node, facts())
    key = next(line for line in lines if line.startswith("repository key kubernetes"))
    assert "http://10.20.0.1:3150/pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key" in key
    assert "--export 0123456789ABCDEF0123456789ABCDEF01234567" in key


def test_converged_node_plans_nothing(node):
    written = uploads(plan("deploys/kubernetes.py", "cp1", node, facts()))
    files = {
        path: managed(content, "600" if path.endswith((".key", ".yaml")) else "644")
        for path, content in written.items()
    }
    installed = {name: ["1.33.3-1.1"] for name in ("kubeadm", "kubelet", "kubectl")}
    keyring = {"fingerprints": [UPSTREAM_KEY], "signing_until": [None]}
    assert plan("deploys/kubernetes.py", "cp1", node, facts(files, installed, keyring)) == []


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_only_on_kubernetes_nodes(node, host):
    assert plan("deploys/kubernetes.py", host, node, {}) == []
