"""The host firewalls: which sources may open which ports of each host, as nftables rules.

Every platform host gets one nftables table, ``inet kubi``, replaced as a whole on each
change (other tables, such as kube-proxy's, are never touched). What it lets in follows
from the host's roles and the components that are on:

- SSH: on the input host from ``firewall.ssh_from`` (anywhere by default: it is the way
  in); on every other host only from the input host and ``firewall.admin_networks``;
- the repository host: the registry's TLS port and the package proxy, from the platform
  hosts; the output host: its nginx (Graylog, UIs) and the GELF input, from the platform
  hosts; a control plane: the Kubernetes API from the platform hosts and the pods, etcd
  from the control planes;
- Kubernetes nodes accept everything else from each other and from the pods (the CNI's
  traffic, the kubelet), etcd excepted; NodePorts are filtered before kube-proxy rewrites
  them: the public ingress from ``firewall.public_ingress_from``, the admin ingress from the
  input and output hosts, the others from the platform hosts;
- ``firewall.admin_networks`` reach every port listed above.

On the input host an output chain confines people: every account with a uid in the
login range (UID_MIN-UID_MAX of /etc/login.defs) but the operators and the deploy's own
account reaches only the cockpit and the Kubernetes API stream on 127.0.0.1; every other
connection it opens is refused, whether from a shell, a ProxyCommand or a forward sshd
opens for it (sshd opens forwards as the account itself).

Everything else is refused with a TCP reset or an ICMP "administratively prohibited",
so a refused connection fails at once with a clear error instead of timing out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses, ip_address

from kubi.config import Host, Platform
from kubi.templates import render

# Where the deploy keeps the rules, loaded by the kubi-firewall unit at boot.
RULES_FILE = "/etc/kubi/firewall.nft"
UNIT = "kubi-firewall"
# Kubernetes' default NodePort range (the ingress ports are inside it).
NODEPORTS = (30000, 32767)
ETCD_PORTS = "2379-2380"
COMMENT_PREFIX = "kubi-firewall"


@dataclass(frozen=True)
class Opening:
    """Connections a host accepts: `ports` (``22``, ``2379-2380``, ``30090, 30443``) over
    `proto` (``tcp``, ``tcp, udp``), from `sources` (networks; ``None``: anywhere)."""

    ports: str
    sources: tuple[IPv4Network, ...] | None
    why: str
    proto: str = "tcp"

    def admits(self, address: str, port: int, proto: str = "tcp") -> bool:
        if proto not in self.proto.split(", "):
            return False
        if not any(_within(port, ports) for ports in self.ports.split(", ")):
            return False
        if self.sources is None:
            return True
        ip = ip_address(address)
        return isinstance(ip, IPv4Address) and any(ip in net for net in self.sources)


@dataclass(frozen=True)
class Ruleset:
    """The rules of one host, and their nftables text."""

    openings: tuple[Opening, ...]
    # Kubernetes nodes only: sources that may open anything (other nodes and the pods),
    # etcd excepted, and the NodePort filter.
    cluster_peers: tuple[IPv4Network, ...]
    nodeports: tuple[Opening, ...]
    # Input host only: the cockpit and API stream ports people may reach on 127.0.0.1.
    people_ports: tuple[int, ...]
    ssh_port: int

    def text(self, exempt: Sequence[str], uid_range: tuple[int, int]) -> str:
        """The ruleset file, stamped with a digest of its own rules (see `digest`)."""
        values = {
            "openings": self.openings,
            "cluster_peers": self.cluster_peers,
            "nodeports": self.nodeports,
            "people_ports": self.people_ports,
            "exempt": sorted(set(exempt)),
            "uid_range": uid_range,
            "etcd_ports": ETCD_PORTS,
        }
        body = render("firewall", "kubi.nft", digest="", **values)
        return render("firewall", "kubi.nft", digest=digest(body), **values)

    def ssh_refuses(self, client: str | None) -> bool:
        """Whether these rules would refuse a new SSH connection from `client` (the
        address the deploy connects from, as the host sees it)."""
        if client is None:
            return False  # not over SSH (pyinfra's @local): nothing to lock out
        return not any(o.admits(client, self.ssh_port) for o in self.openings)


def rules_file(
    cfg: Platform, node: Host, ip_of: dict[str, str], uid_range: tuple[int, int]
) -> tuple[Ruleset, str]:
    """The firewall of `node` and the text of its rules file."""
    rules = ruleset(cfg, node, ip_of)
    # Accounts that keep their way out of the input host: operators and the deploy's own.
    # By name: nft resolves them when it loads the rules, after the bastion (earlier in
    # the run) has made the accounts, so a first run converges at once.
    exempt = []
    if rules.people_ports:
        if cfg.enabled("bastion"):
            exempt += [u.name for u in cfg.users if u.role == "ops"]
        if node.ssh_user != "root":
            exempt.append(node.ssh_user)
    return rules, rules.text(exempt, uid_range)


def _within(port: int, ports: str) -> bool:
    low, _, high = ports.partition("-")
    return int(low) <= port <= int(high or low)


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def loaded_digest(text: str) -> str:
    """The digest the file `text` stamps into the loaded table's comment."""
    marker = f'comment "{COMMENT_PREFIX} '
    start = text.index(marker) + len(marker)
    return text[start : text.index('"', start)]


