"""Checks across the description: role groups, network ranges, hosts against ranges.

They run apart from the pydantic model so that one mistake does not hide another: a bad
field in one host still lets kubi report an even control plane or overlapping ranges.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from kubi.config.common import NetworkSettings
from kubi.config.errors import host_name, label, showable
from kubi.config.types import parse_cidr
from kubi.roles import ALLOWED_ROLE_SETS, ROLES, SINGLE_HOST_ROLES

if TYPE_CHECKING:
    from kubi.config.platform import Platform


def _plain(name: str) -> str:
    return name if showable(name) else "(not shown)"


def check_groups(groups: Any) -> list[str]:
    """Role groups: present, not empty, right sizes, allowed role combinations."""
    if not isinstance(groups, dict):
        return []  # the model already reported the wrong type or the missing field
    problems = []
    roles_of: dict[str, list[str]] = {}
    for role in ROLES:
        entries = groups.get(role)
        if not entries:
            problems.append(
                f"group {role!r}: missing or empty; every platform needs it "
                f"(groups: {', '.join(ROLES)})"
            )
            continue
        if not isinstance(entries, list):
            continue
        names = [n for n in map(host_name, entries) if n]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"group {role!r}: host {label(name)} is listed twice")
        for name in dict.fromkeys(names):
            roles_of.setdefault(name, []).append(role)
        if role in SINGLE_HOST_ROLES and len(names) > 1:
            problems.append(
                f"group {role!r}: {len(names)} hosts ({', '.join(map(_plain, names))}); "
                "this role runs on exactly one host"
            )
        if role == "control_plane" and names and len(names) % 2 == 0:
            problems.append(
                f"group 'control_plane': {len(names)} hosts; etcd needs an odd number "
                "(1, 3, 5) to keep quorum: add or remove one"
            )
    for name, roles in roles_of.items():
        if len(roles) > 1 and set(roles) not in ALLOWED_ROLE_SETS:
            problems.append(
                f"host {label(name)}: in groups {', '.join(roles)}; a host may only combine "
                "control_plane and workers: give each service role its own host"
            )
    return problems


def check_network(network: Any) -> list[str]:
    """Network ranges must not overlap; each range that parses is compared with the others."""
    if isinstance(network, NetworkSettings):
        network = network.model_dump()
    if not isinstance(network, dict):
        return []
    defaults = NetworkSettings()
    candidates = [
        ("network.pod_cidr", network.get("pod_cidr", defaults.pod_cidr)),
        ("network.service_cidr", network.get("service_cidr", defaults.service_cidr)),
    ]
    host_cidrs = network.get("host_cidrs") or []
    if isinstance(host_cidrs, list):
        candidates += [(f"network.host_cidrs[{i}]", c) for i, c in enumerate(host_cidrs)]
    named = []
    for name, value in candidates:
        try:
            parsed = parse_cidr(value) if isinstance(value, str) else IPv4Network(value)
            named.append((name, parsed))
        except (ValueError, TypeError):
            continue  # malformed: the model already reported it
    problems = []
    for i, (name_a, net_a) in enumerate(named):
        for name_b, net_b in named[i + 1 :]:
            if net_a.overlaps(net_b):
                problems.append(
                    f"field {name_a} ({net_a}) overlaps {name_b} ({net_b}): "
                    "pick ranges that do not overlap"
                )
    return problems


def check_hosts(platform: Platform) -> list[str]:
    """Checks across hosts and networks: duplicate addresses, addresses in the wrong range."""
    problems = []
    seen: dict[str, str] = {}
    for host in platform.hosts:
        for value in dict.fromkeys(str(v) for v in (host.address, host.ip) if v is not None):
            if value in seen:
                problems.append(
                    f"host {host.name!r}: address {value} is also used by host {seen[value]!r}; "
                    "every host needs its own address"
                )
            else:
                seen[value] = host.name
        if host.ip is None:
            continue
        net = platform.network
        for field, cidr in (("pod_cidr", net.pod_cidr), ("service_cidr", net.service_cidr)):
            if host.ip in cidr:
                problems.append(
                    f"host {host.name!r}: ip {host.ip} lies inside network.{field} ({cidr}); "
                    "move the cluster range away from the host network"
                )
        if net.host_cidrs and not any(host.ip in c for c in net.host_cidrs):
            problems.append(
                f"host {host.name!r}: ip {host.ip} is outside network.host_cidrs "
                f"({', '.join(map(str, net.host_cidrs))}); fix the ip or add its network"
            )
    return problems
