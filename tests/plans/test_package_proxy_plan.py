"""Plans of deploys/package_proxy.py: apt-cacher-ng on the repository host."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

CONF = "/etc/apt-cacher-ng/zz_kubi.conf"
MIRROR = "/etc/apt-cacher-ng/backends_debian"


def facts(files=None, installed=None, active=False):
    return {
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ManagedFile": {f"path={p}": (files or {}).get(p) for p in (CONF, MIRROR)},
        "kubi.facts.ServiceState": {"unit=apt-cacher-ng": {"active": active, "enabled": active}},
    }


def test_fresh_repository_host(description):
    lines = plan("deploys/package_proxy.py", "repo1", description, facts())
    assert "install apt-cacher-ng 2>&1)" in lines[0]
    conf = uploads(lines)[CONF]
    assert "Port: 3142" in conf
    assert "Proxy: http://10.20.0.1:3142" in conf  # the cache's own upstream: apt_proxy
    assert "AllowUserPorts: 80 443" in conf  # HTTPS repositories as http://HTTPS///host/path
    assert "PassThroughPattern" not in conf  # no CONNECT: never an open relay
    assert uploads(lines)[MIRROR] == "http://deb.debian.org/debian/\n"
    assert sum("systemctl restart apt-cacher-ng" in line for line in lines) == 2


def test_converged_plans_nothing(description):
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts()))
    current = facts({p: managed(c) for p, c in written.items()}, {"apt-cacher-ng": ["3.7.4"]}, True)
    assert plan("deploys/package_proxy.py", "repo1", description, current) == []


def test_direct_mirror_access_without_upstream_proxy(description):
    del description["apt_proxy"]
    description["package_proxy"] = {"debian_mirror": "http://mirror.example.invalid/debian/"}
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts()))
    assert "Proxy:" not in written[CONF]
    assert written[MIRROR] == "http://mirror.example.invalid/debian/\n"


@pytest.mark.parametrize("host", ["in1", "out1", "cp1", "w1"])
def test_only_on_the_repository_host(description, host):
    assert plan("deploys/package_proxy.py", host, description, {}) == []
