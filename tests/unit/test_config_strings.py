"""Every string of the platform description is matched in full against its precise type.

The walker below finds every field of the description that accepts a string (host names,
URLs, paths, package and account names, keys, versions, addresses...), and each one is
tried with control characters, quotes and shell syntax: each must be refused with its field
named and the bad character never printed raw. A new string field fails
`test_every_string_field_has_a_sample` until it is listed here, so none escapes the test.
"""

from __future__ import annotations

import base64
import struct
import types
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from kubi.config import ConfigError, Description, validate
from kubi.config.types import has_control

from .test_config import description

EXISTING_FILE = str(Path(__file__).resolve())
ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c a@laptop"
)
STRING_TYPES = (str, Path, IPv4Address, IPv4Network)


# --- the walker ----------------------------------------------------------------------------------


def string_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Paths of every field of `model` (and its sections) that accepts a string:
    `a.b`, `list[]`, `dict{}` (a value), `dict{key}`, `tuple[0]`."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        found |= _walk(field.annotation, f"{prefix}{name}")
    return found


def _walk(tp: Any, path: str) -> set[str]:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _walk(args[0], path)
    if origin in (Union, types.UnionType):
        return set().union(*(_walk(a, path) for a in args if a is not type(None)))
    if origin is Literal:
        return set()  # a closed list of words: nothing free-form gets through
    if origin is list:
        return _walk(args[0], f"{path}[]")
    if origin is tuple:
        return set().union(*(_walk(a, f"{path}[{i}]") for i, a in enumerate(args)))
    if origin is dict:
        return _walk(args[0], f"{path}{{key}}") | _walk(args[1], f"{path}{{}}")
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return string_fields(tp, f"{path}.")
    if tp in STRING_TYPES:
        return {path}
    return set()


# --- a valid sample of every string field, and where to put it ---------------------------------


def _section(section: str, field: str):
    return lambda d, v: d.setdefault(section, {}).__setitem__(field, v)


def _charts_folder(d, v):
    """cilium.charts, with the component off: its pinned archive is checked only when on."""
    _section("cilium", "charts")(d, v)
    d.setdefault("components", {})["cilium"] = False


def _ingress(field: str):
    """An ingress setting, with the component off: neither its nodes nor its archive are
    checked then (the string's own type still is)."""

    def put(d, v):
        d.setdefault("ingress", {})[field] = v
        d.setdefault("components", {}).update(ingress=False, dashboard=False)

    return put


def _nested(section: str, sub: str, field: str):
    return lambda d, v: d.setdefault(section, {}).setdefault(sub, {}).__setitem__(field, v)


def _top(field: str):
    return lambda d, v: d.__setitem__(field, v)


def _host_name(d, v):
    d["groups"]["workers"] = [(v, {"ip": "10.10.0.31"})]


def _host_field(field: str):
    def put(d, v):
        d["groups"]["workers"] = [("w1.example.invalid", {"ip": "10.10.0.31", field: v})]

    return put


def _group_data(field: str):
    return lambda d, v: (
        d.setdefault("group_data", {}).setdefault("workers", {}).__setitem__(field, v)
    )


def _user(field: str):
    def put(d, v):
        person = {"name": "alice", "role": "ops", "keys": [ED25519]}
        person[field] = [v] if field == "keys" else v
        d["users"] = [person]

    return put


def _listed(section: str, field: str):
    return lambda d, v: d.setdefault(section, {}).__setitem__(field, [v])


def _component(d, v):
    d["components"] = {v: True}


def _tls(field: str):
    def put(d, v):
        d["registry"] = {"tls_cert": EXISTING_FILE, "tls_key": EXISTING_FILE, field: v}

    return put


def _userspace(field: str, sub: str | None = None):
    """A value in a userspace of alice's (the only person)."""

    def put(d, v):
        space: dict[str, Any] = {"name": "team", "members": ["alice"]}
        if sub is None:
            space[field] = [v] if field == "members" else v
        else:
            space[sub] = {field: v}
        d["users"] = [{"name": "alice", "role": "dev", "keys": [ED25519]}]
        d["userspaces"] = {"spaces": [space]}

    return put


