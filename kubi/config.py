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
import os
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
    model_validator,
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


# Graylog's supported search backend and MongoDB ranges, per Graylog release (from
# Graylog's own compatibility matrix). `Versions` refuses a combination outside them.
LOG_STACK_MATRIX = {
    "6.1": {"opensearch": ("1.1", "2.15"), "mongodb": ("5.0", "7.0")},
    "6.0": {"opensearch": ("1.1", "2.13"), "mongodb": ("5.0", "7.0")},
}


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


class Versions(_Model):
    """Pinned versions, in one place (the log stack is checked against LOG_STACK_MATRIX)."""

    debian: Literal["bookworm"] = "bookworm"
    kubernetes: Annotated[str, Field(pattern=_VERSION)] = "1.31.4"
    graylog: Annotated[str, Field(pattern=r"^\d+\.\d+$")] = "6.1"
    opensearch: Annotated[str, Field(pattern=_VERSION)] = "2.15.0"
    mongodb: Annotated[str, Field(pattern=r"^\d+\.\d+$")] = "7.0"

    @model_validator(mode="after")
    def _log_stack_compatible(self) -> Versions:
        if _minor(self.mongodb) < (7, 0):
            raise ValueError(
                f"mongodb {self.mongodb}: MongoDB publishes packages for Debian bookworm "
                "from 7.0 on"
            )
        supported = LOG_STACK_MATRIX.get(self.graylog)
        if supported is None:
            raise ValueError(
                f"graylog {self.graylog} is not in kubi's version matrix; "
                f"supported: {', '.join(LOG_STACK_MATRIX)}"
            )
        for name in ("opensearch", "mongodb"):
            low, high = supported[name]
            if not _minor(low) <= _minor(getattr(self, name)) <= _minor(high):
                raise ValueError(
                    f"{name} {getattr(self, name)} is not supported by graylog {self.graylog} "
                    f"(supported: {low} to {high})"
                )
        return self


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


def _unix_name(value: str) -> str:
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value) or value in _RESERVED_USERS:
        raise ValueError(
            "must be a Unix account name (lower-case, up to 32 characters) that is not a "
            "system account"
        )
    return value


_RESERVED_USERS = {"root", "daemon", "bin", "sys", "nobody", "www-data", "sshd", "admin"}
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com")  # fmt: skip


def _public_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES or not re.match(r"^[A-Za-z0-9+/=]+$", parts[1]):
        raise ValueError(
            "must be an OpenSSH public key line ('ssh-ed25519 AAAA... comment'); "
            "paste the content of the .pub file, never the private key"
        )
    return " ".join(parts)


class User(_Model):
    """A person: one Unix account on the input host (and, for ops, on every host)."""

    name: Annotated[str, AfterValidator(_unix_name)]
    role: Literal["ops", "dev"]
    keys: Annotated[list[Annotated[str, AfterValidator(_public_key)]], Field(min_length=1)]


NodePort = Annotated[StrictInt, Field(ge=30000, le=32767)]


class IngressSettings(_Model):
    """NodePorts of the two ingress controllers (admin: monitoring and dashboards)."""

    admin_http_nodeport: NodePort = 30080
    public_http_nodeport: NodePort = 30090
    public_https_nodeport: NodePort = 30443


class CockpitSettings(_Model):
    """The input host's nginx, bound to 127.0.0.1: one SSH port forward reaches every UI."""

    port: Port = 8080
    api_port: Port = Field(6443, description="TCP stream to the control planes' Kubernetes API")


class RegistrySettings(_Model):
    """Docker registry on the repository host, behind nginx with TLS and basic auth."""

    port: Port = 443
    storage_path: Annotated[str, Field(pattern=r"^/")] = "/var/lib/docker-registry"
    tls_cert: KeyFile | None = Field(None, description="your certificate; default: the platform CA")
    tls_key: KeyFile | None = None
    anonymous_pull: StrictBool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> RegistrySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither (then the CA signs one)")
        return self


class ChartsSettings(_Model):
    """Helm chart repository: static index.yaml and archives served by the repository nginx."""

    path: Annotated[str, Field(pattern=r"^/")] = "/var/lib/kubi/charts"


class PackageProxySettings(_Model):
    """apt-cacher-ng on the repository host (the source's offline-install goal)."""

    port: Port = 3142
    for_all_hosts: StrictBool = Field(False, description="every other host installs through it")
    debian_mirror: Annotated[str, Field(pattern=r"^https?://")] = "http://deb.debian.org/debian/"
    upstream_proxy: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        None, description="proxy the cache itself goes through; default: apt_proxy"
    )


