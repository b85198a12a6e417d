"""Field types shared by every settings section, each matched in full.

A string that reaches a shell or a config file on a host has a precise type here: a host
name, a CIDR, a port, a Unix account name, a public key line, a URL, a path. Every pattern
is matched with `re.fullmatch` on ASCII classes (a Python `$` would accept a trailing
newline), so no control character, quote, space or shell character can ride along. Each
validator says what is wrong and how the value should look, and never repeats a value that
may be a secret (see `kubi.config.errors.showable`).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zoneinfo
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)

from kubi.config.errors import looks_like_key_material

# A DNS label: letters, digits, inner '-', 1 to 63 characters.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
VERSION = r"[0-9]+\.[0-9]+\.[0-9]+"
SERIES = r"[0-9]+\.[0-9]+"


class Section(BaseModel):
    """Base of every settings model: unknown keys are refused (a typo is never silently
    ignored) and a validated config cannot be changed afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def full(pattern: str, message: str) -> Callable[[str], str]:
    """A validator: the whole value matches `pattern` (ASCII classes), else `message`."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return check


# A container image as <registry host>/<path>:<tag>, each part as the distribution spec
# allows; IMAGE_PINNED adds the digest a chart pins it by (@sha256:<64 hex>).
_IMAGE_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_NAME = (
    rf"(?P<registry>[a-z0-9.-]+\.[a-z]{{2,}}(?::[0-9]+)?)/(?P<path>{_IMAGE_PART}(?:/{_IMAGE_PART})*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
)
IMAGE_PINNED = IMAGE_NAME + r"@(?P<digest>sha256:[0-9a-f]{64})"


def repeated(names: list[str]) -> list[str]:
    """The names that appear more than once, sorted (a list's validator names them)."""
    return sorted({name for name in names if names.count(name) > 1})


def has_control(value: str) -> bool:
    """Whether a string holds a control or invisible character (newline, CR, tab, NUL,
    DEL, Unicode line separators, zero-width characters)."""
    return any(not c.isprintable() for c in value)


_hostname = full(
    rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*",
    "must be a lower-case DNS name (letters, digits, '-', dots), e.g. 'cp1.example.invalid'",
)


def _address(value: str) -> str:
    """A host name or an IPv4 address (SSH connects to it, /etc/hosts may hold it)."""
    if re.fullmatch(r"[0-9.]+", value, re.ASCII):
        try:
            return str(IPv4Address(value))
        except ValueError:
            raise ValueError("not a valid IPv4 address; write it like 10.10.0.11") from None
    return _hostname(value)


def _local_path(value: str) -> str:
    """A path on the deployer's machine: one line of printable characters, not a key."""
    if looks_like_key_material(value):
        raise ValueError(
            "must be the path of a file, not its content: it looks like a key or a "
            "certificate (the value is not shown); save it to a file and give that path"
        )
    if not value or has_control(value):
        raise ValueError("must be a path without control characters (newline, tab, NUL)")
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
    if not isinstance(value, (str, IPv4Network)):
        raise ValueError("must be an IPv4 CIDR string, e.g. '10.233.64.0/18'")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9./]+", value, re.ASCII):
            raise ValueError("not a valid IPv4 CIDR; write it like 10.233.64.0/18")
        try:
            return IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"not a valid IPv4 CIDR: {exc}; write it like 10.233.64.0/18"
            ) from None
    return value


_zone_name = full(
    r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*",
    "unknown time zone; use an IANA name such as 'Europe/Paris'",
)


def _timezone(value: str) -> str:
    _zone_name(value)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; use an IANA name such as 'Europe/Paris'") from None
    return value


_absolute_path = full(
    r"/[A-Za-z0-9._/-]*",
    "must be an absolute path of letters, digits and . _ - / (no spaces or quotes), "
    "e.g. '/var/lib/kubi/charts'",
)


