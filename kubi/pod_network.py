"""The bridge pod network (`kubernetes.pod_network: bridge`): for nodes on one L2 network that
cannot pull a CNI's images, as in the lab (docs/kubernetes-lab.md, section 6).

Each node's pods live on its own bridge, `cni0`, in one /24 of `network.pod_cidr` (the
containernetworking plugins bridge, host-local and portmap, from Debian), and every node
routes each other node's /24 to that node's address. A node's /24 is chosen by the last
number of its address, so it is known when pyinfra plans and never moves when nodes come and
go; two nodes that would share one are refused with a clear error.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from kubi.config import Platform

CONFLIST = "/etc/cni/net.d/10-kubi-bridge.conflist"
ROUTES_UNIT = "kubi-pod-routes.service"
ROUTES_SCRIPT = "/usr/local/sbin/kubi-pod-routes"
ROUTES_PROTO = 201  # the routes' `proto`: the unit replaces exactly its own routes
NODE_PREFIX = 24


class PodNetworkError(ValueError):
    """Nodes whose pod subnets would overlap; the message names them and what to do."""


def node_subnets(platform: Platform, ip_of: dict[str, str]) -> dict[str, IPv4Network]:
    """Each Kubernetes node's pod /24, by host name."""
    cidr = platform.network.pod_cidr
    if cidr.prefixlen > NODE_PREFIX:
        raise PodNetworkError(
            f"network.pod_cidr {cidr} is smaller than one node's /{NODE_PREFIX}: the bridge "
            "pod network needs a /23 or larger"
        )
    subnets = list(cidr.subnets(new_prefix=NODE_PREFIX))
    found: dict[str, IPv4Network] = {}
    by_subnet: dict[IPv4Network, str] = {}
    for node in platform.hosts:
        if not node.is_kubernetes_node:
            continue
        subnet = subnets[int(IPv4Address(ip_of[node.name])) % 256 % len(subnets)]
        if subnet in by_subnet:
            raise PodNetworkError(
                f"hosts {by_subnet[subnet]} and {node.name} would both have pod subnet "
                f"{subnet} (the last number of their addresses, modulo the {len(subnets)} "
                f"/{NODE_PREFIX} of network.pod_cidr {cidr}); use a larger pod_cidr"
            )
        by_subnet[subnet] = node.name
        found[node.name] = subnet
    return found


def routes(
    node: str, subnets: dict[str, IPv4Network], ip_of: dict[str, str]
) -> list[tuple[str, str]]:
    """(subnet, via) for every other node's pods."""
    return [(str(subnet), ip_of[name]) for name, subnet in subnets.items() if name != node]
