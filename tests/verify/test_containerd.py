"""containerd: the container runtime of every Kubernetes node, ready for the kubelet."""

from __future__ import annotations

import tomllib

from kubi import containerd, kubernetes, registry


def test_runtime_packages_installed_and_running(node, platform):
    runtime = (
        containerd.DEBIAN_PACKAGES
        if platform.containerd.source == "debian"
        else (containerd.DOCKER_PACKAGE,)
    )
    for package in (*runtime, *containerd.CNI_PACKAGES):
        assert node.package(package).is_installed, package
    if platform.containerd.source == "docker":
        assert node.package(containerd.DOCKER_PACKAGE).version.startswith(
            f"{platform.containerd.version}-"
        )
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


def _in_force(dumped: dict) -> dict:
    """The CRI settings kubi writes, from `containerd config dump`: containerd 1.x dumps its
    version 2 format, 2.x its own (version 3 and later: the CRI split into an images and a
    runtime plugin, per containerd's docs/cri/config.md)."""
    plugins = dumped["plugins"]
    if dumped.get("version", 2) <= 2:
        cri = plugins["io.containerd.grpc.v1.cri"]
        images, runtime = cri, cri
        sandbox = cri["sandbox_image"]
        cni_bin = cri["cni"]["bin_dir"]
    else:
        images = plugins["io.containerd.cri.v1.images"]
        runtime = plugins["io.containerd.cri.v1.runtime"]
        sandbox = images["pinned_images"]["sandbox"]
        cni_bin = (runtime["cni"].get("bin_dirs") or [runtime["cni"].get("bin_dir")])[0]
    return {
        "sandbox": sandbox,
        "systemd": runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"],
        "config_path": images["registry"]["config_path"],
        "cni_bin": cni_bin,
    }


def test_configuration_in_force(node, platform):
    # What containerd runs with (its dump merges the file into its defaults).
    cri = _in_force(tomllib.loads(node.check_output("containerd config dump")))
    assert cri["sandbox"] == kubernetes.sandbox_image(platform)
    assert cri["systemd"] is (platform.containerd.cgroup_driver == "systemd")
    assert cri["config_path"] == registry.CONTAINERD_CERTS_DIR
    assert node.file(f"{cri['cni_bin']}/bridge").exists  # the CNI plugins it calls


def test_the_series_runs_the_platforms_kubernetes(node, platform):
    said = node.check_output("containerd --version").split()  # containerd <url> v1.6.20 <sha>
    version = next(word.lstrip("v") for word in said if word.lstrip("v")[:1].isdigit())
    assert ".".join(version.split(".")[:2]) == containerd.series(platform)
