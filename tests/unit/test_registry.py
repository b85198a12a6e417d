"""The registry's templates and accounts with the real programs: nginx from a temporary
prefix (as tests/unit/test_nginx_mechanism.py) in front of the real Debian registry binary,
both on 127.0.0.1. Proves TLS with the platform CA, the accounts and the push/pull policy
with an image pushed and pulled over the registry API, and the /charts/ extension point.

The registry binary: `docker-registry` on PATH, $KUBI_REGISTRY_BIN, or extracted from the
Debian package without installing it (no service started), as scripts/bootstrap does:
    apt-get download docker-registry
    dpkg-deb -x docker-registry_*.deb ${KUBI_TEST_CACHE:-/var/cache/kubi-test}/docker-registry
"""

from __future__ import annotations

import copy
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt
import pytest
import yaml

from kubi import registry
from kubi.config import validate
from kubi.secrets import Secrets
from kubi.templates import render
from tests import oci
from tests.plans.conftest import DESCRIPTION

from .test_nginx_mechanism import MODULES, NGINX, Nginx, free_port

TEST_CACHE = Path(os.environ.get("KUBI_TEST_CACHE", "/var/cache/kubi-test"))
EXTRACTED = TEST_CACHE / "docker-registry/usr/bin/docker-registry"
REGISTRY_BIN = (
    os.environ.get("KUBI_REGISTRY_BIN")
    or shutil.which("docker-registry")
    or (str(EXTRACTED) if EXTRACTED.exists() else None)
)
needs_nginx = pytest.mark.skipif(
    not (Path(NGINX).exists() and (MODULES / "50-mod-stream.conf").exists()),
    reason="needs nginx and libnginx-mod-stream (apt-get install nginx libnginx-mod-stream)",
)
NO_REGISTRY = (
    "needs the registry binary: run scripts/bootstrap (it unpacks the package into "
    f"{TEST_CACHE}/docker-registry)"
)
# CI bootstraps the machine first (.ci/run): there a missing binary is a bug, not a skip.
IN_CI = os.environ.get("CI") == "true"
needs_registry = (
    pytest.mark.usefixtures("registry_required")
    if IN_CI
    else pytest.mark.skipif(REGISTRY_BIN is None, reason=NO_REGISTRY)
)


class _Loopback(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, verifying the certificate for the repository's name (the platform
    CA vouches for no IP address) as a host resolving that name would."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@pytest.fixture
def registry_required():
    if REGISTRY_BIN is None:
        pytest.fail(f"CI: {NO_REGISTRY}")


def platform(secrets_dir: Path, **settings):
    """The plan platform with these `registry` settings."""
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = str(secrets_dir)
    description["registry"] = settings
    return validate(description)


# --- accounts ----------------------------------------------------------------------------------


def test_htpasswd_verifies_with_bcrypt_and_is_stable(tmp_path):
    secrets = Secrets(tmp_path)
    text = registry.htpasswd(secrets, ("push", "pull"))
    users = dict(line.split(":", 1) for line in text.splitlines())
    assert set(users) == {"kubi-push", "kubi-pull"}
    for kind, user in registry.ACCOUNTS.items():
        password = secrets.read(f"registry-{kind}.password")
        assert bcrypt.checkpw(password.encode(), users[user].encode())
        assert users[user].startswith(f"$2b$0{registry.BCRYPT_ROUNDS}$")
    assert registry.htpasswd(secrets, ("push", "pull")) == text  # same file on every converge
    # A new password (rotated by hand in the secrets) gets a new hash.
    secrets.write("registry-pull.password", "rotated-password")
    rotated = dict(
        line.split(":", 1) for line in registry.htpasswd(secrets, ("pull",)).splitlines()
    )
    assert bcrypt.checkpw(b"rotated-password", rotated["kubi-pull"].encode())
    assert "rotated-password" not in repr(registry.account(secrets, "pull"))


# --- templates ---------------------------------------------------------------------------------


def registry_config(storage: Path, listen: str) -> str:
    return render("registry", "config.yml", storage_path=str(storage), listen=listen)


def test_registry_config(tmp_path):
    config = yaml.safe_load(registry_config(tmp_path / "store", "127.0.0.1:5000"))
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "store")
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["health"]["storagedriver"]["enabled"] is True
    assert "auth" not in config  # nginx checks the accounts


