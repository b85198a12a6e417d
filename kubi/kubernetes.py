"""What the Kubernetes components share: images and versions read from the version table."""

from __future__ import annotations

from kubi.config import Platform, matrices

# Where kubeadm's images come from upstream (kubeadm's own default imageRepository).
UPSTREAM_IMAGES = "registry.k8s.io"


def sandbox_image(platform: Platform) -> str:
    """The pause image kubeadm of the platform's Kubernetes version expects; containerd
    must use the same, or kubeadm warns and the kubelet pulls a second one."""
    pause = matrices.kubernetes_minor(platform.versions.kubernetes).images.pause
    return f"{UPSTREAM_IMAGES}/pause:{pause}"
