"""package_proxy: apt-cacher-ng on the repository host, used by the hosts when switched on."""

from __future__ import annotations

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