class Stack:
    """nginx (TLS, accounts, /charts/) in front of a real registry, all on 127.0.0.1."""

    def __init__(self, root: Path, secrets_dir: Path, **settings):
        self.root = root
        self.cfg = platform(secrets_dir, **settings)
        self.secrets = Secrets(secrets_dir)
        self.nginx = Nginx(root / "nginx")
        self.port = free_port()
        self.upstream = f"127.0.0.1:{free_port()}"
        for sub in ("tls", "auth", "repository.d", "charts", "store"):
            (root / sub).mkdir()
        (root / "tls" / "repository.pem").write_text(
            registry.tls_pem(self.cfg, [self.cfg.repository_alias, "repo1"])
        )
        (root / "auth" / "pull").write_text(registry.htpasswd(self.secrets, ("push", "pull")))
        (root / "auth" / "push").write_text(registry.htpasswd(self.secrets, ("push",)))
        self.site = render(
            "registry",
            "site.conf",
            port=f"127.0.0.1:{self.port}",
            server_names=[self.cfg.repository_alias, "repo1"],
            tls_file=root / "tls" / "repository.pem",
            realm=registry.REALM,
            pull_htpasswd=root / "auth" / "pull",
            push_htpasswd=root / "auth" / "push",
            anonymous_pull=self.cfg.registry.anonymous_pull,
            upstream=self.upstream,
            extension_dir=root / "repository.d",
        )
        (self.nginx.root / "sites.conf.d" / "registry.conf").write_text(self.site)
        (root / "repository.d" / "charts.conf").write_text(
            render(
                "charts",
                "location.conf",
                charts_path=root / "charts",
                anonymous_pull=self.cfg.registry.anonymous_pull,
                realm=registry.REALM,
                pull_htpasswd=root / "auth" / "pull",
            )
        )
        (root / "charts" / "index.yaml").write_text("apiVersion: v1\nentries: {}\n")
        self.context = ssl.create_default_context(cafile=self.secrets.path("ca.crt"))
        self.registry: subprocess.Popen | None = None

    def start(self):
        config = self.root / "config.yml"
        config.write_text(registry_config(self.root / "store", self.upstream))
        log = (self.root / "registry.log").open("w")
        self.registry = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        subprocess.run([NGINX, "-c", str(self.nginx.conf)], check=True)
        deadline = time.monotonic() + 15
        while self.request("GET", "/v2/", "push")[0] != 200:
            assert time.monotonic() < deadline, (self.root / "registry.log").read_text()
            time.sleep(0.1)

    def stop(self):
        if (self.nginx.root / "nginx.pid").exists():
            subprocess.run([NGINX, "-c", str(self.nginx.conf), "-s", "quit"], check=False)
        if self.registry is not None:
            self.registry.terminate()
            self.registry.wait(10)

    def request(self, method, path, account=None, body=b"", headers=None):
        connection = _Loopback(
            self.cfg.repository_alias, self.port, context=self.context, timeout=10
        )
        sent = dict(headers or {})
        if account:
            sent["Authorization"] = "Basic " + registry.account(self.secrets, account).basic()
        try:
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        except OSError:
            return 0, {}, b""
        finally:
            connection.close()

    def push(self, name, tag, image, account="push"):
        """Push over the registry API (blobs, then the manifest); the last status."""
        for blob in (image.layer, image.config):
            status, headers, _ = self.request("POST", f"/v2/{name}/blobs/uploads/", account)
            if status != 202:
                return status
            location = urlsplit(headers["Location"])
            joiner = "&" if location.query else "?"
            target = f"{location.path}?{location.query}{joiner}digest={oci.digest(blob)}"
            status, _, _ = self.request(
                "PUT", target.replace("?&", "?"), account, blob,
                {"Content-Type": "application/octet-stream"},
            )  # fmt: skip
            if status != 201:
                return status
        return self.request(
            "PUT", f"/v2/{name}/manifests/{tag}", account, image.manifest,
            {"Content-Type": oci.MANIFEST_TYPE},
        )[0]  # fmt: skip