# path: (valid sample, how to put a value there, what the message names)
SAMPLES: dict[str, tuple[str, Any, str]] = {
    "name": ("unit", _top("name"), "field 'name'"),
    "domain": ("kubi.internal", _top("domain"), "field 'domain'"),
    "apt_proxy": ("http://proxy.example.invalid:3142", _top("apt_proxy"), "field 'apt_proxy'"),
    "secrets_dir": ("/tmp/kubi-unit-secrets", _top("secrets_dir"), "field 'secrets_dir'"),
    "ssh.user": ("admin", _section("ssh", "user"), "field 'ssh.user'"),
    "ssh.key": (EXISTING_FILE, _section("ssh", "key"), "field 'ssh.key'"),
    "ssh.known_hosts_file": (
        "/tmp/kubi-unit-known-hosts",
        _section("ssh", "known_hosts_file"),
        "field 'ssh.known_hosts_file'",
    ),
    "network.cluster_domain": (
        "cluster.local",
        _section("network", "cluster_domain"),
        "field 'network.cluster_domain'",
    ),
    "network.pod_cidr": ("10.233.64.0/18", _section("network", "pod_cidr"), "network.pod_cidr"),
    "network.service_cidr": (
        "10.233.0.0/18",
        _section("network", "service_cidr"),
        "network.service_cidr",
    ),
    "network.host_cidrs[]": (
        "10.10.0.0/24",
        _listed("network", "host_cidrs"),
        "network.host_cidrs.0",
    ),
    **{
        f"firewall.{field}[]": ("10.10.0.0/24", _listed("firewall", field), f"firewall.{field}.0")
        for field in ("admin_networks", "ssh_from", "public_ingress_from")
    },
    "versions.kubernetes": (
        "1.35.7",
        _section("versions", "kubernetes"),
        "field 'versions.kubernetes'",
    ),
    "versions.graylog": ("6.1", _section("versions", "graylog"), "field 'versions.graylog'"),
    "versions.opensearch": (
        "2.15.0",
        _section("versions", "opensearch"),
        "field 'versions.opensearch'",
    ),
    "versions.mongodb": ("7.0", _section("versions", "mongodb"), "field 'versions.mongodb'"),
    "components{key}": ("graylog", _component, "components."),
    "seed.timezone": ("Etc/UTC", _section("seed", "timezone"), "field 'seed.timezone'"),
    "seed.ntp_servers[]": (
        "0.debian.pool.ntp.org",
        _listed("seed", "ntp_servers"),
        "field 'seed.ntp_servers.0'",
    ),
    "seed.extra_packages[]": (
        "htop",
        _listed("seed", "extra_packages"),
        "field 'seed.extra_packages.0'",
    ),
    "users[].name": ("alice", _user("name"), ", field 'name'"),
    "users[].keys[]": (ED25519, _user("keys"), "user 'alice', field 'keys.0'"),
    "registry.storage_path": (
        "/var/lib/docker-registry",
        _section("registry", "storage_path"),
        "field 'registry.storage_path'",
    ),
    "registry.tls_cert": (EXISTING_FILE, _tls("tls_cert"), "field 'registry.tls_cert'"),
    "registry.tls_key": (EXISTING_FILE, _tls("tls_key"), "field 'registry.tls_key'"),
    "charts.path": ("/var/lib/kubi/charts", _section("charts", "path"), "field 'charts.path'"),
    "package_proxy.debian_mirror": (
        "http://deb.debian.org/debian/",
        _section("package_proxy", "debian_mirror"),
        "field 'package_proxy.debian_mirror'",
    ),
    "package_proxy.upstream_proxy": (
        "http://proxy.example.invalid:3128",
        _section("package_proxy", "upstream_proxy"),
        "field 'package_proxy.upstream_proxy'",
    ),
    "graylog.apt_mirror": (
        "https://mirror.example.invalid/apt/",
        _section("graylog", "apt_mirror"),
        "field 'graylog.apt_mirror'",
    ),
    "kubernetes.apt_mirror": (
        "http://mirror.example.invalid:3150",
        _section("kubernetes", "apt_mirror"),
        "field 'kubernetes.apt_mirror'",
    ),
    "kubernetes.packages_key": (
        "DE15B14486CD377B9E876E1A234654DA9A296436",
        _section("kubernetes", "packages_key"),
        "field 'kubernetes.packages_key'",
    ),
    "containerd.version": ("2.2.1", _section("containerd", "version"), "containerd.version"),
    "containerd.apt_mirror": (
        "http://mirror.example.invalid:3150",
        _section("containerd", "apt_mirror"),
        "field 'containerd.apt_mirror'",
    ),
    "containerd.packages_key": (
        "9DC858229FC7DD38854AE2D88D81803C0EBFCD88",
        _section("containerd", "packages_key"),
        "field 'containerd.packages_key'",
    ),
    "cilium.charts": (str(Path(__file__).parent), _charts_folder, "cilium.charts"),
    "cilium.repository": (
        "https://charts.example.invalid/cilium/",
        _section("cilium", "repository"),
        "field 'cilium.repository'",
    ),
    "ingress.charts": (str(Path(__file__).parent), _ingress("charts"), "ingress.charts"),
    "ingress.repository": (
        "https://charts.example.invalid/nginx/",
        _ingress("repository"),
        "field 'ingress.repository'",
    ),
    "ingress.admin_nodes[]": (
        "w1.example.invalid",
        lambda d, v: _ingress("admin_nodes")(d, [v]),
        "ingress.admin_nodes.0",
    ),
    "ingress.public_nodes[]": (
        "w1.example.invalid",
        lambda d, v: _ingress("public_nodes")(d, [v]),
        "ingress.public_nodes.0",
    ),
    "userspaces.spaces[].name": ("team", _userspace("name"), "userspaces.spaces.0.name"),
    "userspaces.spaces[].members[]": (
        "alice",
        _userspace("members"),
        "userspaces.spaces.0.members",
    ),
    "userspaces.spaces[].quota.requests_cpu": (
        "2",
        _userspace("requests_cpu", "quota"),
        "userspaces.spaces.0.quota.requests_cpu",
    ),
    "userspaces.spaces[].quota.requests_memory": (
        "1Gi",
        _userspace("requests_memory", "quota"),
        "userspaces.spaces.0.quota.requests_memory",
    ),
    "userspaces.spaces[].quota.limits_cpu": (
        "2",
        _userspace("limits_cpu", "quota"),
        "userspaces.spaces.0.quota.limits_cpu",
    ),
    "userspaces.spaces[].quota.limits_memory": (
        "1Gi",
        _userspace("limits_memory", "quota"),
        "userspaces.spaces.0.quota.limits_memory",
    ),
    "userspaces.spaces[].quota.requests_storage": (
        "1Gi",
        _userspace("requests_storage", "quota"),
        "userspaces.spaces.0.quota.requests_storage",
    ),
    "userspaces.spaces[].limits.default_request_cpu": (
        "2",
        _userspace("default_request_cpu", "limits"),
        "userspaces.spaces.0.limits.default_request_cpu",
    ),
    "userspaces.spaces[].limits.default_request_memory": (
        "1Gi",
        _userspace("default_request_memory", "limits"),
        "userspaces.spaces.0.limits.default_request_memory",
    ),
    "userspaces.spaces[].limits.default_cpu": (
        "2",
        _userspace("default_cpu", "limits"),
        "userspaces.spaces.0.limits.default_cpu",
    ),
    "userspaces.spaces[].limits.default_memory": (
        "1Gi",
        _userspace("default_memory", "limits"),
        "userspaces.spaces.0.limits.default_memory",
    ),
    "userspaces.spaces[].limits.max_cpu": (
        "2",
        _userspace("max_cpu", "limits"),
        "userspaces.spaces.0.limits.max_cpu",
    ),
    "userspaces.spaces[].limits.max_memory": (
        "1Gi",
        _userspace("max_memory", "limits"),
        "userspaces.spaces.0.limits.max_memory",
    ),
    "images.archives": (
        str(Path(__file__).parent),
        _section("images", "archives"),
        "images.archives",
    ),
    "kubernetes.kubeadm_patches": (
        str(Path(__file__).parent / "data" / "kubeadm-patches"),
        _section("kubernetes", "kubeadm_patches"),
        "kubernetes.kubeadm_patches",
    ),
    "kubernetes.ignore_preflight_errors[]": (
        "Swap",
        _listed("kubernetes", "ignore_preflight_errors"),
        "field 'kubernetes.ignore_preflight_errors.0'",
    ),
    "graylog.graylog_heap": ("2g", _section("graylog", "graylog_heap"), "graylog.graylog_heap"),
    "graylog.opensearch_heap": (
        "512m",
        _section("graylog", "opensearch_heap"),
        "graylog.opensearch_heap",
    ),
    "groups{}[][0]": ("w1.example.invalid", _host_name, "(group 'workers'), its name"),
    "groups{}[][1].address": (
        "w1.example.invalid",
        _host_field("address"),
        "(group 'workers'), field 'address'",
    ),
    "groups{}[][1].ip": ("10.10.0.31", _host_field("ip"), "(group 'workers'), field 'ip'"),
    "groups{}[][1].ssh_user": (
        "admin",
        _host_field("ssh_user"),
        "(group 'workers'), field 'ssh_user'",
    ),
    "groups{}[][1].ssh_key": (
        EXISTING_FILE,
        _host_field("ssh_key"),
        "(group 'workers'), field 'ssh_key'",
    ),
    "group_data{}.address": (
        "w1.example.invalid",
        _group_data("address"),
        "group_data 'workers', field 'address'",
    ),
    "group_data{}.ip": ("10.10.0.31", _group_data("ip"), "group_data 'workers', field 'ip'"),
    "group_data{}.ssh_user": (
        "admin",
        _group_data("ssh_user"),
        "group_data 'workers', field 'ssh_user'",
    ),
    "group_data{}.ssh_key": (
        EXISTING_FILE,
        _group_data("ssh_key"),
        "group_data 'workers', field 'ssh_key'",
    ),
}