def _clean_absolute_path(value: str) -> str:
    _absolute_path(value)
    if ".." in value.split("/"):
        raise ValueError("must be an absolute path without '..' components")
    return value


# --- accounts --------------------------------------------------------------------------------

_UNIX_NAME = r"[a-z_][a-z0-9_-]{0,31}"


_unix_name_shape = full(
    _UNIX_NAME,
    "must be a Unix account name: lower-case letters, digits, '_' and '-', starting with "
    "a letter or '_', up to 32 characters",
)


def _unix_name(value: str) -> str:
    from kubi.config.matrices import system_accounts  # matrices builds on these types

    _unix_name_shape(value)
    if value in system_accounts() or value.startswith("systemd-"):
        raise ValueError(
            f"{value!r} is a system or service account of the platform hosts "
            "(kubi/config/system_accounts.toml): give the person another name"
        )
    return value


# --- SSH public keys -------------------------------------------------------------------------

# Key type -> the fields of its public blob after the type string: "s" a string, "m" an
# mpint, "32" a string of exactly 32 bytes, "curve" the curve name of the type.
_KEY_LAYOUTS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("32",),
    "ssh-rsa": ("m", "m"),
    "ecdsa-sha2-nistp256": ("curve", "s"),
    "ecdsa-sha2-nistp384": ("curve", "s"),
    "ecdsa-sha2-nistp521": ("curve", "s"),
    "sk-ssh-ed25519@openssh.com": ("32", "s"),
    "sk-ecdsa-sha2-nistp256@openssh.com": ("curve", "s", "s"),
}
KEY_TYPES = tuple(_KEY_LAYOUTS)
_KEY_HINT = (
    "paste the content of the .pub file ('ssh-ed25519 AAAA... comment'), never the private key"
)


