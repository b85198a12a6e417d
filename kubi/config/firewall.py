"""Settings of the host firewalls (deploys/firewall.py): who may reach what, by network.

Between platform hosts the rules follow from the roles (kubi/firewall.py); these fields
name the networks outside the platform that need a way in.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from pydantic import Field

from kubi.config.types import Cidr, Section

ANYWHERE = IPv4Network("0.0.0.0/0")


class FirewallSettings(Section):
    """Networks outside the platform hosts that may connect to them (IPv4; IPv6 is refused)."""

    admin_networks: list[Cidr] = Field(
        default_factory=list,
        description="where operators and the deployer connect from directly, not through the "
        "input host: SSH and the service ports of every host. Empty: every host but the input "
        "host takes SSH only from the input host (deploy through it, e.g. ssh -J)",
    )
    ssh_from: list[Cidr] = Field(
        default_factory=lambda: [ANYWHERE],
        description="who may reach the input host's SSH, the way in for people",
    )
    public_ingress_from: list[Cidr] = Field(
        default_factory=lambda: [ANYWHERE],
        description="who may reach the public ingress NodePorts (your load balancer)",
    )