# Paths on the deployer's own machine: Python opens them, no shell or host file sees them,
# and a quote is a legal file-name character there. Only control characters (and pasted
# key material, below) are refused.
LOCAL = {
    "secrets_dir",
    "images.archives",
    "cilium.charts",
    "ingress.charts",
    "kubernetes.kubeadm_patches",
    "ssh.key",
    "ssh.known_hosts_file",
    "registry.tls_cert",
    "registry.tls_key",
    "groups{}[][1].ssh_key",
    "group_data{}.ssh_key",
}
CONTROL = ["\n", "\r", "\r\n", "\t", "\x00", "\x1b", "\x7f", "\u2028", "\u200b"]
SHELL = ["'", '"', "$(id)", "`id`", ";reboot", " x", "&&x", "|x", "#x", "{x}", "\\x", "<x", "*"]
# A key line keeps its comment (spaces allowed) and drops the .pub file's final newline.
ACCEPTED = {("users[].keys[]", "suffix", " x"), ("users[].keys[]", "suffix", "\n")}


def cases():
    for path in sorted(SAMPLES):
        tries = [(p, w) for p in CONTROL for w in ("suffix", "prefix", "inside")]
        if path not in LOCAL:
            tries += [(p, "suffix") for p in SHELL]
        for payload, where in tries:
            if (path, where, payload) not in ACCEPTED:
                yield pytest.param(path, where, payload, id=f"{path}-{where}-{payload!r}")


