"""The repository host's delivery server: what the `registry` and `charts` components share.

One nginx TLS server on the repository host (`registry.port`, all interfaces) fronts the
Docker registry (which itself listens on 127.0.0.1:5000 only) and, through the extension
folder `repository.d/`, the other repository services (the Helm chart repository).

Accounts (basic auth, bcrypt htpasswd files generated from the platform's secrets):
- `kubi-push`: may push and pull;
- `kubi-pull`: may only pull (the cluster nodes use it).
Reads need one of them unless `registry.anonymous_pull`; writes always need `kubi-push`.
The passwords live in the secrets directory as `registry-push.password` and
`registry-pull.password` (see `Secrets`), never in the repository.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import bcrypt

from kubi import pki
from kubi.config import Platform
from kubi.secrets import Secrets, for_platform

UPSTREAM = "127.0.0.1:5000"  # the registry's own HTTP listener: loopback only
CONFIG_FILE = "/etc/docker/registry/config.yml"
SERVICE = "docker-registry"
SERVICE_USER = "docker-registry"  # created by the Debian package

NGINX_SITE = "registry"
TLS_FILE = "/etc/nginx/tls/repository.pem"  # certificate chain then key, one file: atomic swap
AUTH_DIR = "/etc/nginx/auth"
PULL_HTPASSWD = f"{AUTH_DIR}/repository-pull.htpasswd"  # kubi-push and kubi-pull
PUSH_HTPASSWD = f"{AUTH_DIR}/repository-push.htpasswd"  # kubi-push only
# Extension point: every *.conf here is included inside the repository TLS server block.
EXTENSION_DIR = "/etc/nginx/repository.d"
REALM = "kubi repository"

CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d"

# nginx checks the password with crypt(3) on *every* request (a layer pull is several), so
# the bcrypt cost is paid per request. The passwords are 190-bit random strings, which no
# cost factor protects further; 5 is Apache htpasswd's own default for -B.
BCRYPT_ROUNDS = 5


@dataclass(frozen=True)
class Account:
    user: str
    password: str = field(repr=False)  # never shown in a traceback or a log line

    def basic(self) -> str:
        """The value of an HTTP basic `Authorization` header (without 'Basic ')."""
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


ACCOUNTS = {"push": "kubi-push", "pull": "kubi-pull"}


def account(secrets: Secrets, kind: str) -> Account:
    """The `push` or `pull` account, its password generated on first use."""
    return Account(ACCOUNTS[kind], secrets.get(f"registry-{kind}.password"))


def _hash(secrets: Secrets, kind: str) -> str:
    """The account's bcrypt hash, kept in the secrets so the htpasswd file is stable.

    A fresh salt on every run would rewrite the file (a change on every converge); the
    stored hash is reused as long as it matches the password.
    """
    password = account(secrets, kind).password.encode()
    name = f"registry-{kind}.bcrypt"
    if secrets.exists(name):
        stored = secrets.read(name).strip()
        try:
            if bcrypt.checkpw(password, stored.encode()):
                return stored
        except ValueError:  # not a bcrypt hash: make a new one
            pass
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
    secrets.write(name, hashed)
    return hashed


def htpasswd(secrets: Secrets, kinds: tuple[str, ...]) -> str:
    """An htpasswd file for the given accounts (`push`, `pull`)."""
    return "".join(f"{ACCOUNTS[kind]}:{_hash(secrets, kind)}\n" for kind in kinds)


def endpoint(platform: Platform) -> str:
    """`<repository alias>[:port]`: how images are named (`<endpoint>/kubi/hello:1`)."""
    port = platform.registry.port
    return platform.repository_alias + ("" if port == 443 else f":{port}")


def url(platform: Platform) -> str:
    return f"https://{endpoint(platform)}"


def charts_url(platform: Platform) -> str:
    return f"{url(platform)}/charts/"


def uses_platform_ca(platform: Platform) -> bool:
    """True unless the operator gave the server certificate (then its issuer is trusted by
    means outside kubi, and kubi installs no CA of its own)."""
    return platform.registry.tls_cert is None


def platform_ca(platform: Platform) -> str:
    """The platform CA certificate (PEM), created on first use."""
    return pki.platform_ca(for_platform(platform), platform.name, platform.domain)[0]


def system_ca_file(platform: Platform) -> str:
    """Where every host keeps the platform CA for its system trust store."""
    return f"/usr/local/share/ca-certificates/kubi-{platform.name}.crt"


def server_names(platform: Platform, host_name: str, short_name: str) -> list[str]:
    return list(dict.fromkeys([platform.repository_alias, host_name, short_name]))


def tls_pem(platform: Platform, names: list[str]) -> str:
    """Certificate (chain) then private key, as nginx reads them from one file.

    The platform CA's certificate names those of `names` inside the platform's domain
    (clients use `repository.<domain>`); nginx still answers to all of them."""
    settings = platform.registry
    if settings.tls_cert is not None and settings.tls_key is not None:
        cert, key = settings.tls_cert.read_text(), settings.tls_key.read_text()
    else:
        cert, key = pki.server_certificate(
            for_platform(platform),
            platform.name,
            platform.domain,
            "registry",
            [n for n in names if pki.in_domain(n, platform.domain)],
        )
    return cert.rstrip("\n") + "\n" + key.rstrip("\n") + "\n"


def containerd_dir(platform: Platform) -> str:
    """containerd's folder for the registry: `certs.d/<host>[:port]` (its hosts.toml layout)."""
    return f"{CONTAINERD_CERTS_DIR}/{endpoint(platform)}"
