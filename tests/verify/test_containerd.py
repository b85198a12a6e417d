"""containerd: the container runtime of every Kubernetes node, ready for the kubelet."""

from __future__ import annotations

import tomllib

from kubi import kubernetes, registry


def test_runtime_packages_installed_and_running(node):
    for package in ("containerd", "runc", "containernetworking-plugins"):
        assert node.package(package).is_installed, package
    service = node.service("containerd")
    assert service.is_running and service.is_enabled


def test_the_cri_plugin_and_its_snapshotter_are_up(node):
    # `ctr plugins ls`: TYPE ID PLATFORMS STATUS; a plugin that failed to start says "error"
    # (the overlayfs snapshotter on an unsuitable file system, a CRI configuration error).
    plugins = {
        (fields[0], fields[1]): fields[-1]
        for fields in map(str.split, node.check_output("ctr plugins ls").splitlines()[1:])
    }
    assert plugins[("io.containerd.grpc.v1", "cri")] == "ok"
    assert plugins[("io.containerd.snapshotter.v1", "overlayfs")] == "ok"


def test_configuration_in_force(node, platform):
    # What containerd runs with (its dump merges the file into its defaults).
    dumped = tomllib.loads(node.check_output("containerd config dump"))
    cri = dumped["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == kubernetes.sandbox_image(platform)
    systemd = platform.containerd.cgroup_driver == "systemd"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is systemd
    assert cri["registry"]["config_path"] == registry.CONTAINERD_CERTS_DIR
    assert node.file(f"{cri['cni']['bin_dir']}/bridge").exists  # the CNI plugins it calls
