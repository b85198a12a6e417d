"""The one `Platform` object, assembled here from every section, and `validate()`.

`Settings` lists every section explicitly, one field per component that has settings
(its model lives in `kubi/config/<component>.py`) plus the platform-wide ones. An
inventory's description is validated into a `Platform` or refused with every problem at
once, in three independent passes so that one mistake does not hide another: the pydantic
model (types, unknown keys, files), the topology of the role groups, and the network
ranges; the checks that need several sections run last, once those are valid.
"""

from __future__ import annotations

import functools
import logging
import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from kubi import components as component_list  # the list, read at call time
from kubi.components import Component, UiRoute
from kubi.config import errors, topology
from kubi.config.api_proxy import ApiProxySettings
from kubi.config.bastion import User
from kubi.config.charts import ChartsSettings
from kubi.config.cilium import CiliumSettings
from kubi.config.cockpit import CockpitSettings
from kubi.config.common import HostData, NetworkSettings, SshSettings
from kubi.config.containerd import ContainerdSettings
from kubi.config.firewall import FirewallSettings
from kubi.config.graylog import GraylogSettings
from kubi.config.images import ImagesSettings
from kubi.config.ingress import IngressSettings
from kubi.config.kubernetes import KubernetesSettings
from kubi.config.nginx import NginxSettings
from kubi.config.package_proxy import PackageProxySettings
from kubi.config.registry import RegistrySettings
from kubi.config.seed import SeedSettings
from kubi.config.types import HostName, LocalPath, ProxyUrl, Section, full, repeated
from kubi.config.userspaces import UserspacesSettings
from kubi.config.versions import Versions, kubernetes_end_of_life
from kubi.roles import KUBERNETES_ROLES, ROLES, Role

# Notices go where pyinfra shows its warnings (the pyinfra CLI silences Python's `warnings`);
# outside pyinfra, logging prints a warning on stderr all the same.
logger = logging.getLogger("pyinfra")


def _host_entry(value: Any) -> Any:
    """A host is a name or (name, data): normalise to the tuple form."""
    return (value, {}) if isinstance(value, str) else value


# A key of `components`: checked against the component list once its shape is right.
ComponentName = Annotated[
    StrictStr,
    AfterValidator(full(r"[a-z][a-z0-9_]{0,62}", "must be a component name, e.g. 'graylog'")),
]
HostEntry = Annotated[tuple[HostName, HostData], BeforeValidator(_host_entry)]


class Settings(Section):
    """Platform-wide settings, each section with documented defaults."""

    # --- platform-wide
    domain: HostName = "kubi.internal"
    apt_proxy: ProxyUrl | None = None
    secrets_dir: LocalPath | None = Field(
        None, description="where generated secrets live (0700); default ~/.local/share/kubi/<name>"
    )
    ssh: SshSettings = SshSettings()
    network: NetworkSettings = NetworkSettings()
    versions: Versions = Versions()
    components: dict[ComponentName, StrictBool] = Field(
        default_factory=dict,
        description="turn components on or off by name; default: each component's default",
    )
    # --- one section per component (kubi.components says which one reads which)
    seed: SeedSettings = SeedSettings()
    nginx: NginxSettings = NginxSettings()
    users: list[User] = Field(default_factory=list)
    firewall: FirewallSettings = FirewallSettings()
    cockpit: CockpitSettings = CockpitSettings()
    ingress: IngressSettings = IngressSettings()
    registry: RegistrySettings = RegistrySettings()
    images: ImagesSettings = ImagesSettings()
    charts: ChartsSettings = ChartsSettings()
    containerd: ContainerdSettings = ContainerdSettings()
    api_proxy: ApiProxySettings = ApiProxySettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    cilium: CiliumSettings = CiliumSettings()
    userspaces: UserspacesSettings = UserspacesSettings()
    package_proxy: PackageProxySettings = PackageProxySettings()
    graylog: GraylogSettings = GraylogSettings()

    @field_validator("users")
    @classmethod
    def _one_account_per_person(cls, users: list[User]) -> list[User]:
        twice = repeated([user.name for user in users])
        if twice:
            raise ValueError(
                f"{', '.join(map(repr, twice))} listed more than once: each person is one "
                "entry (one account), with all their keys"
            )
        return users


class Description(Settings):
    """What an inventory file hands to `kubi.inventory.declare` (the raw input)."""

    name: HostName
    groups: dict[Role, list[HostEntry]]
    group_data: dict[Role, HostData] = Field(default_factory=dict)