def with_value(path: str, value: str) -> dict:
    desc = description()
    SAMPLES[path][1](desc, value)
    return desc


def placed(sample: str, where: str, payload: str) -> str:
    if where == "suffix":
        return sample + payload
    if where == "prefix":
        return payload + sample
    middle = len(sample) // 2
    return sample[:middle] + payload + sample[middle:]


def test_every_string_field_has_a_sample():
    assert string_fields(Description) == set(SAMPLES)


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_samples_are_valid(path):
    validate(with_value(path, SAMPLES[path][0]))


@pytest.mark.parametrize(("path", "where", "payload"), list(cases()))
def test_string_fields_refuse_control_and_shell_characters(path, where, payload):
    sample, _, named = SAMPLES[path]
    with pytest.raises(ConfigError) as refused:
        validate(with_value(path, placed(sample, where, payload)))
    found = refused.value.problems
    assert any(named in p for p in found), found
    assert not any(has_control(p) for p in found), found  # shown escaped, never raw


def test_a_public_key_line_loses_only_the_pub_files_final_newline():
    platform = validate(with_value("users[].keys[]", ED25519 + "\n"))
    assert platform.users[0].keys == [ED25519]
    assert validate(with_value("users[].keys[]", ED25519 + " x")).users[0].keys == [ED25519 + " x"]


