"""Plans of deploys/registry.py: the registry and its TLS server on the repository host,
trust in it on every host, containerd's registry folder on the Kubernetes nodes."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from kubi.secrets import Secrets

from .conftest import managed
from .harness import plan, uploads

DEPLOY = "deploys/registry.py"
ALIAS = "repository.plan.kubi.internal"
CA_FILE = "/usr/local/share/ca-certificates/kubi-plan.crt"
CONTAINERD = f"/etc/containerd/certs.d/{ALIAS}"
REPO_FILES = (
    "/etc/docker/registry/config.yml",
    "/etc/nginx/tls/repository.pem",
    "/etc/nginx/auth/repository-pull.htpasswd",
    "/etc/nginx/auth/repository-push.htpasswd",
    "/etc/nginx/sites.conf.d/registry.conf",
    CA_FILE,
)
NODE_FILES = (CA_FILE, f"{CONTAINERD}/ca.crt", f"{CONTAINERD}/hosts.toml")
DIRS = ("/var/lib/docker-registry", "/etc/nginx/repository.d")
SERVICE = "kubi.facts.ServiceState"

# Built in two parts so that no committed file carries a private-key header.
KEY_HEADER = "-----BEGIN " + "PRIVATE KEY-----"


@pytest.fixture
def description(description, tmp_path):
    description["secrets_dir"] = str(tmp_path / "secrets")
    return description


# with the images component: one per upstream registry of the platform's images (kubeadm's,
# Cilium's, the default pod network, the ingress controllers' and the dashboard's)
MIRROR = "/etc/containerd/certs.d/registry.k8s.io/hosts.toml"
QUAY = "/etc/containerd/certs.d/quay.io/hosts.toml"
DOCKER = "/etc/containerd/certs.d/docker.io/hosts.toml"
GHCR = "/etc/containerd/certs.d/ghcr.io/hosts.toml"


def fresh_facts(paths=REPO_FILES):
    return {
        "kubi.facts.ManagedFile": {f"path={p}": None for p in (*paths, MIRROR, QUAY, DOCKER, GHCR)},
        "deb.DebPackages": {"_": {"nginx": ["1.22.1"]}},
        "files.Directory": {f"path={d}": None for d in DIRS},
        SERVICE: {"unit=docker-registry": {"active": False, "enabled": None}},
    }


def converged_facts(description, host, paths=REPO_FILES):
    written = uploads(plan(DEPLOY, host, description, fresh_facts(paths)))
    modes = {p: "600" for p in ("/etc/nginx/tls/repository.pem", f"{CONTAINERD}/hosts.toml")}
    files = {f"path={p}": managed(c, modes.get(p, "644")) for p, c in written.items()}
    for mirrored in (MIRROR, QUAY, DOCKER, GHCR):
        files[f"path={mirrored}"] = None
    for p in (
        "/etc/nginx/auth/repository-pull.htpasswd",
        "/etc/nginx/auth/repository-push.htpasswd",
    ):
        if p in written:
            files[f"path={p}"] = {**managed(written[p], "640"), "group": "www-data"}
    return {
        "kubi.facts.ManagedFile": files,
        "deb.DebPackages": {"_": {"nginx": ["1.22.1"], "docker-registry": ["2.8.2+ds1-1"]}},
        "files.Directory": {
            "path=/var/lib/docker-registry": {
                "mode": 750,
                "user": "docker-registry",
                "group": "docker-registry",
            },
            "path=/etc/nginx/repository.d": {"mode": 755, "user": "root", "group": "root"},
        },  # fmt: skip
        SERVICE: {"unit=docker-registry": {"active": True, "enabled": True}},
    }


def test_fresh_repository_host(description):
    lines = plan(DEPLOY, "repo1", description, fresh_facts())
    names = [line.split(": ", 1)[0] for line in lines]
    # The configuration lands before the package: its first start is already on the loopback.
    assert names.index("registry configuration") < names.index("registry package")
    assert "registry configuration: mkdir -p -m 755 /etc/docker/registry" in lines
    assert any(
        line.startswith("registry package: ") and "install docker-registry 2>&1)" in line
        for line in lines
    )
    assert "registry storage /var/lib/docker-registry: mkdir -p /var/lib/docker-registry" in lines
    assert (
        "registry storage /var/lib/docker-registry: "
        "chown docker-registry:docker-registry /var/lib/docker-registry" in lines
    )
    # A fresh install starts with the right file already: no extra restart.
    assert not [line for line in lines if line.startswith("restart registry")]
    assert "registry running: systemctl enable docker-registry" in lines
    assert "registry running: systemctl start docker-registry" in lines

    written = uploads(lines)
    config = written["/etc/docker/registry/config.yml"]
    assert "addr: 127.0.0.1:5000" in config
    assert "rootdirectory: /var/lib/docker-registry" in config
    assert "delete:\n    enabled: false" in config

    site = written["/etc/nginx/sites.conf.d/registry.conf"]
    assert "listen 443 ssl;" in site
    assert f"server_name {ALIAS} repo1;" in site
    assert "client_max_body_size 0;" in site and "chunked_transfer_encoding on;" in site
    assert "proxy_pass http://127.0.0.1:5000;" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    assert "add_header Docker-Distribution-Api-Version $kubi_registry_api_version always;" in site
    assert "include /etc/nginx/repository.d/*.conf;" in site
    assert "auth_basic off;" not in site  # reads need an account by default
    site_line = [line for line in lines if line.startswith("nginx site registry: sh -c")][0]
    assert "nginx -t" in site_line and "reload-or-restart nginx" in site_line

    pem = written["/etc/nginx/tls/repository.pem"]
    assert "BEGIN CERTIFICATE" in pem and KEY_HEADER in pem
    tls_line = [line for line in lines if line.startswith("repository TLS certificate and key: sh")]
    assert "chmod 600" in tls_line[0] and "nginx -t" in tls_line[0]
    assert (
        "repository extension folder /etc/nginx/repository.d: mkdir -p /etc/nginx/repository.d"
        in lines
    )
    # The platform CA is trusted by the repository host too (it curls its own name).
    assert written[CA_FILE].startswith("-----BEGIN CERTIFICATE-----")
    assert [line for line in lines if "update-ca-certificates --fresh" in line]


def test_htpasswd_files_verify_the_stored_passwords(description, tmp_path):
    written = uploads(plan(DEPLOY, "repo1", description, fresh_facts()))
    secrets = Secrets(tmp_path / "secrets")
    push, pull = secrets.read("registry-push.password"), secrets.read("registry-pull.password")

    def users(text):
        return dict(line.split(":", 1) for line in text.splitlines())

    readers = users(written["/etc/nginx/auth/repository-pull.htpasswd"])
    writers = users(written["/etc/nginx/auth/repository-push.htpasswd"])
    assert set(readers) == {"kubi-push", "kubi-pull"} and set(writers) == {"kubi-push"}
    assert bcrypt.checkpw(pull.encode(), readers["kubi-pull"].encode())
    assert bcrypt.checkpw(push.encode(), writers["kubi-push"].encode())
    assert not bcrypt.checkpw(pull.encode(), writers["kubi-push"].encode())


def test_no_secret_in_operation_names_or_commands(description, tmp_path):
    lines = plan(DEPLOY, "repo1", description, fresh_facts())
    secrets = Secrets(tmp_path / "secrets")
    hidden = [secrets.read(n) for n in ("registry-push.password", "registry-pull.password")]
    commands = [line for line in lines if ": upload " not in line]
    assert not [line for line in commands for s in hidden if s in line]
    key = uploads(lines)["/etc/nginx/tls/repository.pem"].split(KEY_HEADER)[1]
    assert not [line for line in commands if key.splitlines()[1] in line]


@pytest.mark.parametrize("host", ["in1", "out1", "repo1", "cp1", "w1"])
def test_the_ca_key_reaches_no_host(description, tmp_path, host):
    lines = plan(DEPLOY, host, description, fresh_facts(REPO_FILES + NODE_FILES))
    ca_key = Secrets(tmp_path / "secrets").read("ca.key")
    body = ca_key.splitlines()[1]  # a line of the key's base64
    assert not [line for line in lines if body in line]
    assert Secrets(tmp_path / "secrets").read("ca.crt") in uploads(lines)[CA_FILE]


def test_converged_repository_host_plans_nothing(description):
    assert plan(DEPLOY, "repo1", description, converged_facts(description, "repo1")) == []


def test_changed_configuration_restarts_the_registry_once(description):
    facts = converged_facts(description, "repo1")
    facts["kubi.facts.ManagedFile"]["path=/etc/docker/registry/config.yml"] = managed("old")
    lines = plan(DEPLOY, "repo1", description, facts)
    assert [line.split(": ", 1)[0] for line in lines] == [
        "registry configuration",
        "registry configuration",
        "restart registry (configuration changed)",
    ]
    assert (
        lines[-1] == "restart registry (configuration changed): systemctl restart docker-registry"
    )


@pytest.mark.parametrize("host", ["cp1", "w1"])
def test_kubernetes_node_gets_the_ca_and_containerd_files(description, tmp_path, host):
    lines = plan(DEPLOY, host, description, fresh_facts(NODE_FILES))
    written = uploads(lines)
    assert set(written) == set(NODE_FILES)
    assert written[CA_FILE] == written[f"{CONTAINERD}/ca.crt"]
    assert written[CA_FILE] == (tmp_path / "secrets" / "ca.crt").read_text()
    toml = written[f"{CONTAINERD}/hosts.toml"]
    import tomllib

    parsed = tomllib.loads(toml)
    # one address, with its credentials, as [host] and as the fallback server alike
    assert parsed["server"] == f"https://{ALIAS}"
    assert parsed["host"] == {f"https://{ALIAS}": {k: v for k, v in parsed.items()
                                                   if k not in ("server", "host")}}  # fmt: skip
    assert parsed["capabilities"] == ["pull", "resolve"]
    assert parsed["ca"] == f"{CONTAINERD}/ca.crt"
    pull = (tmp_path / "secrets" / "registry-pull.password").read_text()
    assert (
        parsed["header"]["Authorization"]
        == "Basic " + base64.b64encode(f"kubi-pull:{pull}".encode()).decode()
    )
    name = f"containerd hosts.toml of {ALIAS}"
    hosts_line = [line for line in lines if line.startswith(f"{name}: sh")]
    assert "chmod 600" in hosts_line[0]
    assert not [line for line in lines if "docker-registry" in line or "nginx" in line]


def test_with_the_images_component_nodes_pull_upstream_names_through_the_registry(
    description, tmp_path
):
    import tomllib

    description["components"] = {"images": True}
    lines = plan(DEPLOY, "w1", description, fresh_facts(NODE_FILES))
    parsed = tomllib.loads(uploads(lines)[MIRROR])
    # the platform registry's copies alone: no fall back to upstream (air-gapped sites)
    assert parsed["server"] == f"https://{ALIAS}/v2/registry.k8s.io"
    assert list(parsed["host"]) == [parsed["server"]]
    assert parsed["override_path"] is True  # <registry>/v2/registry.k8s.io/<name>/manifests/..
    assert parsed["ca"] == f"{CONTAINERD}/ca.crt"
    assert parsed["header"]["Authorization"].startswith("Basic ")
    for path, origin in ((QUAY, "quay.io"), (DOCKER, "docker.io"), (GHCR, "ghcr.io")):
        mirror = tomllib.loads(uploads(lines)[path])
        assert mirror["server"] == f"https://{ALIAS}/v2/{origin}", origin
        assert mirror["override_path"] is True and list(mirror["host"]) == [mirror["server"]]
    # Turned off again: the file goes, and the nodes pull from upstream.
    description["components"] = {}
    facts = fresh_facts(NODE_FILES)
    facts["kubi.facts.ManagedFile"][f"path={MIRROR}"] = managed("old", "600")
    removal = [line for line in plan(DEPLOY, "w1", description, facts) if MIRROR in line]
    assert removal and removal[0].startswith("containerd hosts.toml of registry.k8s.io: ")
    assert f"rm -f {MIRROR}" in removal[-1]


@pytest.mark.parametrize("host", ["cp1", "w1"])
def test_converged_kubernetes_node_plans_nothing(description, host):
    assert plan(DEPLOY, host, description, converged_facts(description, host, NODE_FILES)) == []


@pytest.mark.parametrize("host", ["in1", "out1"])
def test_other_service_hosts_get_only_the_ca(description, host):
    lines = plan(DEPLOY, host, description, fresh_facts((CA_FILE,)))
    assert set(uploads(lines)) == {CA_FILE}
    assert [line.split(": ", 1)[0] for line in lines] == [
        "platform CA trusted by the system (kubi-plan)"
    ] * 2
    converged = {"kubi.facts.ManagedFile": {f"path={CA_FILE}": managed(uploads(lines)[CA_FILE])}}
    assert plan(DEPLOY, host, description, converged) == []


def test_other_port_and_anonymous_pull(description, tmp_path):
    description["registry"] = {"port": 5443, "anonymous_pull": True}
    site = uploads(plan(DEPLOY, "repo1", description, fresh_facts()))[
        "/etc/nginx/sites.conf.d/registry.conf"
    ]
    assert "listen 5443 ssl;" in site
    ping, reads = site.split("location = /v2/ {")[1].split("location /v2/ {")
    assert "auth_basic_user_file /etc/nginx/auth/repository-pull.htpasswd;" in ping
    assert "auth_basic off;" in reads.split("limit_except")[0]
    assert "auth_basic_user_file /etc/nginx/auth/repository-push.htpasswd;" in reads
    folder = f"/etc/containerd/certs.d/{ALIAS}:5443"
    node = uploads(
        plan(
            DEPLOY,
            "w1",
            description,
            fresh_facts((CA_FILE, f"{folder}/ca.crt", f"{folder}/hosts.toml")),
        )
    )
    toml = node[f"{folder}/hosts.toml"]
    assert f'server = "https://{ALIAS}:5443"' in toml
    assert "Authorization" not in toml  # anonymous reads: no credentials on the nodes


def test_operator_certificate_installs_no_ca(description, tmp_path):
    from kubi.pki import server_certificate

    corp = Secrets(tmp_path / "corp")
    cert, key = server_certificate(corp, "corp", "plan.kubi.internal", "r", [ALIAS])
    (tmp_path / "r.crt").write_text(cert)
    (tmp_path / "r.key").write_text(key)
    description["registry"] = {
        "tls_cert": str(tmp_path / "r.crt"),
        "tls_key": str(tmp_path / "r.key"),
    }
    repo = uploads(plan(DEPLOY, "repo1", description, fresh_facts()))
    assert repo["/etc/nginx/tls/repository.pem"] == cert + key
    assert CA_FILE not in repo
    assert not (tmp_path / "secrets" / "ca.crt").exists()  # no platform CA made for this
    # A CA kubi installed earlier is removed again (and the store refreshed).
    facts = fresh_facts(NODE_FILES)
    facts["kubi.facts.ManagedFile"][f"path={CA_FILE}"] = managed("old CA")
    lines = plan(DEPLOY, "w1", description, facts)
    assert "update-ca-certificates --fresh" in [line for line in lines if CA_FILE in line][0]
    toml = uploads(lines)[f"{CONTAINERD}/hosts.toml"]
    assert "ca =" not in toml and f"{CONTAINERD}/ca.crt" not in uploads(lines)


def test_a_non_root_deploy_stages_every_upload_in_its_own_private_folder(description):
    """Through sudo, pyinfra's default staging file is /tmp/pyinfra-<hash of the destination>:
    predictable, world-readable under the usual umask. kubi stages in /run/kubi-upload, made
    by root for the deploy account alone, before the first upload of each file."""
    description["ssh"] = {"user": "admin"}
    lines = plan(DEPLOY, "repo1", description, fresh_facts())
    uploaded = [line for line in lines if ": upload " in line]
    assert uploaded and all(" via /run/kubi-upload/ <<" in line for line in uploaded)
    pem = [line.split(": ", 1)[1] for line in lines
           if line.startswith("repository TLS certificate and key: ")]  # fmt: skip
    # The key's file is made with its final mode first, the folder in the same round trip.
    assert pem[0] == (
        "mkdir -p -m 755 /etc/nginx/tls && install -m 600 -o root -g root /dev/null "
        "/etc/nginx/tls/repository.pem.kubi-new"
        " && install -d -m 700 -o admin /run/kubi-upload"
    )
    assert pem[1].startswith("upload /etc/nginx/tls/repository.pem.kubi-new via /run/kubi-upload/")
    # As root, files go straight to their place.
    description["ssh"] = {"user": "root"}
    as_root = plan(DEPLOY, "repo1", description, fresh_facts())
    assert not [line for line in as_root if "/run/kubi-upload" in line]
