"""Where the nodes' container runtime comes from, and whether it runs the platform's
Kubernetes (containerd's own support table, kept in kubi/config/kubernetes.toml).

- source debian: Debian 12's containerd (the 1.6 series) and runc;
- source docker: Docker's `containerd.io` (containerd and runc in one package, replacing
  Debian's) from download.docker.com, key pinned, version pinned, like every vendor
  repository (kubi/aptsource.py). The CNI plugins come from Debian with either source.
"""

from __future__ import annotations

from kubi.aptsource import AptSource, Owner
from kubi.config import Platform, matrices

DEBIAN_SERIES = "1.6"  # Debian 12 (bookworm) ships containerd 1.6.20
DEBIAN_PACKAGES = ("containerd", "runc")
CNI_PACKAGES = ("containernetworking-plugins",)
DOCKER_PACKAGE = "containerd.io"
DOCKER_REPOSITORY = "https://download.docker.com/linux/debian"
PREFERENCES_PATH = "/etc/apt/preferences.d/kubi-containerd"

OWNER = Owner(
    component="containerd",
    pinned_in="containerd.packages_key (default: kubi/config/containerd.py)",
    mirror_setting="containerd.apt_mirror",
    subject="containerd",
    newer_hint="set containerd.version to the installed version",
    pins_why=(
        "containerd.io stays at the platform's containerd.version,\n"
        "whatever newer the repository offers: a runtime changes under running pods only\n"
        "when the platform says so."
    ),
)


def series(platform: Platform) -> str:
    """The containerd series the nodes run: '1.6' from Debian, else containerd.version's."""
    settings = platform.containerd
    if settings.source == "debian":
        return DEBIAN_SERIES
    return ".".join(settings.version.split(".")[:2])


def apt_source(platform: Platform) -> AptSource:
    """Docker's repository for Debian 12, containerd.io pinned to containerd.version."""
    settings = platform.containerd
    return AptSource(
        name="containerd",
        url=DOCKER_REPOSITORY,
        suite="bookworm",
        components="stable",
        key_url=f"{DOCKER_REPOSITORY}/gpg",
        fingerprint=settings.packages_key,
        pins={DOCKER_PACKAGE: f"{settings.version}-*"},
        owner=OWNER,
    )


def check_support(platform: Platform) -> list[str]:
    """A problem when the nodes' containerd does not run the platform's Kubernetes."""
    if not (platform.enabled("containerd") and platform.enabled("kubernetes")):
        return []
    version = platform.versions.kubernetes
    supported = matrices.kubernetes_minor(version).containerd
    have = series(platform)
    if have in supported:
        return []
    source = platform.containerd.source
    what = (
        f"Debian 12's containerd {have}"
        if source == "debian"
        else f"containerd.version {platform.containerd.version} ({have})"
    )
    fix = (
        f"set containerd.source: docker and a containerd.version of {supported.low} to "
        f"{supported.high}"
        if source == "debian"
        else f"set containerd.version to a release of {supported.low} to {supported.high}"
        + (" (or containerd.source: debian)" if DEBIAN_SERIES in supported else "")
    )
    return [
        f"containerd: {what} does not run Kubernetes {version}, which containerd "
        f"{supported.low} to {supported.high} do (kubi/config/kubernetes.toml): {fix}"
    ]