def _blob_fields(blob: bytes) -> list[bytes]:
    """The length-prefixed strings of an SSH wire-format blob; ValueError when truncated."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated")
        (size,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + size > len(blob):
            raise ValueError("truncated")
        fields.append(blob[offset : offset + size])
        offset += size
    return fields


def _check_blob(key_type: str, blob: bytes) -> str | None:
    """What is wrong with a decoded key blob of `key_type`, or None."""
    try:
        fields = _blob_fields(blob)
    except ValueError:
        return "its key data is truncated (copy the whole line)"
    if not fields or fields[0] != key_type.encode():
        inside = fields[0].decode("ascii", "replace") if fields else "nothing"
        if not re.fullmatch(r"[a-z0-9@.-]{1,40}", inside, re.ASCII):
            inside = "another type"
        return f"its key data is a {inside} key, not {key_type}"
    layout = _KEY_LAYOUTS[key_type]
    if len(fields) - 1 != len(layout):
        return "its key data is truncated or has extra fields (copy the whole line)"
    for kind, field in zip(layout, fields[1:], strict=True):
        if kind == "32" and len(field) != 32:
            return "its key data is truncated (copy the whole line)"
        if kind == "curve" and field.decode("ascii", "replace") not in re.split(r"[-@]", key_type):
            return f"its curve does not match {key_type}"
        if kind == "m" and not field:
            return "its key data is truncated (copy the whole line)"
    return None


def _public_key(value: str) -> str:
    # The content of a .pub file ends with a newline: that one is dropped, nothing else.
    line = value.removesuffix("\n")
    if "PRIVATE KEY" in line or "-----BEGIN" in line:
        raise ValueError(f"this is a private key or a certificate, not a public key; {_KEY_HINT}")
    if has_control(line):
        raise ValueError(
            f"must be one line without control characters (newline, tab, NUL); {_KEY_HINT}"
        )
    parts = line.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValueError(
            f"must be an OpenSSH public key line of type {', '.join(KEY_TYPES)}; {_KEY_HINT}"
        )
    key_type, data, comment = parts[0], parts[1], " ".join(parts[2:])
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"its key data is not valid base64; {_KEY_HINT}") from None
    problem = _check_blob(key_type, blob)
    if problem:
        raise ValueError(f"{problem}; {_KEY_HINT}")
    if not re.fullmatch(r"[A-Za-z0-9._@+=:,/ -]*", comment, re.ASCII):
        raise ValueError(
            "its comment may hold letters, digits, spaces and . _ @ + = : , / - only "
            "(no quotes or shell characters)"
        )
    return f"{key_type} {data} {comment}".rstrip()


# --- URLs ------------------------------------------------------------------------------------

_URL_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"


def _check_port(value: str) -> str:
    match = re.fullmatch(r"https?://[^/:]+:([0-9]+)(?:/.*)?", value, re.ASCII | re.DOTALL)
    if match and not 1 <= int(match[1]) <= 65535:
        raise ValueError("its port must lie between 1 and 65535")
    return value


_http_url = full(
    rf"https?://{_URL_HOST}(?:/[A-Za-z0-9._~%+/-]*)?",
    "must be an http(s) URL of a host, an optional port and a path of letters, digits and "
    ". _ ~ % + - / (no credentials, query, spaces or quotes), e.g. "
    "'http://deb.debian.org/debian/'",
)
_proxy_url = full(
    rf"https?://{_URL_HOST}/?",
    "must be a proxy URL: scheme, host and port only, e.g. 'http://proxy.example.invalid:3142'",
)


def _local_path_of(value: Any) -> Any:
    """`_local_path` for a str or Path given where a Path is expected."""
    if isinstance(value, (str, PurePath)):
        _local_path(str(value))
    return value


HostName = Annotated[StrictStr, AfterValidator(_hostname)]
Cidr = Annotated[IPv4Network, BeforeValidator(parse_cidr)]
# A file on the deployer's machine that must exist (an SSH key, a certificate).
KeyFile = Annotated[Path, BeforeValidator(_local_path_of), AfterValidator(_existing_file)]
# A path on the deployer's machine (it may not exist yet).
LocalPath = Annotated[Path, BeforeValidator(_local_path_of)]
LocalFileName = Annotated[StrictStr, AfterValidator(_local_path)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
NodePort = Annotated[StrictInt, Field(ge=30000, le=32767)]
Address = Annotated[StrictStr, AfterValidator(_address)]
# Debian package names (policy 5.6.1): they reach `apt-get install` on every host.
PackageName = Annotated[
    StrictStr,
    AfterValidator(
        full(
            r"[a-z0-9][a-z0-9+.-]+",
            "must be a Debian package name (lower-case letters, digits, + . -), e.g. 'htop'",
        )
    ),
]
# The account the deployer connects as: root or an admin account (not a person's).
SshUser = Annotated[
    StrictStr,
    AfterValidator(
        full(
            _UNIX_NAME,
            "must be a Unix account name (lower-case letters, digits, '_', '-'), "
            "e.g. 'root' or 'admin'",
        )
    ),
]
TimeZone = Annotated[StrictStr, AfterValidator(_timezone)]
UnixName = Annotated[StrictStr, AfterValidator(_unix_name)]
PublicKey = Annotated[StrictStr, AfterValidator(_public_key)]
AbsolutePath = Annotated[StrictStr, AfterValidator(_clean_absolute_path)]
HttpUrl = Annotated[StrictStr, AfterValidator(_http_url), AfterValidator(_check_port)]
# An apt proxy: scheme, host and port only (apt and the lab append their own paths).
ProxyUrl = Annotated[StrictStr, AfterValidator(_proxy_url), AfterValidator(_check_port)]
JvmHeap = Annotated[
    StrictStr,
    AfterValidator(
        full(r"[0-9]{1,6}[mg]", "must be a JVM heap size: a number and m or g, e.g. '1g'")
    ),
]
Version = Annotated[StrictStr, AfterValidator(full(VERSION, "must be a version like '1.31.4'"))]
Series = Annotated[StrictStr, AfterValidator(full(SERIES, "must be a release series like '6.1'"))]
