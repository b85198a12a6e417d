"""Settings of the container runtime on Kubernetes nodes (deploys/containerd.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from kubi.config.kubernetes import Fingerprint
from kubi.config.types import HttpUrl, Section, Version

# Docker's key for download.docker.com (docs.docker.com, "Install Docker Engine on Debian").
DOCKER_PACKAGES_KEY = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"


class ContainerdSettings(Section):
    """containerd and runc of the Kubernetes nodes, and the CNI plugins (Debian's).

    Debian 12's containerd is the 1.6 series, which Kubernetes supports up to 1.34;
    later minors need Docker's `containerd.io` package (containerd and runc, 2.x)."""

    source: Literal["docker", "debian"] = Field(
        "docker",
        description="docker: containerd.io of Docker's apt repository at `version`; "
        "debian: Debian 12's containerd 1.6 and runc (Kubernetes up to 1.34)",
    )
    version: Version = Field(
        "2.2.1",
        description="the containerd.io version installed with source docker (any package "
        "revision); its series must run versions.kubernetes (kubi/config/kubernetes.toml)",
    )
    apt_mirror: HttpUrl | None = Field(
        None,
        description="with source docker, base URL mirroring download.docker.com as "
        "<mirror>/download.docker.com/<path>; default: upstream (through the package proxy)",
    )
    packages_key: Fingerprint = Field(
        DOCKER_PACKAGES_KEY,
        description="with source docker, fingerprint of the key that signs the packages",
    )
    cgroup_driver: Literal["systemd", "cgroupfs"] = Field(
        "systemd",
        description="how runc groups containers; the kubelet is configured with the same",
    )
    restrict_oom_score_adj: StrictBool = Field(
        False,
        description="true where nothing may lower an OOM score (nodes that are containers)",
    )