class Host(Section):
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

    def enabled(self, name: str) -> bool:
        """Whether the component `name` is on (the `components` switch, else its default
        while every component it needs is on)."""
        component_list.get(name)  # an unknown name is a KeyError naming the components
        return name in self._switched_on

    @functools.cached_property
    def _switched_on(self) -> set[str]:
        return component_list.switched_on(self.components)

    @property
    def enabled_components(self) -> tuple[Component, ...]:
        """The components this platform runs, in converge order."""
        return tuple(c for c in component_list.COMPONENTS if self.enabled(c.name))

    @property
    def ui_routes(self) -> tuple[UiRoute, ...]:
        """Every web UI the cockpit publishes: those of the components that are on."""
        return tuple(route for c in self.enabled_components for route in c.ui)

    @property
    def repository_alias(self) -> str:
        """The stable name every host resolves to the repository host (via /etc/hosts)."""
        return f"repository.{self.domain}"

    @property
    def api_name(self) -> str:
        """The name of the Kubernetes API on every node: its own 127.0.0.1 (api_proxy)."""
        return f"kube-api.{self.domain}"

    @property
    def api_endpoint(self) -> str:
        """kubeadm's controlPlaneEndpoint: the API through each node's own proxy."""
        return f"{self.api_name}:{self.api_proxy.port}"

    @property
    def admin_ingress_nodes(self) -> tuple[Host, ...]:
        """The nodes that carry the admin ingress (`ingress.admin_nodes`, else the workers)."""
        return self._chosen(self.ingress.admin_nodes)

    @property
    def public_ingress_nodes(self) -> tuple[Host, ...]:
        """The nodes that carry the public ingress (`ingress.public_nodes`, else the workers)."""
        return self._chosen(self.ingress.public_nodes)

    def _chosen(self, names: list[str] | None) -> tuple[Host, ...]:
        if names is None:
            return self.role("workers")
        return tuple(h for h in self.hosts if h.name in names)

    def ui_hostname(self, ui: str) -> str:
        """Host name a UI answers to upstream, e.g. grafana.<domain> on the admin ingress."""
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


# Models of the top-level keys, for "did you mean" on a misspelt nested key.
SECTION_MODELS: dict[str, type[BaseModel]] = {
    **{name: field.annotation for name, field in Settings.model_fields.items()
       if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)},
    "users": User,
    "group_data": HostData,
    "groups": HostData,
}  # fmt: skip


def validate(raw: dict[str, Any], source: str = "platform", notices: bool = True) -> Platform:
    """Validate a platform description; raise ConfigError listing every problem.

    Whatever the description holds, the outcome is a `Platform` or a `ConfigError`: an
    unexpected failure of a check becomes one problem naming where it happened, never a
    traceback that could print the values of the description. `notices` (such as an end of
    life) are logged unless a caller only peeks at a description it declares later.
    """
    if not isinstance(raw, dict):
        raise errors.ConfigError(["the description must be a mapping of fields"], source)
    try:
        return _validate(raw, source, notices)
    except errors.ConfigError:
        raise
    except Exception as exc:  # a check that did not expect this input: report, never echo
        raise errors.ConfigError(
            [
                f"the description could not be checked ({type(exc).__name__} in "
                f"{_failed_at(exc)}); a field probably has an unexpected shape: compare it "
                "with inventories/prod.py"
            ],
            source,
        ) from None


def _failed_at(exc: BaseException) -> str:
    """Where in kubi a check failed (module:line), without any value."""
    tb = exc.__traceback__
    where = "kubi.config"
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "?")
        if module.startswith("kubi"):
            where = f"{module}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _validate(raw: dict[str, Any], source: str, notices: bool) -> Platform:
    problems: list[str] = []
    desc: Description | None = None
    try:
        desc = Description.model_validate(raw)
    except ValidationError as exc:
        problems += [errors.describe(err, raw, SECTION_MODELS, Description) for err in exc.errors()]

    problems += topology.check_groups(raw.get("groups"))
    if desc is not None or "network" in raw:
        problems += topology.check_network(desc.network if desc else raw.get("network"))
    if desc is not None:
        problems += component_list.check_switches(desc.components)

    if desc is not None and not problems:
        platform = _build(desc)
        problems += topology.check_hosts(platform)
        if not problems:
            from kubi.containerd import check_support  # they read the built platform
            from kubi.images import check_archives
            from kubi.ingress import check_nodes
            from kubi.upstream_charts import check_folders
            from kubi.userspaces import check_members

            problems += check_support(platform)
            problems += check_members(platform)
            problems += check_nodes(platform)
            problems += check_archives(platform)
            problems += check_folders(platform)
        if not problems:
            said = [kubernetes_end_of_life(platform.versions.kubernetes)]
            said += component_list.left_out(desc.components)
            for notice in said if notices else ():
                if notice:
                    logger.warning(f"{source}: {notice}")
            return platform
    raise errors.ConfigError(problems, source)


def _build(desc: Description) -> Platform:
    """Merge platform defaults, group data and host data into one Host per name."""
    merged: dict[str, dict[str, Any]] = {}
    roles: dict[str, list[Role]] = {}
    for role in ROLES:
        for entry in desc.groups.get(role, []):  # type: ignore[call-overload]
            name, data = entry
            fields = merged.setdefault(name, {})
            for source in (desc.group_data.get(role, HostData()), data):  # type: ignore[call-overload]
                fields.update(source.model_dump(exclude_none=True))
            roles.setdefault(name, []).append(role)  # type: ignore[arg-type]
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
