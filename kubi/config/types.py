"""Field types shared by every settings section, each matched in full.

A string that reaches a shell or a config file on a host has a precise type here: a host
name, a CIDR, a port, a Unix account name, a public key line, a URL. Each validator says
what is wrong and how the value should look.
"""

from __future__ import annotations

import re
import zoneinfo
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
VERSION = r"^\d+\.\d+\.\d+$"
SERIES = r"^\d+\.\d+$"


class Section(BaseModel):
    """Base of every settings model: unknown keys are refused (a typo is never silently
    ignored) and a validated config cannot be changed afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


def parse_cidr(value: Any) -> Any:
    """Parse a CIDR strictly so the message says what is wrong (e.g. host bits set)."""
    if isinstance(value, str):
        try:
            return IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"not a valid IPv4 CIDR: {exc}; write it like 10.233.64.0/18"
            ) from None
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; use an IANA name such as 'Europe/Paris'") from None
    return value


def _no_dot_dot(value: str) -> str:
    if ".." in value.split("/"):
        raise ValueError("must be an absolute path without '..' components")
    return value


def _address(value: str) -> str:
    """A host name or an IPv4 address (SSH connects to it, /etc/hosts may hold it)."""
    try:
        return str(IPv4Address(value))
    except ValueError:
        return _hostname(value)


# Accounts a person may never take over (system accounts the platform's hosts rely on).
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "nobody", "www-data", "sshd", "admin"})


def _unix_name(value: str) -> str:
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value) or value in RESERVED_USERS:
        raise ValueError(
            "must be a Unix account name (lower-case, up to 32 characters) that is not a "
            "system account"
        )
    return value


KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com")  # fmt: skip


def _public_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES or not re.match(r"^[A-Za-z0-9+/=]+$", parts[1]):
        raise ValueError(
            "must be an OpenSSH public key line ('ssh-ed25519 AAAA... comment'); "
            "paste the content of the .pub file, never the private key"
        )
    return " ".join(parts)


HostName = Annotated[str, AfterValidator(_hostname)]
Cidr = Annotated[IPv4Network, BeforeValidator(parse_cidr)]
KeyFile = Annotated[Path, AfterValidator(_existing_file)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
NodePort = Annotated[StrictInt, Field(ge=30000, le=32767)]
Address = Annotated[str, AfterValidator(_address)]
# Debian package names (policy 5.6.1): they reach `apt-get install` on every host.
PackageName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]
# The account the deployer connects as: root or an admin account (not a person's).
SshUser = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
TimeZone = Annotated[str, AfterValidator(_timezone)]
UnixName = Annotated[str, AfterValidator(_unix_name)]
PublicKey = Annotated[str, AfterValidator(_public_key)]
AbsolutePath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]*$"), AfterValidator(_no_dot_dot)]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$")]
# An apt proxy: scheme, host and port only (apt and the lab append their own paths).
ProxyUrl = Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$")]
JvmHeap = Annotated[str, Field(pattern=r"^\d+[mg]$")]
Version = Annotated[str, Field(pattern=VERSION)]
Series = Annotated[str, Field(pattern=SERIES)]
