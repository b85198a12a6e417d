"""The container images a platform runs, and their copies in the platform registry.

With the images component on, the repository host copies every image the platform needs
into the platform registry, under the upstream registry's name as the first part of the
repository (``registry.k8s.io/kube-apiserver`` is kept as
``<platform registry>/registry.k8s.io/kube-apiserver``), and every node's containerd pulls
each upstream registry through it (a `hosts.toml` per upstream registry, with the path
overridden). Pods, kubeadm and containerd keep the upstream names: nothing is renamed, and a
platform switches between upstream and its own registry without touching a manifest.
"""

from __future__ import annotations

import functools
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from kubi import dashboard, upstream_charts
from kubi.config import Platform, matrices
from kubi.config.types import IMAGE_NAME

KUBERNETES_REGISTRY = "registry.k8s.io"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
# What a copy of an image is named by: its index, or its one manifest.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REF = re.compile(rf"{IMAGE_NAME}(?:@(?P<digest>{DIGEST.pattern}))?")


@dataclass(frozen=True)
class Image:
    """One image, by its upstream name (``registry.k8s.io/pause:3.10``), or that name
    pinned by digest as a chart renders it (``quay.io/cilium/cilium:v1.19.6@sha256:...``)."""

    ref: str

    def __post_init__(self) -> None:
        if not _REF.fullmatch(self.ref):
            raise ValueError(
                f"{self.ref!r} is not an image name as <registry>/<path>:<tag>[@sha256:<digest>]"
            )

    def _part(self, name: str) -> str | None:
        match = _REF.fullmatch(self.ref)
        assert match is not None  # checked when made
        return match.group(name)

    @property
    def registry(self) -> str:
        return self._part("registry") or ""

    @property
    def tag(self) -> str:
        return self._part("tag") or ""

    @property
    def digest(self) -> str | None:
        """The digest the image is pinned by, if it is."""
        return self._part("digest")

    @property
    def repository(self) -> str:
        """Its repository in the platform registry: ``registry.k8s.io/pause``."""
        return f"{self.registry}/{self._part('path')}"

    @property
    def archive_name(self) -> str:
        """Its OCI archive's file name in `images.archives`: ``pause_3.10.tar``."""
        return f"{self.repository.rsplit('/', 1)[-1]}_{self.tag}.tar"


def needed(platform: Platform) -> list[Image]:
    """Every image the platform runs: kubeadm's for the pinned Kubernetes version (the
    version table names etcd, CoreDNS and pause), CoreDNS only where it is deployed, and
    the images of the upstream charts kubi deploys, pinned by digest
    (kubi/config/upstream_charts.toml)."""
    version = platform.versions.kubernetes
    images = matrices.kubernetes_minor(version).images
    refs = [f"{KUBERNETES_REGISTRY}/{name}:v{version}" for name in CONTROL_PLANE]
    refs += [f"{KUBERNETES_REGISTRY}/pause:{images.pause}"]
    refs += [f"{KUBERNETES_REGISTRY}/etcd:{images.etcd}"]
    if platform.kubernetes.coredns:
        refs += [f"{KUBERNETES_REGISTRY}/coredns/coredns:{images.coredns}"]
    for chart in upstream_charts.used(platform):
        refs += matrices.upstream_chart(chart).all_images
    if dashboard.in_use(platform):
        refs += [dashboard.image()]
    return [Image(ref) for ref in refs]


def upstream_registries(platform: Platform) -> list[str]:
    """The upstream registries the platform's images come from, each mirrored by its own."""
    return list(dict.fromkeys(image.registry for image in needed(platform)))


def from_platform_registry(platform: Platform) -> bool:
    """Whether nodes pull the platform's images through its own registry."""
    return platform.enabled("images")


class ArchiveError(ValueError):
    """An image archive kubi cannot use; the message names the file and what to do."""


@functools.lru_cache(maxsize=64)  # the config check and the deploy read each once a run
def archive_digest(archive: Path) -> str:
    """The digest the image of an OCI archive has once copied as it is: its one manifest's
    (skopeo copies that manifest, and its blobs, unchanged)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            index = json.load(member) if member else {}
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise ArchiveError(
            f"{archive}: not an OCI image archive with an index.json ({exc}); write it with "
            f"`skopeo copy docker://<image> oci-archive:{archive}`"
        ) from exc
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ArchiveError(f"{archive}: its index.json must name exactly one image")
    digest = manifests[0].get("digest") if isinstance(manifests[0], dict) else None
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ArchiveError(f"{archive}: its index.json names no sha256 manifest digest")
    return digest


def check_archives(platform: Platform) -> list[str]:
    """With `images.archives`, one problem per image whose archive is missing (the config
    check, before anything changes)."""
    folder = platform.images.archives
    if folder is None or not from_platform_registry(platform):
        return []
    if not folder.is_dir():
        return [f"images.archives: {folder} is not a folder on this machine"]
    problems = []
    for image in needed(platform):
        archive = folder / image.archive_name
        if not archive.is_file():
            problems.append(
                f"images.archives: no {archive} for {image.ref}; put it there (skopeo copy "
                f"docker://{image.ref} oci-archive:{archive}) or leave images.archives unset "
                "to copy from upstream"
            )
            continue
        try:
            digest = archive_digest(archive)
        except ArchiveError as exc:
            problems.append(f"images.archives: {exc}")
            continue
        if image.digest and digest != image.digest:
            problems.append(
                f"images.archives: {archive} holds {digest}, not {image.ref} (pinned in "
                "kubi/config/upstream_charts.toml); write it again from that exact name"
            )
    return problems
