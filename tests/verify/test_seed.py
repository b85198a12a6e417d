"""seed: verified on every platform host."""

from __future__ import annotations

import pytest

BASE_PACKAGES = ["ca-certificates", "curl", "gnupg", "sudo", "chrony", "rsync", "jq", "lsof"]
KUBERNETES_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "net.ipv4.ip_forward": 1,
}


def test_seeded_once(node):
    assert node.file("/var/lib/kubi/seeded").is_file


def test_base_packages(node, platform):
    for name in BASE_PACKAGES + list(platform.seed.extra_packages):
        assert node.package(name).is_installed, name


def test_time_sync_and_zone(node, platform):
    chrony = node.service("chrony")
    assert chrony.is_enabled
    in_container = node.run("systemd-detect-virt --container").rc == 0
    if not in_container:  # a container cannot set the clock; its host does
        assert chrony.is_running
    assert node.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{platform.seed.timezone}"


def test_hostname(node, spec):
    assert node.check_output("hostname") == spec.short_name


def resolve(node, name: str) -> str:
    # ahostsv4: an IPv4 answer from /etc/hosts ends the lookup (`getent hosts` would
    # also ask DNS for an IPv6 address first).
    return node.check_output(f"getent ahostsv4 {name}").split()[0]


def test_platform_hosts_resolve_through_etc_hosts(node, platform):
    hosts = node.file("/etc/hosts").content_string
    assert "# BEGIN kubi" in hosts and "# END kubi" in hosts
    for other in platform.hosts:
        address = resolve(node, other.name)
        if other.ip is not None:
            assert address == str(other.ip), other.name
    repository = platform.role("repository")[0]
    assert resolve(node, platform.repository_alias) == resolve(node, repository.name)


def test_ssh_keys_only(node, spec):
    effective = dict(
        line.split(" ", 1) for line in node.check_output("sshd -T 2>/dev/null").splitlines()
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["pubkeyauthentication"] == "yes"
    assert effective["permitemptypasswords"] == "no"
    wanted = "without-password" if spec.ssh_user == "root" else "no"  # sshd -T's spelling
    assert effective["permitrootlogin"] == wanted
    # Not fewer than OpenSSH's default: an agent offering several keys still gets in.
    assert effective["maxauthtries"] == "6"
    assert node.service("ssh").is_running


def test_apt_proxy(node, platform, spec):
    conf = node.file("/etc/apt/apt.conf.d/90kubi-proxy")
    proxy = platform.apt_proxy_for(spec)
    if proxy:
        assert proxy in conf.content_string
        assert node.check_output("apt-config dump Acquire::http::Proxy") == (
            f'Acquire::http::Proxy "{proxy}";'
        )
    else:
        assert not conf.exists


@pytest.mark.roles("control_plane", "workers")
def test_kubernetes_node_prerequisites(node):
    assert node.check_output("tail -n +2 /proc/swaps") == ""
    assert "overlay" in node.file("/proc/filesystems").content_string
    for key, value in KUBERNETES_SYSCTLS.items():
        assert node.sysctl(key) == value, key
    for package in ("conntrack", "socat", "ethtool", "iptables"):
        assert node.package(package).is_installed, package
