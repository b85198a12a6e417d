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

from pathlib import Path
from typing import Any

from kubi import helm, policy, upstream_charts
from kubi.config import Platform

CHART = "cilium"
RELEASE = "cilium"  # the name the chart's objects carry, as Helm would install it
NAMESPACE = "kube-system"


def archive_name() -> str:
    return upstream_charts.archive_name(CHART)


def in_use(platform: Platform) -> bool:
    """Whether the platform's pod network is Cilium (the component is on, for a cluster
    whose `kubernetes.pod_network` is cilium)."""
    return (
        platform.enabled("cilium")
        and platform.enabled("kubernetes")
        and platform.kubernetes.pod_network == "cilium"
    )


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
        "operator": {
            "replicas": min(2, len(nodes)),
            "resources": _resources("100m", "128Mi", "1Gi"),
        },
        # upstream sets none; every container requests and limits both (kubi/policy.py)
        "resources": _resources("100m", "512Mi", "2Gi"),  # the agent: maps grow with pods
        "initResources": _resources("10m", "64Mi", "256Mi"),
        "envoy": {"resources": _resources("50m", "128Mi", "1Gi")},
    }


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, dict[str, str]]:
    # a CPU limit of two cores: bursts (a node's first policy compile) are not throttled
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": "2", "memory": memory_limit},
    }


def render(platform: Platform, folder: Path) -> list[dict[str, Any]]:
    """Cilium's objects for `platform`, from the pinned chart archive in `folder`."""
    archive = upstream_charts.checked_archive(CHART, folder)
    return helm.template(archive, values(platform), RELEASE, NAMESPACE)


# The privileges of Cilium's pods (kubi/policy.py), as the pinned chart renders them: the
# pod network programs every node's own kernel, so it needs the node. Checked against the
# render by tests/unit/test_manifests.py, which fails on one more or one fewer.
_DATAPATH = "it programs the node's own network: eBPF maps, routes, iptables"
_STARTS_FIRST = "it runs before the pod network exists, so on the node's network"
_ROOT = "upstream's image runs as root; its capabilities are the ones listed"
_AGENT_MOUNTS = (
    "/etc/cni/net.d", "/opt/cni/bin", "/lib/modules", "/proc", "/proc/sys/kernel",
    "/proc/sys/net", "/run/cilium/cgroupv2", "/run/xtables.lock", "/sys/fs/bpf",
    "/var/run/cilium", "/var/run/cilium/envoy/sockets", "/var/run/netns",
)  # fmt: skip
_AGENT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "IPC_LOCK", "KILL", "NET_ADMIN", "NET_RAW", "SETGID",
    "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_MODULE", "SYS_RESOURCE",
)  # fmt: skip
_INIT = {  # init containers of the agent: what each adds to mount and tune the node
    "config": ("NET_ADMIN",),
    "mount-cgroup": ("SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"),
    "apply-sysctl-overwrites": ("SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"),
    "clean-cilium-state": ("NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_RESOURCE"),
    "mount-bpf-fs": (),
    "install-cni-binaries": (),
}


def _root(*containers: str) -> dict[str, str]:
    return {
        **policy.each([f"{c}: as root" for c in containers], _ROOT),
        **policy.each([f"{c}: may escalate" for c in containers], _ROOT),
    }


NEEDS: policy.Needs = {
    "DaemonSet kube-system/cilium": {
        "hostNetwork": _DATAPATH,
        **policy.each([f"hostPath {path}" for path in _AGENT_MOUNTS], _DATAPATH),
        "hostPort 9879": "its health endpoint, which the agents of other nodes probe",
        **_root("cilium-agent", *_INIT),
        **policy.each([f"cilium-agent: capability {c}" for c in _AGENT_CAPABILITIES], _DATAPATH),
        **policy.each(
            [f"{name}: capability {cap}" for name, caps in _INIT.items() for cap in caps],
            "it mounts the node's bpf and cgroup2 filesystems and sets its sysctls",
        ),
        "mount-bpf-fs: privileged": "mounting the node's bpf filesystem takes a privileged mount",
    },
    "DaemonSet kube-system/cilium-envoy": {
        "hostNetwork": _DATAPATH,
        **policy.each(
            [
                f"hostPath {p}"
                for p in (
                    "/sys/fs/bpf",
                    "/var/run/cilium/envoy/artifacts",
                    "/var/run/cilium/envoy/sockets",
                )
            ],
            "the agent hands it the node's L7 traffic through these sockets and maps",
        ),  # fmt: skip
        "hostPort 9964": "its health endpoint on the node",
        **_root("cilium-envoy"),
        **policy.each(
            [f"cilium-envoy: capability {c}" for c in ("NET_ADMIN", "SYS_ADMIN")], _DATAPATH
        ),
    },
    "Deployment kube-system/cilium-operator": {
        "hostNetwork": _STARTS_FIRST,
        **policy.each(
            ["hostPort 9234", "hostPort 9963"], f"its health and metrics ports: {_STARTS_FIRST}"
        ),
        "cilium-operator: as root": _ROOT,
    },
}