@pytest.fixture
def stack_root():
    # nginx workers run as www-data: pytest's tmp_path (0700) is not readable for them.
    root = Path(tempfile.mkdtemp(prefix="kubi-repository-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(stack_root, tmp_path):
    made = Stack(stack_root, tmp_path / "secrets")
    yield made
    made.stop()


@needs_nginx
def test_site_and_charts_location_pass_nginx_t(stack):
    result = stack.nginx.test()
    assert result.returncode == 0, result.stderr
    full = subprocess.run(
        [NGINX, "-T", "-c", str(stack.nginx.conf)], capture_output=True, text=True
    ).stdout
    server = full[full.index("server {") :]
    assert "location /charts/ {" in server  # included through the extension point


@needs_nginx
@needs_registry
def test_push_and_pull_policy_through_tls(stack):
    stack.start()
    image = oci.image()
    # The ping always challenges, with the header v2 clients look for.
    status, headers, _ = stack.request("GET", "/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"] == f'Basic realm="{registry.REALM}"'
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert stack.request("GET", "/v2/", "pull")[0] == 200

    assert stack.push("kubi/hello", "1", image, account=None) == 401  # anonymous push
    assert stack.push("kubi/hello", "1", image, account="pull") == 401  # read-only account
    assert stack.push("kubi/hello", "1", image) == 201

    accept = {"Accept": oci.MANIFEST_TYPE}
    assert stack.request("GET", "/v2/kubi/hello/manifests/1", None, headers=accept)[0] == 401
    status, headers, body = stack.request("GET", "/v2/kubi/hello/manifests/1", "pull", b"", accept)
    assert status == 200 and body == image.manifest
    assert headers["Docker-Content-Digest"] == image.manifest_digest
    status, _, layer = stack.request(
        "GET", f"/v2/kubi/hello/blobs/{oci.digest(image.layer)}", "pull"
    )
    assert status == 200 and layer == image.layer
    # Deleting is off in the registry itself (and a write for nginx).
    digest = image.manifest_digest
    assert stack.request("DELETE", f"/v2/kubi/hello/manifests/{digest}", "pull")[0] == 401
    assert stack.request("DELETE", f"/v2/kubi/hello/manifests/{digest}", "push")[0] == 405
    # Nothing but the registry and the extension locations is served.
    assert stack.request("GET", "/", "push")[0] == 404


@needs_nginx
@needs_registry
def test_charts_are_read_with_the_pull_policy_and_never_written(stack):
    stack.start()
    assert stack.request("GET", "/charts/index.yaml")[0] == 401
    status, headers, body = stack.request("GET", "/charts/index.yaml", "pull")
    assert status == 200 and yaml.safe_load(body) == {"apiVersion": "v1", "entries": {}}
    assert headers["Content-Type"] == "application/x-yaml"
    assert stack.request("PUT", "/charts/x-1.0.0.tgz", "push", b"x")[0] == 403
    assert not (stack.root / "charts" / "x-1.0.0.tgz").exists()


@needs_nginx
@needs_registry
def test_anonymous_pull_still_refuses_anonymous_push(stack_root, tmp_path):
    stack = Stack(stack_root, tmp_path / "secrets", anonymous_pull=True)
    try:
        stack.start()
        image = oci.image("anonymous\n")
        assert stack.request("GET", "/v2/")[0] == 401  # so pushers know to authenticate
        assert stack.push("kubi/open", "1", image, account=None) == 401
        assert stack.push("kubi/open", "1", image, account="pull") == 401
        assert stack.push("kubi/open", "1", image) == 201
        accept = {"Accept": oci.MANIFEST_TYPE}
        status, _, body = stack.request("GET", "/v2/kubi/open/manifests/1", None, b"", accept)
        assert status == 200 and body == image.manifest
        assert stack.request("GET", "/charts/index.yaml")[0] == 200
    finally:
        stack.stop()


@needs_registry
def test_registry_listens_on_the_loopback_only(tmp_path):
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(registry_config(tmp_path / "store", f"127.0.0.1:{port}"))
    process = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            listening = subprocess.run(
                ["ss", "-Hltnp"], capture_output=True, text=True
            ).stdout.splitlines()
            mine = [line.split()[3] for line in listening if f"pid={process.pid}," in line]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert mine == [f"127.0.0.1:{port}"]
    finally:
        process.terminate()
        process.wait(10)
