"""Platform-wide sections: how the deployer reaches the hosts, and the address ranges."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import Field, StrictInt

from kubi.config.types import (
    Address,
    Cidr,
    HostName,
    KeyFile,
    LocalFileName,
    Port,
    Section,
    SshUser,
)


class HostData(Section):
    """Per-host settings, given per host or per group (`group_data`)."""

    address: Address | None = Field(
        None, description="where SSH connects (name or IP); default: the host name"
    )
    ip: IPv4Address | None = Field(
        None,
        description="host-network address (/etc/hosts); default: address if it is an IP",
    )
    ssh_user: SshUser | None = None
    ssh_port: Port | None = None
    ssh_key: KeyFile | None = None


class SshSettings(Section):
    """How the deployer reaches every host (host or group data may override user/port/key)."""

    user: SshUser = "root"
    port: Port = 22
    key: KeyFile | None = Field(None, description="private key; default: ssh-agent and ~/.ssh keys")
    # Strict by default: an unknown host key is refused. `accept-new` records the keys of
    # hosts met for the first time (ask for it once, for a first contact you trust).
    strict_host_key_checking: Literal["yes", "accept-new", "no"] = "yes"
    known_hosts_file: LocalFileName | None = Field(
        None, description="known_hosts file on the deployer's machine; default: ~/.ssh/known_hosts"
    )
    connect_timeout: Annotated[StrictInt, Field(ge=1, le=300)] = 10


class NetworkSettings(Section):
    """Address ranges; they must be well-formed and must not overlap each other."""

    pod_cidr: Cidr = IPv4Network("10.233.64.0/18")
    service_cidr: Cidr = IPv4Network("10.233.0.0/18")
    host_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="networks the hosts live on; when set, every host ip must be inside one",
    )
    cluster_domain: HostName = "cluster.local"