def test_pydantic_patterns_end_at_the_end_of_the_text():
    """pydantic-core matches `Field(pattern=...)` with the Rust regex engine, where `$` is
    the end of the text; Python's re would accept a final newline. kubi's own types use
    re.fullmatch; this pins the engine's behaviour for any `Field(pattern=...)`."""
    import re

    pattern = r"^[a-z]+$"
    assert re.match(pattern, "abc\n")  # Python: '$' matches before a final newline
    adapter = TypeAdapter(Annotated[str, Field(pattern=pattern)])
    assert adapter.validate_python("abc") == "abc"
    for bad in ("abc\n", "abc\r", "abc\n\n"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


# --- SSH public keys, decoded ------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _line(key_type: str, blob: bytes, comment: str = "k@host") -> str:
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}"


def _openssh_keys() -> list[str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    keys = [
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
    ]
    return [
        k.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        for k in keys
    ]


def key_problem(line: str) -> str | None:
    try:
        validate(with_value("users[].keys[]", line))
    except ConfigError as exc:
        (problem,) = exc.problems
        return problem
    return None


@pytest.mark.parametrize("line", _openssh_keys(), ids=lambda k: k.split()[0])
def test_real_public_keys_of_every_type_are_accepted(line):
    assert key_problem(line + " k@host") is None


def test_security_key_types_are_accepted():
    ed = _string(b"sk-ssh-ed25519@openssh.com") + _string(bytes(32)) + _string(b"ssh:")
    assert key_problem(_line("sk-ssh-ed25519@openssh.com", ed)) is None
    point = b"\x04" + bytes(64)
    ec = (
        _string(b"sk-ecdsa-sha2-nistp256@openssh.com")
        + _string(b"nistp256")
        + _string(point)
        + _string(b"ssh:")
    )
    assert key_problem(_line("sk-ecdsa-sha2-nistp256@openssh.com", ec)) is None


def _ed25519_blob() -> bytes:
    return base64.b64decode(ED25519.split()[1])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # The type word says rsa, the blob holds an ed25519 key.
        (_line("ssh-rsa", _ed25519_blob()), "its key data is a ssh-ed25519 key, not ssh-rsa"),
        # Valid base64, but the blob stops half-way through the key.
        (_line("ssh-ed25519", _ed25519_blob()[:-8]), "truncated"),
        # A length prefix that promises more than there is.
        (_line("ssh-ed25519", _ed25519_blob()[:20]), "truncated"),
        # Bytes after the key.
        (_line("ssh-ed25519", _ed25519_blob() + _string(b"x")), "extra fields"),
        # The curve inside does not match the type word.
        (
            _line(
                "ecdsa-sha2-nistp384",
                _string(b"ecdsa-sha2-nistp384") + _string(b"nistp256") + _string(b"\x04" * 65),
            ),
            "its curve does not match ecdsa-sha2-nistp384",
        ),
        ("ssh-ed25519 AAAA!!!! k@host", "not valid base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", "truncated"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP k@host", "must be an OpenSSH public key line of type"),
        ("AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV", "must be an OpenSSH public key line"),
        (ED25519.replace("a@laptop", "a@laptop 'x'"), "its comment may hold"),
    ],
)
def test_public_keys_are_decoded_and_checked(line, expected):
    problem = key_problem(line)
    assert problem is not None and problem.startswith("user 'alice', field 'keys.0': "), problem
    assert expected in problem
    # The key data is never repeated (a private key pasted by mistake looks much the same).
    assert line.split()[-1] not in problem or line.split()[-1] == "k@host"


