"""What the Kubernetes components share: the packages' repository and the images of the
version table (kubi/config/kubernetes.toml)."""

from __future__ import annotations

from kubi.aptsource import AptSource, Owner
from kubi.config import Platform, matrices

# Where kubeadm's images come from upstream (kubeadm's own default imageRepository).
UPSTREAM_IMAGES = "registry.k8s.io"
PACKAGES = ("kubeadm", "kubelet", "kubectl")
PREFERENCES_PATH = "/etc/apt/preferences.d/kubi-kubernetes"

OWNER = Owner(
    component="kubernetes",
    pinned_in="kubernetes.packages_key (default: kubi/config/kubernetes.py)",
    mirror_setting="kubernetes.apt_mirror",
    subject="Kubernetes",
    newer_hint=(
        "set versions.kubernetes to the installed version, or upgrade the cluster with kubi"
    ),
    pins_why=(
        "kubeadm, kubelet and kubectl stay at the platform's\n"
        "versions.kubernetes, whatever newer the repository offers: a cluster changes\n"
        "version by an upgrade, node by node, never by an apt upgrade."
    ),
)


def sandbox_image(platform: Platform) -> str:
    """The pause image kubeadm of the platform's Kubernetes version expects; containerd
    must use the same, or kubeadm warns and the kubelet pulls a second one."""
    pause = matrices.kubernetes_minor(platform.versions.kubernetes).images.pause
    return f"{UPSTREAM_IMAGES}/pause:{pause}"


def apt_source(platform: Platform) -> AptSource:
    """The minor's channel on pkgs.k8s.io (a flat repository), its key pinned, the three
    packages pinned to the platform's exact version (any package revision)."""
    version = platform.versions.kubernetes
    channel = matrices.kubernetes_minor(version).packages
    return AptSource(
        name="kubernetes",
        url=channel,
        suite="/",
        components="",
        key_url=f"{channel}Release.key",
        fingerprint=platform.kubernetes.packages_key,
        pins={package: f"{version}-*" for package in PACKAGES},
        owner=OWNER,
    )