def _nets(items: Iterable[IPv4Network]) -> tuple[IPv4Network, ...] | None:
    """Sources as collapsed networks; ``None`` when they cover everything."""
    nets = tuple(collapse_addresses(items))
    return None if IPv4Network("0.0.0.0/0") in nets else nets


def ruleset(cfg: Platform, node: Host, ip_of: dict[str, str]) -> Ruleset:
    """The firewall of `node`, from the roles and the components that are on."""
    fw = cfg.firewall

    def of(hosts: Iterable[Host]) -> list[IPv4Network]:
        return [IPv4Network(ip_of[h.name]) for h in hosts]

    platform = of(cfg.hosts)
    admin = list(fw.admin_networks)
    inputs = of(cfg.role("input"))
    pods = cfg.network.pod_cidr
    roles = set(node.roles)
    openings: list[Opening] = []

    def allow(ports: int | str, sources: Iterable[IPv4Network], why: str, proto: str = "tcp"):
        nets = _nets(sources)
        if nets != ():
            openings.append(Opening(str(ports), nets, why, proto))

    if "input" in roles:
        allow(node.ssh_port, fw.ssh_from, "ssh: people (firewall.ssh_from)")
    else:
        allow(node.ssh_port, inputs + admin, "ssh: input host, admin networks")
    if "repository" in roles:
        if cfg.enabled("registry"):
            allow(cfg.registry.port, platform + admin, "registry and charts (TLS)")
        if cfg.enabled("package_proxy"):
            allow(cfg.package_proxy.port, platform + admin, "package proxy")
    if "output" in roles and cfg.enabled("graylog"):
        allow(80, platform + admin, "nginx: Graylog and the output host's UIs")
        allow(cfg.graylog.gelf_tcp_port, platform + admin, "GELF input")
    if "control_plane" in roles:
        allow(6443, [*platform, pods, *admin], "Kubernetes API")
        allow(ETCD_PORTS, of(cfg.role("control_plane")), "etcd: control planes")

    peers: tuple[IPv4Network, ...] = ()
    nodeports: list[Opening] = []
    if node.is_kubernetes_node:
        nodes = of(h for h in cfg.hosts if h.is_kubernetes_node and h.name != node.name)
        peers = _nets([*nodes, pods]) or ()
        ing = cfg.ingress
        public = f"{ing.public_http_nodeport}, {ing.public_https_nodeport}"
        rows: tuple[tuple[str, list[IPv4Network], str], ...] = (
            (public, fw.public_ingress_from, "public ingress (firewall.public_ingress_from)"),
            (
                str(ing.admin_http_nodeport),
                [*inputs, *of(cfg.role("output")), *admin],
                "admin ingress: cockpit, output host",
            ),
            (f"{NODEPORTS[0]}-{NODEPORTS[1]}", [*platform, pods, *admin], "other NodePorts"),
        )
        for ports, sources, why in rows:
            nodeports.append(Opening(ports, _nets(sources), why, proto="tcp, udp"))
    people_ports = (cfg.cockpit.port, cfg.cockpit.api_port) if "input" in roles else ()
    return Ruleset(
        openings=tuple(openings),
        cluster_peers=peers,
        nodeports=tuple(nodeports),
        people_ports=people_ports,
        ssh_port=node.ssh_port,
    )