# --- accounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["root", "sudo", "adm", "shadow", "_apt", "www-data", "nobody", "sshd", "_chrony",
     "systemd-network", "systemd-anything", "messagebus", "nginx", "docker-registry",
     "apt-cacher-ng", "opensearch", "mongodb", "graylog", "kubi-ops", "kubi-dev"],
)  # fmt: skip
def test_people_cannot_take_a_system_or_service_account(name):
    problem = key_problem_for_name(name)
    assert problem.startswith(f"user {name!r}, field 'name': {name!r} is a system or service")
    assert "kubi/config/system_accounts.toml" in problem


def key_problem_for_name(name: str) -> str:
    with pytest.raises(ConfigError) as refused:
        validate(with_value("users[].name", name))
    (problem,) = refused.value.problems
    return problem


def test_the_system_account_list_holds_debians_base_accounts():
    from kubi.config.matrices import system_accounts

    base = Path("/usr/share/base-passwd/passwd.master")
    if not base.exists():
        pytest.skip("no base-passwd on this machine")
    names = {line.split(":")[0] for line in base.read_text().splitlines() if line}
    assert names <= system_accounts()


def test_two_people_with_the_same_name_are_refused():
    desc = description(
        users=[
            {"name": "alice", "role": "ops", "keys": [ED25519]},
            {"name": "bob", "role": "dev", "keys": [ED25519]},
            {"name": "alice", "role": "dev", "keys": [ED25519]},
        ]
    )
    with pytest.raises(ConfigError) as refused:
        validate(desc)
    assert refused.value.problems == [
        "field 'users': 'alice' listed more than once: each person is one entry (one "
        "account), with all their keys"
    ]


# --- the Kubernetes version ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "containerd"),
    [
        ("1.30.0", {"source": "debian"}),
        ("1.31.4", {"source": "debian"}),
        ("1.32.11", {"source": "docker", "version": "1.7.29"}),
        ("1.33.3", {"source": "debian"}),
        ("1.34.1", {"source": "docker", "version": "2.1.5"}),
        ("1.35.7", {"source": "docker", "version": "1.7.29"}),
        ("1.36.3", {}),  # the defaults
    ],
)
def test_supported_kubernetes_minors_are_accepted(version, containerd):
    platform = validate(description(versions={"kubernetes": version}, containerd=containerd))
    assert platform.versions.kubernetes == version


@pytest.mark.parametrize(
    ("version", "containerd", "said"),
    [
        (
            "1.35.7",
            {"source": "debian"},
            "containerd: Debian 12's containerd 1.6 does not run Kubernetes 1.35.7, which "
            "containerd 1.7 to 2.2 do (kubi/config/kubernetes.toml): set containerd.source: "
            "docker and a containerd.version of 1.7 to 2.2",
        ),
        (
            "1.34.1",
            {},
            "containerd: containerd.version 2.2.1 (2.2) does not run Kubernetes 1.34.1, which "
            "containerd 1.6 to 2.1 do (kubi/config/kubernetes.toml): set containerd.version to "
            "a release of 1.6 to 2.1 (or containerd.source: debian)",
        ),
    ],
)
def test_a_containerd_that_does_not_run_the_kubernetes_version_is_refused(
    version, containerd, said
):
    with pytest.raises(ConfigError) as refused:
        validate(description(versions={"kubernetes": version}, containerd=containerd))
    assert refused.value.problems == [said]


def test_containerd_is_not_checked_without_kubernetes():
    platform = validate(
        description(
            versions={"kubernetes": "1.36.3"},
            containerd={"source": "debian"},
            components={"kubernetes": False},  # and so what runs in the cluster
        )
    )
    assert platform.containerd.source == "debian"


