"""Plans of deploys/containerd.py: the container runtime of the Kubernetes nodes."""

from __future__ import annotations

import tomllib

import pytest

from .conftest import managed
from .harness import plan, uploads

CONFIG = "/etc/containerd/config.toml"


def facts(config=None, installed=None, active=False):
    return {
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ManagedFile": {f"path={CONFIG}": config},
        "kubi.facts.ServiceState": {"unit=containerd": {"active": active, "enabled": active}},
    }


@pytest.fixture
def node(description):
    description["versions"] = {"kubernetes": "1.33.3"}
    return description


def test_fresh_node(node):
    lines = plan("deploys/containerd.py", "w1", node, facts())
    assert "install containerd runc containernetworking-plugins 2>&1)" in lines[0]
    cri = tomllib.loads(uploads(lines)[CONFIG])["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"  # kubeadm 1.33.3's own
    assert cri["restrict_oom_score_adj"] is False
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True  # the kubelet's default driver
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"  # Debian's plugins
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"  # the registry's
    install = [line for line in lines if line.startswith("containerd configuration:")][-1]
    # Checked before containerd restarts with it; a refused file is put back.
    assert "containerd --config /etc/containerd/config.toml config dump" in install
    assert install.index("config dump") < install.index("systemctl restart containerd")
    assert any(line.startswith("containerd running:") for line in lines)


def test_lab_like_nodes_use_cgroupfs_and_keep_oom_scores(node):
    node["containerd"] = {"cgroup_driver": "cgroupfs", "restrict_oom_score_adj": True}
    cri = tomllib.loads(uploads(plan("deploys/containerd.py", "cp1", node, facts()))[CONFIG])
    cri = cri["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["restrict_oom_score_adj"] is True


def test_converged_plans_nothing(node):
    written = uploads(plan("deploys/containerd.py", "w1", node, facts()))
    installed = {name: ["1"] for name in ("containerd", "runc", "containernetworking-plugins")}
    current = facts(managed(written[CONFIG]), installed, True)
    assert plan("deploys/containerd.py", "w1", node, current) == []


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_only_on_kubernetes_nodes(node, host):
    assert plan("deploys/containerd.py", host, node, {}) == []
