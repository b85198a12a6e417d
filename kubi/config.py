"""The platform description, validated into one typed config object.

An inventory file describes the platform once (hosts per role group, per-group and
per-host data, platform settings). `validate()` turns that description into a
`Platform` or raises `ConfigError` listing *every* problem at once, each naming the
group or host, the field and what to do. Deploys only ever read the `Platform`.

Validation runs in three independent passes so that one mistake does not hide another:
the pydantic model (types, unknown keys, files), the topology of the role groups, and the
network ranges. Checks that need several sections run last, once those are valid.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)

ROLES = ("input", "output", "repository", "control_plane", "workers")
Role = Literal["input", "output", "repository", "control_plane", "workers"]
# Single-node services: the bastion, the log host and the delivery host.
SINGLE_HOST_ROLES = ("input", "output", "repository")
# A host may carry several roles only in these combinations (a small cluster may run
# workloads on its control-plane nodes); service hosts stay apart from the cluster.
ALLOWED_ROLE_SETS = ({"control_plane", "workers"},)
KUBERNETES_ROLES = ("control_plane", "workers")

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_VERSION = r"^\d+\.\d+\.\d+$"


class ConfigError(Exception):
    """Raised with every problem of a platform description, one per line."""

    def __init__(self, problems: list[str], source: str = "platform"):
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: {len(self.problems)} problem(s) in the platform description"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def _hostname(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "must be a lower-case DNS name (letters, digits, '-', dots), e.g. 'cp1.example.invalid'"
        )
    return value


def _existing_file(value: Path) -> Path:
    path = value.expanduser()
    if not path.is_file():
        raise ValueError(
            f"file {value} does not exist: create it (ssh-keygen -t ed25519 -f {value}) "
            "or fix the path"
        )
    return path


def _cidr(value: Any) -> Any:
    """Parse a CIDR strictly so the message says what is wrong (e.g. host bits set)."""
    if isinstance(value, str):
        try:
            return IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"not a valid IPv4 CIDR: {exc}; write it like 10.233.64.0/18"
            ) from None
    return value


def _host_entry(value: Any) -> Any:
    """A host is a name or (name, data): normalise to the tuple form."""
    return (value, {}) if isinstance(value, str) else value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; use an IANA name such as 'Europe/Paris'") from None
    return value


HostName = Annotated[str, AfterValidator(_hostname)]
Cidr = Annotated[IPv4Network, BeforeValidator(_cidr)]
KeyFile = Annotated[Path, AfterValidator(_existing_file)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


class _Model(BaseModel):
    # Unknown keys are refused: a typo must never be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostData(_Model):
    """Per-host settings, given per host or per group (`group_data`)."""

    address: str | None = Field(
        None, description="where SSH connects (name or IP); default: the host name"
    )
    ip: IPv4Address | None = Field(
        None,
        description="host-network address (/etc/hosts); default: address if it is an IP",
    )
    ssh_user: str | None = None
    ssh_port: Port | None = None
    ssh_key: KeyFile | None = None


class SshSettings(_Model):
    """How the deployer reaches every host (host or group data may override user/port/key)."""

    user: str = "root"
    port: Port = 22
    key: KeyFile | None = Field(None, description="private key; default: ssh-agent and ~/.ssh keys")
    strict_host_key_checking: Literal["yes", "accept-new", "no"] = "accept-new"
    known_hosts_file: str | None = None
    connect_timeout: Annotated[StrictInt, Field(ge=1, le=300)] = 10


class NetworkSettings(_Model):
    """Address ranges; they must be well-formed and must not overlap each other."""

    pod_cidr: Cidr = IPv4Network("10.233.64.0/18")
    service_cidr: Cidr = IPv4Network("10.233.0.0/18")
    host_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="networks the hosts live on; when set, every host ip must be inside one",
    )
    cluster_domain: HostName = "cluster.local"


class Versions(_Model):
    """Pinned versions, in one place."""

    debian: Literal["bookworm"] = "bookworm"
    kubernetes: Annotated[str, Field(pattern=_VERSION)] = "1.31.4"


class SeedSettings(_Model):
    """The "seed" every host gets first."""

    upgrade: Literal["first", "always", "never"] = Field(
        "first",
        description="full system upgrade: on a host's first seeding, on every run, or never",
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = "Etc/UTC"
    ntp_servers: list[str] = Field(
        default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"]
    )
    extra_packages: list[str] = Field(default_factory=list)


class NginxSettings(_Model):
    """The raw nginx every service host gets; components add sites and streams to it."""

    worker_connections: Annotated[StrictInt, Field(ge=64)] = 1024
    server_tokens: StrictBool = False


HostEntry = Annotated[tuple[HostName, HostData], BeforeValidator(_host_entry)]


class Description(_Model):
    """What an inventory file hands to `kubi.inventory.declare` (the raw input)."""

    name: HostName
    groups: dict[Role, list[HostEntry]]
    group_data: dict[Role, HostData] = Field(default_factory=dict)
    domain: HostName = "kubi.internal"
    apt_proxy: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    ssh: SshSettings = SshSettings()
    network: NetworkSettings = NetworkSettings()
    versions: Versions = Versions()
    seed: SeedSettings = SeedSettings()
    nginx: NginxSettings = NginxSettings()


class Host(_Model):
    """One platform host after merging platform, group and host data."""

    name: str
    roles: tuple[Role, ...]
    address: str
    ip: IPv4Address | None
    ssh_user: str
    ssh_port: int
    ssh_key: Path | None

    @property
    def short_name(self) -> str:
        return self.name.split(".")[0]

    @property
    def is_kubernetes_node(self) -> bool:
        return any(role in KUBERNETES_ROLES for role in self.roles)


class Platform(_Model):
    """The one validated config object every deploy reads."""

    name: str
    domain: str
    apt_proxy: str | None
    hosts: tuple[Host, ...]
    ssh: SshSettings
    network: NetworkSettings
    versions: Versions
    seed: SeedSettings
    nginx: NginxSettings

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"host {name!r} is not part of platform {self.name!r}")

    def role(self, role: Role) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if role in h.roles)

    @property
    def repository_alias(self) -> str:
        """The stable name every host resolves to the repository host (via /etc/hosts)."""
        return f"repository.{self.domain}"


# --- validation -------------------------------------------------------------------------


def validate(raw: dict[str, Any], source: str = "platform") -> Platform:
    """Validate a platform description; raise ConfigError listing every problem."""
    problems: list[str] = []
    desc: Description | None = None
    try:
        desc = Description.model_validate(raw)
    except ValidationError as exc:
        problems += [_describe_error(err, raw) for err in exc.errors()]

    problems += _check_topology(raw.get("groups"))
    if desc is not None or "network" in raw:
        problems += _check_network(desc.network if desc else raw.get("network"))

    if desc is not None and not problems:
        platform = _build(desc)
        problems += _check_hosts(platform)
        if not problems:
            return platform
    raise ConfigError(problems, source)


def _host_name(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, (tuple, list)) and entry and isinstance(entry[0], str):
        return entry[0]
    return None


def _check_topology(groups: Any) -> list[str]:
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
        names = [n for n in map(_host_name, entries) if n]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"group {role!r}: host {name!r} is listed twice")
        for name in dict.fromkeys(names):
            roles_of.setdefault(name, []).append(role)
        if role in SINGLE_HOST_ROLES and len(names) > 1:
            problems.append(
                f"group {role!r}: {len(names)} hosts ({', '.join(names)}); this role runs on "
                "exactly one host"
            )
        if role == "control_plane" and names and len(names) % 2 == 0:
            problems.append(
                f"group 'control_plane': {len(names)} hosts; etcd needs an odd number "
                "(1, 3, 5) to keep quorum: add or remove one"
            )
    for name, roles in roles_of.items():
        if len(roles) > 1 and set(roles) not in ALLOWED_ROLE_SETS:
            problems.append(
                f"host {name!r}: in groups {', '.join(roles)}; a host may only combine "
                "control_plane and workers: give each service role its own host"
            )
    return problems


def _check_network(network: Any) -> list[str]:
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
            named.append((name, _cidr(value) if isinstance(value, str) else IPv4Network(value)))
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


def _build(desc: Description) -> Platform:
    """Merge platform defaults, group data and host data into one Host per name."""
    merged: dict[str, dict[str, Any]] = {}
    roles: dict[str, list[str]] = {}
    for role in ROLES:
        for entry in desc.groups.get(role, []):
            name, data = entry
            fields = merged.setdefault(name, {})
            for source in (desc.group_data.get(role, HostData()), data):
                fields.update(source.model_dump(exclude_none=True))
            roles.setdefault(name, []).append(role)
    hosts = []
    for name, fields in merged.items():
        address = fields.get("address", name)
        ip = fields.get("ip")
        if ip is None:
            try:
                ip = IPv4Address(address)
            except ValueError:
                ip = None
        hosts.append(
            Host(
                name=name,
                roles=tuple(roles[name]),
                address=address,
                ip=ip,
                ssh_user=fields.get("ssh_user", desc.ssh.user),
                ssh_port=fields.get("ssh_port", desc.ssh.port),
                ssh_key=fields.get("ssh_key", desc.ssh.key),
            )
        )
    return Platform(
        name=desc.name,
        domain=desc.domain,
        apt_proxy=desc.apt_proxy,
        hosts=tuple(hosts),
        ssh=desc.ssh,
        network=desc.network,
        versions=desc.versions,
        seed=desc.seed,
        nginx=desc.nginx,
    )


def _check_hosts(platform: Platform) -> list[str]:
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


# --- error messages ---------------------------------------------------------------------


def _describe_error(err: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = list(err["loc"])
    where = _where(loc, raw)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field{_suggest(loc, raw)}"
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    if err["type"] == "literal_error" and loc[:1] in (["groups"], ["group_data"]):
        return f"{where}: unknown role group; the groups are {', '.join(ROLES)}"
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    return f"{where}: {message}{shown}"


def _where(loc: list[Any], raw: dict[str, Any]) -> str:
    """Name the group/host/field of an error location in the user's terms."""
    if len(loc) >= 2 and loc[0] == "groups":
        role = loc[1]
        if len(loc) == 2 or loc[2] == "[key]":
            return f"group {role!r}"
        entries = raw.get("groups", {}).get(role) or []
        index = loc[2]
        name = (
            _host_name(entries[index]) if isinstance(index, int) and index < len(entries) else None
        )
        host = (
            f"host {name!r}" if name else f"host #{index + 1 if isinstance(index, int) else index}"
        )
        # loc tail: (0,) for the name, (1, field...) for the host data
        tail = loc[3:]
        if tail[:1] == [0]:
            return f"{host} (group {role!r}), its name"
        fields = [str(p) for p in tail[1:]]
        return f"{host} (group {role!r})" + (f", field {'.'.join(fields)!r}" if fields else "")
    if len(loc) >= 2 and loc[0] == "group_data":
        if loc[2:] == ["[key]"]:
            return f"group_data {loc[1]!r}"
        tail = ".".join(str(p) for p in loc[2:])
        return f"group_data {loc[1]!r}" + (f", field {tail!r}" if tail else "")
    return "field " + repr(".".join(str(p) for p in loc))


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "ssh": SshSettings,
    "network": NetworkSettings,
    "versions": Versions,
    "seed": SeedSettings,
    "nginx": NginxSettings,
    "group_data": HostData,
    "groups": HostData,
}


def _suggest(loc: list[Any], raw: dict[str, Any]) -> str:
    """'did you mean' for a misspelt key, from the fields of the model it belongs to."""
    key = str(loc[-1])
    model = _SECTION_MODELS.get(str(loc[0])) if len(loc) > 1 else Description
    if model is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known fields: {', '.join(known)}"