class GraylogSettings(_Model):
    """Graylog, its search backend (OpenSearch) and MongoDB, single node, on the output host."""

    install: StrictBool = True
    apt_mirror: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        None, description="base URL mirroring the upstream repositories; default: upstream"
    )
    graylog_heap: Annotated[str, Field(pattern=r"^\d+[mg]$")] = "1g"
    opensearch_heap: Annotated[str, Field(pattern=r"^\d+[mg]$")] = "1g"
    gelf_tcp_port: Port = 12201
    http_port: Port = 9000


HostEntry = Annotated[tuple[HostName, HostData], BeforeValidator(_host_entry)]


class Settings(_Model):
    """Platform-wide settings, each section with documented defaults."""

    domain: HostName = "kubi.internal"
    apt_proxy: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    secrets_dir: Path | None = Field(
        None, description="where generated secrets live (0700); default ~/.local/share/kubi/<name>"
    )
    ssh: SshSettings = SshSettings()
    network: NetworkSettings = NetworkSettings()
    versions: Versions = Versions()
    seed: SeedSettings = SeedSettings()
    nginx: NginxSettings = NginxSettings()
    users: list[User] = Field(default_factory=list)
    ingress: IngressSettings = IngressSettings()
    cockpit: CockpitSettings = CockpitSettings()
    registry: RegistrySettings = RegistrySettings()
    charts: ChartsSettings = ChartsSettings()
    package_proxy: PackageProxySettings = PackageProxySettings()
    graylog: GraylogSettings = GraylogSettings()


class Description(Settings):
    """What an inventory file hands to `kubi.inventory.declare` (the raw input)."""

    name: HostName
    groups: dict[Role, list[HostEntry]]
    group_data: dict[Role, HostData] = Field(default_factory=dict)


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


class Platform(Settings):
    """The one validated config object every deploy reads."""

    name: str
    hosts: tuple[Host, ...]

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

    @property
    def admin_ingress_nodes(self) -> tuple[Host, ...]:
        """Workers that carry the admin ingress (a DaemonSet on every worker)."""
        return self.role("workers")

    def ui_hostname(self, ui: str) -> str:
        """Host name an in-cluster UI answers to on the admin ingress, e.g. grafana.<domain>."""
        return f"{ui}.{self.domain}"

    def apt_proxy_for(self, host: Host) -> str | None:
        """The apt proxy a host installs through: the repository host's package proxy when
        `package_proxy.for_all_hosts` is on (except for the repository host itself)."""
        if self.package_proxy.for_all_hosts and "repository" not in host.roles:
            return f"http://{self.repository_alias}:{self.package_proxy.port}"
        return self.apt_proxy

    @property
    def secrets_path(self) -> Path:
        """Where this platform's generated secrets are kept (outside the repository)."""
        if self.secrets_dir is not None:
            return self.secrets_dir.expanduser()
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
        return base / "kubi" / self.name


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
    settings = {field: getattr(desc, field) for field in Settings.model_fields}
    return Platform(name=desc.name, hosts=tuple(hosts), **settings)


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
    # Never echo what may be a secret (a pasted private key, a password).
    secret = any(str(part) in _SECRET_FIELDS for part in loc)
    plain = isinstance(value, (str, int, float, bool)) and len(str(value)) <= 80
    shown = f" (got {value!r})" if plain and not secret else ""
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
    if len(loc) >= 2 and loc[0] == "users" and isinstance(loc[1], int):
        users = raw.get("users") or []
        entry = users[loc[1]] if loc[1] < len(users) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        who = f"user {name!r}" if name else f"user #{loc[1] + 1}"
        tail = ".".join(str(p) for p in loc[2:])
        return who + (f", field {tail!r}" if tail else "")
    if len(loc) >= 2 and loc[0] == "group_data":
        if loc[2:] == ["[key]"]:
            return f"group_data {loc[1]!r}"
        tail = ".".join(str(p) for p in loc[2:])
        return f"group_data {loc[1]!r}" + (f", field {tail!r}" if tail else "")
    return "field " + repr(".".join(str(p) for p in loc))


_SECRET_FIELDS = {"keys", "password", "token", "secret"}

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    **{name: field.annotation for name, field in Settings.model_fields.items()
       if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)},
    "users": User,
    "group_data": HostData,
    "groups": HostData,
}  # fmt: skip


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