@pytest.mark.parametrize("version", ["1.29.9", "1.37.0", "2.31.0"])
def test_kubernetes_minor_outside_the_table_is_refused(version):
    with pytest.raises(ConfigError) as refused:
        validate(description(versions={"kubernetes": version}))
    (problem,) = refused.value.problems
    minor = ".".join(version.split(".")[:2])
    assert problem.startswith(
        f"field 'versions.kubernetes': minor {minor} is not supported by kubi "
        "(kubi/config/kubernetes.toml); supported: 1.30, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36"
    )


def test_kubernetes_table_is_checked_when_loaded(tmp_path):
    from kubi.config import matrices

    shipped = matrices.kubernetes().minor
    assert shipped["1.31"].packages == "https://pkgs.k8s.io/core:/stable:/v1.31/deb/"
    bad = tmp_path / "kubernetes.toml"
    bad.write_text(
        '[minor."1.31"]\npackages = "https://pkgs.k8s.io/core:/stable:/v1.30/deb/"\n'
        '[minor."1.32\\n"]\npackages = "http://evil.invalid/"\n'
    )
    with pytest.raises(matrices.MatrixError) as refused:
        matrices.load("kubernetes", matrices.KubernetesMatrix, tmp_path)
    message = str(refused.value)
    assert "minor.1.32\n.[key]: must be a release series" in message
    assert "minor.1.32\n.packages: must be a pkgs.k8s.io channel" in message
    # Each field of an entry: tests/unit/test_kubernetes_versions.py.


# --- what is never echoed ------------------------------------------------------------------------

# Built in parts: no committed file carries a private key header.
PEM = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA\n-----END"
ONE_LINE_SECRET = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ" * 6


@pytest.mark.parametrize("secret", [PEM, PEM.replace("\n", " "), ONE_LINE_SECRET])
@pytest.mark.parametrize("path", sorted(LOCAL))
def test_key_material_given_for_a_path_is_refused_and_never_echoed(path, secret):
    with pytest.raises(ConfigError) as refused:
        validate(with_value(path, secret))
    rendered = refused.value.render()
    assert SAMPLES[path][2] in rendered
    assert "must be the path of a file, not its content" in rendered
    for part in ("PRIVATE KEY", "b3BlbnNz", "BEGIN"):
        assert part not in rendered


@pytest.mark.parametrize("path", ["users[].name", "groups{}[][0]", "name", "seed.timezone"])
def test_key_material_in_any_field_is_never_echoed(path):
    with pytest.raises(ConfigError) as refused:
        validate(with_value(path, PEM))
    rendered = refused.value.render()
    assert "b3BlbnNz" not in rendered and "PRIVATE KEY" not in rendered


# --- odd shapes: one problem list, never a traceback ---------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"groups": {"workers": [("w1", "x")]}},
        {"groups": {"workers": [123]}},
        {"groups": {"workers": [["w1", {}, 3]]}},
        {"groups": {1: []}},
        {"groups": [1]},
        {"group_data": {"workers": "x"}},
        {"network": {"pod_cidr": 5}},
        {"network": "x"},
        {"components": {1: True}},
        {"components": {"seed\n": True}},
        {"users": [{"name": ["x"], "role": "ops", "keys": "x"}]},
        {"ssh": {"key": 5}},
        {"seed": {"ntp_servers": "pool.ntp.org"}},
        {"seed": {"extra_packages": [b"vim"]}},
        {"name": 5},
    ],
)
def test_odd_shapes_give_a_problem_list(overrides):
    with pytest.raises(ConfigError) as refused:
        validate(description(**overrides))
    assert refused.value.problems
    assert not any(has_control(p) for p in refused.value.problems)


def test_an_unexpected_failure_of_a_check_is_one_problem_without_values(monkeypatch):
    from kubi.config import topology

    def broken(platform):
        raise RuntimeError(f"boom with {PEM}")

    monkeypatch.setattr(topology, "check_hosts", broken)
    with pytest.raises(ConfigError) as refused:
        validate(description())
    (problem,) = refused.value.problems
    assert problem.startswith("the description could not be checked (RuntimeError in ")
    assert "PRIVATE KEY" not in problem and "boom" not in problem
