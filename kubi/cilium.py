"""Cilium, the platform's pod network (`kubernetes.pod_network: cilium`): its objects are
rendered from the pinned upstream chart (kubi/config/upstream_charts.toml) by Helm's own
engine (kubi/helm.py), with kubi's values, and go into the cluster through kubi's apply
layer like every other object (kubi/apply.py), not as a Helm release.

The values say what the platform is:

- IPAM `kubernetes`: each node's pods take the node's `podCIDR`, which kube-controller-
  manager carves out of `network.pod_cidr` (kubeadm's podSubnet);
- the API as every node reaches it (`Platform.api_endpoint`, the node-local api_proxy):
  Cilium starts before any Service works, so it cannot use the cluster's `kubernetes`
  Service;
- kube-proxy stays (kubeadm deploys it); Cilium does not replace it;
- Hubble off: its certificates would be generated again at each render (the chart makes
  them with Helm's random functions), so the objects would never be the same twice.

The chart's images are pinned by digest in the chart itself (quay.io/cilium/...).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from kubi import helm
from kubi.config import Platform, matrices

CHART = "cilium"
RELEASE = "cilium"  # the name the chart's objects carry, as Helm would install it
NAMESPACE = "kube-system"


class CiliumError(Exception):
    """The chart cannot be used; the message names the file and what to do."""


def archive_name() -> str:
    return f"{CHART}-{matrices.upstream_chart(CHART).version}.tgz"


def checked_archive(folder: Path) -> Path:
    """`folder`/cilium-<version>.tgz, once its sha256 is the pinned digest."""
    pinned = matrices.upstream_chart(CHART)
    path = folder / archive_name()
    if not path.is_file():
        raise CiliumError(
            f"no {path}: put the chart archive there ({pinned.repository}{archive_name()})"
        )
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != pinned.digest:
        raise CiliumError(
            f"{path}: sha256 {found}, not the pinned {pinned.digest} of cilium "
            f"{pinned.version} (kubi/config/upstream_charts.toml); fetch it again"
        )
    return path


def in_use(platform: Platform) -> bool:
    """Whether the platform's pod network is Cilium (the component is on, for a cluster
    whose `kubernetes.pod_network` is cilium)."""
    return (
        platform.enabled("cilium")
        and platform.enabled("kubernetes")
        and platform.kubernetes.pod_network == "cilium"
    )


def check_chart(platform: Platform) -> list[str]:
    """A config problem when `cilium.charts` is given without the pinned archive in it: said
    before anything changes, like every other input of the config."""
    if not in_use(platform):
        return []
    folder = platform.cilium.charts
    if folder is None:
        return []
    try:
        checked_archive(folder)
    except CiliumError as problem:
        return [f"cilium.charts: {problem}"]
    return []


def values(platform: Platform) -> dict[str, Any]:
    host, _, port = platform.api_endpoint.rpartition(":")
    nodes = [h for h in platform.hosts if h.is_kubernetes_node]
    return {
        "ipam": {"mode": "kubernetes"},
        "k8sServiceHost": host,
        "k8sServicePort": int(port),
        "kubeProxyReplacement": False,
        "hubble": {"enabled": False},
        # two operators (the chart's default) need two nodes to land on
        "operator": {"replicas": min(2, len(nodes))},
    }


def render(platform: Platform, folder: Path) -> list[dict[str, Any]]:
    """Cilium's objects for `platform`, from the pinned chart archive in `folder`."""
    return helm.template(checked_archive(folder), values(platform), RELEASE, NAMESPACE)
