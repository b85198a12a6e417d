"""package_proxy: apt-cacher-ng on the repository host, used by the hosts when switched on."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest


@pytest.mark.roles("repository")
def test_cache_runs_and_listens(node, platform):
    assert node.package("apt-cacher-ng").is_installed
    service = node.service("apt-cacher-ng")
    assert service.is_running and service.is_enabled
    port = platform.package_proxy.port
    assert node.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_hosts_install_through_their_proxy(node, platform, spec):
    proxy = platform.apt_proxy_for(spec)  # the repository host's cache when switched on
    if proxy is None:
        pytest.skip("no apt proxy configured: hosts reach their mirrors directly")
    assert f'"{proxy}"' in node.check_output("apt-config dump Acquire::http::Proxy")
    # A real download through the proxy, of what apt itself asks first.
    result = node.run("apt-get -q update -o APT::Update::Error-Mode=any")
    assert result.rc == 0, result.stderr


@pytest.mark.roles("repository")
def test_the_cache_s_upstream_resolves_without_dns(node):
    """An upstream given as an address is named in /etc/hosts: apt-cacher-ng would ask DNS
    about the address and stall 17 s per request where DNS does not answer."""
    settings = node.file("/etc/apt-cacher-ng/zz_kubi.conf").content_string
    upstream = [line.split()[1] for line in settings.splitlines() if line.startswith("Proxy:")]
    mirror = node.file("/etc/apt-cacher-ng/backends_debian").content_string.split()
    for url in upstream + mirror:
        host = urlsplit(url).hostname or ""
        assert not host.replace(".", "").isdigit() and ":" not in host, url  # never an address
        if host.startswith("kubi-package-"):
            assert node.run(f"getent -s files hosts {host}").rc == 0, host
