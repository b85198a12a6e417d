"""registry: the repository host's registry behind nginx, and every host's trust in it.

Every check runs on the hosts themselves, with the names they resolve (/etc/hosts) and
their system trust store: what a cluster node or an operator on a host would see.
No secret is ever put on a command line: a node's pull credentials are read from its
containerd file by the shell and handed to curl on its stdin (`-H @-`).
"""

from __future__ import annotations

import shlex

import pytest

from kubi import registry

pytestmark = pytest.mark.roles("repository")

CURL = "curl -sS --max-time 10 -o /dev/null -w '%{http_code}'"


def status(node, url: str, *options: str) -> str:
    """HTTP status of a request from the host (TLS verified with the system's CAs)."""
    return node.check_output(f"{CURL} {' '.join(options)} {shlex.quote(url)}")


def test_registry_installed_running_enabled(node):
    assert node.package("docker-registry").is_installed
    service = node.service("docker-registry")
    assert service.is_running and service.is_enabled


def test_registry_listens_on_the_loopback_only(node):
    sockets = node.check_output("ss -Hltnp | grep '\"docker-registry\"' | awk '{print $4}'")
    assert sockets.split() == [registry.UPSTREAM]


def test_registry_configuration(node, platform):
    config = node.file(registry.CONFIG_FILE).content_string
    assert f"addr: {registry.UPSTREAM}" in config
    assert f"rootdirectory: {platform.registry.storage_path}" in config
    storage = node.file(platform.registry.storage_path)
    assert storage.is_directory and storage.user == "docker-registry"


def test_nginx_serves_tls_on_the_registry_port(node, platform):
    listening = node.check_output("ss -Hltnp | grep '\"nginx\"' | awk '{print $4}'").split()
    assert f"0.0.0.0:{platform.registry.port}" in listening
    # Its own name, from the host itself, verified with the system's CAs.
    assert status(node, f"{registry.url(platform)}/v2/") == "401"
    headers = node.check_output(
        f"curl -sS --max-time 10 -D - -o /dev/null {registry.url(platform)}/v2/"
    )
    assert "docker-distribution-api-version: registry/2.0" in headers.lower()
    assert f'www-authenticate: basic realm="{registry.REALM}"' in headers.lower()


def test_anonymous_write_is_refused(node, platform):
    url = f"{registry.url(platform)}/v2/kubi/verify/blobs/uploads/"
    assert status(node, url, "-X POST") == "401"


def test_key_and_accounts_are_private(node):
    pem = node.file(registry.TLS_FILE)
    assert (pem.mode, pem.user, pem.group) == (0o600, "root", "root")
    for path in (registry.PULL_HTPASSWD, registry.PUSH_HTPASSWD):
        f = node.file(path)
        assert (f.mode, f.user, f.group) == (0o640, "root", "www-data")
    assert node.file(registry.PUSH_HTPASSWD).content_string.startswith("kubi-push:$2")


def test_extension_point(node):
    assert node.file(registry.EXTENSION_DIR).is_directory
    full = node.check_output("nginx -T 2>/dev/null")
    assert f"include {registry.EXTENSION_DIR}/*.conf;" in full


@pytest.mark.roles("input", "output", "repository", "control_plane", "workers")
def test_every_host_trusts_the_registry(node, platform):
    if registry.uses_platform_ca(platform):
        ca = node.file(registry.system_ca_file(platform))
        assert ca.exists and "BEGIN CERTIFICATE" in ca.content_string
    # No -k: a TLS failure would be 000, not an HTTP status.
    assert status(node, f"{registry.url(platform)}/v2/") == "401"


@pytest.mark.roles("control_plane", "workers")
def test_containerd_registry_folder(node, platform):
    folder = registry.containerd_dir(platform)
    hosts = node.file(f"{folder}/hosts.toml")
    assert (hosts.mode, hosts.user) == (0o600, "root")
    toml = hosts.content_string
    assert f'server = "{registry.url(platform)}"' in toml
    assert 'capabilities = ["pull", "resolve"]' in toml
    if registry.uses_platform_ca(platform):
        assert f'ca = "{folder}/ca.crt"' in toml
        system_ca = node.file(registry.system_ca_file(platform)).content_string
        assert node.file(f"{folder}/ca.crt").content_string == system_ca


@pytest.mark.roles("control_plane", "workers")
def test_node_pulls_with_its_containerd_credentials(node, platform):
    """The credentials containerd will send are accepted (ping needs an account)."""
    folder = registry.containerd_dir(platform)
    if platform.registry.anonymous_pull:
        pytest.skip("registry.anonymous_pull: the nodes hold no credentials")
    # the first of its two equal copies (the [host] entry's and the fallback server's)
    header = (
        f"sed -n 's/^ *Authorization = \"\\(.*\\)\"$/Authorization: \\1/p' {folder}/hosts.toml"
        " | head -n 1"
    )
    code = node.check_output(f"{header} | {CURL} -H @- {registry.url(platform)}/v2/")
    assert code == "200"
