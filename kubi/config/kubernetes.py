"""Settings of the Kubernetes cluster made with kubeadm (deploys/kubernetes.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, field_validator

from kubi.config.types import HttpUrl, LocalPath, Section, full

# The signing key of pkgs.k8s.io (every minor's channel; "isv:kubernetes OBS Project").
UPSTREAM_PACKAGES_KEY = "DE15B14486CD377B9E876E1A234654DA9A296436"

# What kubeadm patches (its patches.directory), and how it names a patch file.
PATCH_TARGETS = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
    "kubeletconfiguration", "corednsdeployment",
)  # fmt: skip
PATCH_NAME = re.compile(
    rf"(?:{'|'.join(PATCH_TARGETS)})[A-Za-z0-9_-]*(?:\+(?:strategic|merge|json))?\.(?:json|yaml)"
)

# A preflight check as kubeadm names it (`[ERROR HTTPProxyCIDR]`), or all.
PreflightCheck = Annotated[
    StrictStr,
    AfterValidator(
        full(r"[A-Za-z][A-Za-z0-9-]{0,62}", "must be a kubeadm preflight check's name, e.g. Swap")
    ),
]

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
    pod_network: Literal["cilium", "bridge"] = Field(
        "cilium",
        description="the pod network: cilium (production, kubi/cilium.py), or bridge: each "
        "node's pods on a bridge with routes to the other nodes, for nodes on one L2 network "
        "that cannot pull Cilium's images (the lab)",
    )
    ignore_preflight_errors: list[PreflightCheck] = Field(
        default_factory=list,
        description="kubeadm preflight checks whose failure is only a warning on this "
        "platform's init and joins (kubeadm's nodeRegistration.ignorePreflightErrors)",
    )
    kubeadm_patches: LocalPath | None = Field(
        None,
        description="a folder on the deployer of kubeadm patches (kubeadm's patches.directory: "
        "<target>[suffix][+strategic|merge|json].json|yaml), given to every init, join and "
        "upgrade",
    )

    @field_validator("kubeadm_patches")
    @classmethod
    def _patch_folder(cls, folder: Path | None) -> Path | None:
        if folder is None:
            return None
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder on this machine")
        for patch in sorted(folder.iterdir()):
            if not PATCH_NAME.fullmatch(patch.name) or not patch.is_file():
                raise ValueError(
                    f"{patch}: not a kubeadm patch file; name it "
                    "<target>[suffix][+strategic|merge|json].json|yaml, target one of "
                    + ", ".join(PATCH_TARGETS)
                )
        return folder
