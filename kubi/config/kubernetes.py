"""Settings of the Kubernetes cluster made with kubeadm (deploys/kubernetes.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictStr

from kubi.config.types import HttpUrl, Section, full

# The signing key of pkgs.k8s.io (every minor's channel; "isv:kubernetes OBS Project").
UPSTREAM_PACKAGES_KEY = "DE15B14486CD377B9E876E1A234654DA9A296436"

Fingerprint = Annotated[
    StrictStr,
    AfterValidator(
        full(r"[0-9A-F]{40}", "must be a key's full fingerprint: 40 upper-case hex digits")
    ),
]


class KubernetesSettings(Section):
    """The cluster: where its packages come from, and what its nodes are."""

    apt_mirror: HttpUrl | None = Field(
        None,
        description="base URL mirroring pkgs.k8s.io as <mirror>/pkgs.k8s.io/<path>; "
        "default: upstream (through the package proxy when hosts use one)",
    )
    packages_key: Fingerprint = Field(
        UPSTREAM_PACKAGES_KEY,
        description="fingerprint of the key that signs the packages; another only for a "
        "mirror that signs them again",
    )
    coredns: StrictBool = Field(
        True, description="deploy CoreDNS (false where its image cannot be had: the lab)"
    )
    nodes_are_containers: StrictBool = Field(
        False,
        description="the nodes are containers (the lab): the kubelet tolerates the "
        "machine's swap and kube-proxy leaves conntrack's size alone",
    )
