"""Plans of deploys/package_proxy.py: apt-cacher-ng on the repository host."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

CONF = "/etc/apt-cacher-ng/zz_kubi.conf"
MIRROR = "/etc/apt-cacher-ng/backends_debian"


HOSTS = ["127.0.0.1\tlocalhost", "10.20.0.3\trepo1"]


def facts(files=None, installed=None, active=False, hosts=HOSTS, firewall=None):
    return {
        "facts.firewall.FirewallState": {
            "_": {"client": "10.20.0.11", "loaded": firewall, "uid_range": (1000, 60000)}
        },
        "files.FileContents": {"path=/etc/hosts": hosts},
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ManagedFile": {
            f"path={p}": (files or {}).get(p) for p in (CONF, MIRROR, "/etc/kubi/firewall.nft")
        },
        "kubi.facts.ServiceState": {"unit=apt-cacher-ng": {"active": active, "enabled": active}},
    }


def test_fresh_repository_host(description):
    lines = plan("deploys/package_proxy.py", "repo1", description, facts())
    assert any("install apt-cacher-ng 2>&1)" in line for line in lines)
    conf = uploads(lines)[CONF]
    assert "Port: 3142" in conf
    # The cache's own upstream, apt_proxy, by a name /etc/hosts answers: apt-cacher-ng
    # would ask DNS about the address and stall 17 s per request where DNS is unreachable.
    assert "Proxy: http://kubi-package-upstream:3142" in conf
    assert uploads(lines)["/etc/hosts"].splitlines() == [
        *HOSTS,
        "# BEGIN kubi package_proxy",
        "10.20.0.1\tkubi-package-upstream",
        "# END kubi package_proxy",
    ]
    assert "AllowUserPorts: 80 443" in conf  # HTTPS repositories as http://HTTPS///host/path
    assert "PassThroughPattern" not in conf  # no CONNECT: never an open relay
    assert uploads(lines)[MIRROR] == "http://deb.debian.org/debian/\n"
    assert sum("&& systemctl restart apt-cacher-ng" in line for line in lines) == 2
    # Then the indexes are fetched once, alone, before the other hosts' seed asks for them.
    warm = lines[-1]
    assert warm.startswith("package proxy answers (first fetch of the Debian indexes): ")
    assert "-x http://127.0.0.1:3142 http://deb.debian.org/debian/dists/bookworm/InRelease" in warm


def test_converged_plans_nothing(description):
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts()))
    hosts = written.pop("/etc/hosts").splitlines()
    current = facts(
        {p: managed(c) for p, c in written.items()}, {"apt-cacher-ng": ["3.7.4"]}, True, hosts
    )
    assert plan("deploys/package_proxy.py", "repo1", description, current) == []


def test_direct_mirror_access_without_upstream_proxy(description):
    del description["apt_proxy"]
    description["package_proxy"] = {"debian_mirror": "http://mirror.example.invalid/debian/"}
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts()))
    assert "Proxy:" not in written[CONF]
    assert written[MIRROR] == "http://mirror.example.invalid/debian/\n"
    assert "/etc/hosts" not in written  # names only: nothing to add


def test_a_mirror_on_its_own_port_may_be_fetched_from(description):
    description["kubernetes"] = {"apt_mirror": "http://10.20.0.1:3150"}
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts()))
    assert "AllowUserPorts: 80 443 3150\n" in written[CONF]


def test_a_mirror_given_by_address_is_named_and_a_stale_name_removed(description):
    del description["apt_proxy"]
    description["package_proxy"] = {"debian_mirror": "http://10.20.0.9/debian/"}
    stale = [*HOSTS, "# BEGIN kubi package_proxy", "10.9.9.9\tkubi-package-upstream"]
    stale.append("# END kubi package_proxy")
    lines = plan("deploys/package_proxy.py", "repo1", description, facts(hosts=stale))
    written = uploads(lines)
    assert written[MIRROR] == "http://kubi-package-mirror/debian/\n"
    assert written["/etc/hosts"].splitlines()[2:] == [
        "# BEGIN kubi package_proxy",
        "10.20.0.9\tkubi-package-mirror",
        "# END kubi package_proxy",
    ]
    # A running proxy keeps resolved names for DnsCacheSeconds: restarted on a change.
    restart = "! systemctl is-active -q apt-cacher-ng || systemctl restart apt-cacher-ng"
    assert any(line.endswith(f"&& {{ {restart}; }}") for line in lines)
    description["package_proxy"] = {"debian_mirror": "http://mirror.example.invalid/debian/"}
    written = uploads(plan("deploys/package_proxy.py", "repo1", description, facts(hosts=stale)))
    assert written["/etc/hosts"].splitlines() == HOSTS


@pytest.mark.parametrize("host", ["in1", "out1", "cp1", "w1"])
def test_only_on_the_repository_host(description, host):
    assert plan("deploys/package_proxy.py", host, description, {}) == []


def test_a_loaded_firewall_admits_new_hosts_before_their_seed(description):
    """A worker added to the inventory installs through the proxy before the firewall
    component runs: the proxy host's firewall takes this run's rules first."""
    from kubi import firewall
    from kubi.config.platform import validate

    cfg = validate(description, source="t")
    node = cfg.host("repo1")
    ip_of = {h.name: str(h.ip) for h in cfg.hosts}
    _, text = firewall.rules_file(cfg, node, ip_of, (1000, 60000))
    name = "firewall admits every platform host (new ones install through this proxy)"
    lines = plan(
        "deploys/package_proxy.py", "repo1", description, facts(firewall="0123456789abcdef")
    )
    admit = [line for line in lines if line.startswith(f"{name}: ")]
    assert admit and "nft -c -f /etc/kubi/firewall.nft" in admit[-1]
    assert "nft -f /etc/kubi/firewall.nft" in admit[-1]
    assert "10.20.0.31" in uploads(lines)["/etc/kubi/firewall.nft"]  # the worker
    # Rules already loaded, no firewall yet, or the firewall off: nothing.
    for case, desc in (
        (facts(firewall=firewall.loaded_digest(text)), description),
        (facts(), description),
        (facts(firewall="0123456789abcdef"), {**description, "components": {"firewall": False}}),
    ):
        assert not [
            line for line in plan("deploys/package_proxy.py", "repo1", desc, case) if name in line
        ]
