"""Plans of deploys/containerd.py: the container runtime of the Kubernetes nodes."""

from __future__ import annotations

import tomllib

import pytest

from .conftest import managed
from .harness import plan, uploads

CONFIG = "/etc/containerd/config.toml"


KEYRING = "/etc/apt/keyrings/kubi-containerd.gpg"
SOURCES = "/etc/apt/sources.list.d/kubi-containerd.list"
PINS = "/etc/apt/preferences.d/kubi-containerd"
DOCKER_KEY = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"


def facts(config=None, installed=None, active=False, keyring=None, files=None):
    files = files or {}
    return {
        "deb.DebPackages": {"_": installed or {}},
        "facts.apt.AptKeyrings": {f"keyrings={KEYRING}": {KEYRING: keyring}},
        "kubi.facts.ManagedFile": {
            f"path={CONFIG}": config,
            **{f"path={path}": files.get(path) for path in (SOURCES, PINS)},
        },
        "kubi.facts.ServiceState": {"unit=containerd": {"active": active, "enabled": active}},
    }


@pytest.fixture
def node(description):
    description["versions"] = {"kubernetes": "1.33.3"}
    description["containerd"] = {"source": "debian"}  # Debian 12's runs 1.33
    return description


@pytest.fixture
def docker(description):
    description["versions"] = {"kubernetes": "1.36.3"}  # the defaults: containerd.io 2.2.1
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


def test_containerd_io_from_dockers_repository_with_its_key_and_version_pinned(docker):
    lines = plan("deploys/containerd.py", "w1", docker, facts())
    written = uploads(lines)
    key = next(
        line for line in lines if line.startswith(f"repository key containerd ({DOCKER_KEY})")
    )
    assert "http://HTTPS///download.docker.com/linux/debian/gpg" in key  # the package proxy's
    assert written[SOURCES].endswith(
        f"deb [signed-by={KEYRING}] http://HTTPS///download.docker.com/linux/debian/ bookworm "
        "stable\n"
    )
    assert "Package: containerd.io\nPin: version 2.2.1-*\nPin-Priority: 1001\n" in written[PINS]
    install = next(line for line in lines if line.startswith("containerd packages containerd.io"))
    assert "install containerd.io 2>&1)" in install
    cni = next(line for line in lines if line.startswith("CNI plugins:"))
    assert "install containernetworking-plugins 2>&1)" in cni  # Debian's, with either source
    assert (
        lines.index(install)
        < lines.index(cni)
        < lines.index(next(line for line in lines if line.startswith("containerd configuration:")))
    )
    cri = tomllib.loads(written[CONFIG])["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.2"  # kubeadm 1.36.3's own


def test_containerd_io_converged_plans_nothing(docker):
    written = uploads(plan("deploys/containerd.py", "w1", docker, facts()))
    installed = {
        "containerd.io": ["2.2.1-1~debian.12~bookworm"],
        "containernetworking-plugins": ["1"],
    }
    keyring = {"fingerprints": [DOCKER_KEY], "signing_until": [None]}
    current = facts(
        managed(written[CONFIG]), installed, True, keyring=keyring,
        files={SOURCES: managed(written[SOURCES]), PINS: managed(written[PINS])},
    )  # fmt: skip
    assert plan("deploys/containerd.py", "w1", docker, current) == []


def test_lab_like_nodes_use_cgroupfs_and_keep_oom_scores(node):
    node["containerd"] |= {"cgroup_driver": "cgroupfs", "restrict_oom_score_adj": True}
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
