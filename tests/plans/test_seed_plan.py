"""Plans of deploys/seed.py: given what a host reports, exactly what the seed does."""

from __future__ import annotations

import pytest

from kubi import ops

from .conftest import managed
from .harness import plan, uploads

SEED_STATE = "facts.seed.SeedState"
KUBE_KEY = (
    "marker=/var/lib/kubi/seeded, modules=overlay,br_netfilter, sysctls="
    "net.bridge.bridge-nf-call-iptables,net.bridge.bridge-nf-call-ip6tables,net.ipv4.ip_forward"
)
SERVICE_KEY = "marker=/var/lib/kubi/seeded, modules=, sysctls="
PATHS = {
    "proxy": "/etc/apt/apt.conf.d/90kubi-proxy",
    "chrony": "/etc/chrony/chrony.conf",
    "sshd": "/etc/ssh/sshd_config.d/10-kubi-hardening.conf",
    "modules": "/etc/modules-load.d/kubi-kubernetes.conf",
    "sysctl": "/etc/sysctl.d/90-kubi-kubernetes.conf",
}
ALL_PACKAGES = {
    name: ["1"]
    for name in [
        "ca-certificates",
        "curl",
        "gnupg",
        "sudo",
        "chrony",
        "rsync",
        "jq",
        "lsof",
        "conntrack",
        "socat",
        "ethtool",
        "iptables",
        "ipset",
    ]
}


def fresh_facts(key=KUBE_KEY, **seed_state):
    state = {
        "hostname": "debian",
        "timezone": "Etc/UTC",
        "container": None,
        "seeded": False,
        "swap_active": 1,
        "swap_fstab": 1,
        "dpkg_pending": 0,
        "modules": {"overlay": "loaded", "br_netfilter": "missing"},
        "sysctl": {
            "net.ipv4.ip_forward": "0",
            "net.bridge.bridge-nf-call-iptables": None,
            "net.bridge.bridge-nf-call-ip6tables": None,
        },
    }
    state.update(seed_state)
    return {
        SEED_STATE: {key: state},
        "kubi.facts.ManagedFile": {f"path={p}": None for p in PATHS.values()},
        "deb.DebPackages": {"_": {"openssh-server": ["1"]}},
        "kubi.facts.ServiceState": {"unit=chrony": {"active": False, "enabled": None}},
        "files.FileContents": {"path=/etc/hosts": ["127.0.0.1\tlocalhost"]},
    }


def converged_facts(description, host, key=KUBE_KEY, **seed_state):
    """What the host reports after the fresh plan ran: the same files, packages, state."""
    written = uploads(plan("deploys/seed.py", host, description, fresh_facts(key)))
    state = {
        "hostname": host,
        "timezone": "Etc/UTC",
        "container": None,
        "seeded": True,
        "swap_active": 0,
        "swap_fstab": 0,
        "dpkg_pending": 0,
        "modules": {"overlay": "loaded", "br_netfilter": "loaded"},
        "sysctl": {
            "net.ipv4.ip_forward": "1",
            "net.bridge.bridge-nf-call-iptables": "1",
            "net.bridge.bridge-nf-call-ip6tables": "1",
        },
    }
    state.update(seed_state)
    return {
        SEED_STATE: {key: state},
        "kubi.facts.ManagedFile": {
            f"path={p}": managed(written[p]) if p in written else None for p in PATHS.values()
        },
        "deb.DebPackages": {"_": ALL_PACKAGES},
        "kubi.facts.ServiceState": {"unit=chrony": {"active": True, "enabled": True}},
        "files.FileContents": {"path=/etc/hosts": written["/etc/hosts"].splitlines()},
    }


def op_names(lines):
    return list(dict.fromkeys(line.partition(": ")[0] for line in lines))


def test_fresh_control_plane_node(description):
    lines = plan("deploys/seed.py", "cp1", description, fresh_facts())
    assert op_names(lines) == [
        "hostname cp1",
        "/etc/hosts platform entries",  # before apt: the proxy may be known by its alias
        "apt proxy",
        "system update and upgrade (seed.upgrade=first)",
        "base packages",
        "chrony configuration",
        "chrony running",
        "ssh hardening (keys only)",
        "swap off now",
        "swap off at boot (/etc/fstab)",
        "kernel modules at boot",
        "load kernel modules br_netfilter",  # overlay is already loaded
        "sysctls for Kubernetes",
        "apply Kubernetes sysctls",
    ]
    assert (
        "base packages: "
        + ops.apt_explained(
            f"{ops.REPAIR_DPKG} && "
            + ops.apt_get(
                "-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
                "-o DPkg::Lock::Timeout=300 install ca-certificates curl gnupg sudo chrony "
                "rsync jq lsof conntrack socat ethtool iptables ipset"
            )
        )
        in lines
    )  # no second `apt-get update`: the first-seed upgrade just refreshed the lists
    written = uploads(lines)
    assert written["/etc/hosts"].splitlines() == [
        "127.0.0.1\tlocalhost",
        "# BEGIN kubi",
        "# Platform hosts (managed by kubi seed; edit the inventory, not this block)",
        "10.20.0.11\tin1",
        "10.20.0.12\tout1",
        "10.20.0.13\trepo1 repository.plan.kubi.internal",
        "10.20.0.21\tcp1",
        "10.20.0.31\tw1",
        "# END kubi",
    ]
    assert 'Acquire::http::Proxy "http://10.20.0.1:3142";' in written[PATHS["proxy"]]
    assert "PasswordAuthentication no" in written[PATHS["sshd"]]
    assert "PermitRootLogin prohibit-password" in written[PATHS["sshd"]]
    # Never below OpenSSH's own default (6): an agent that offers a few other keys first
    # would lock an operator out.
    assert "\nMaxAuthTries 6\n" in written[PATHS["sshd"]]
    sshd = [line for line in lines if line.startswith("ssh hardening") and "sshd -t" in line]
    assert len(sshd) == 1 and "systemctl reload ssh" in sshd[0]


def test_converged_control_plane_plans_nothing(description):
    assert plan("deploys/seed.py", "cp1", description, converged_facts(description, "cp1")) == []


def test_converged_service_host_plans_nothing(description):
    facts = converged_facts(description, "in1", key=SERVICE_KEY, modules={}, sysctl={})
    assert plan("deploys/seed.py", "in1", description, facts) == []


def test_service_host_gets_no_kubernetes_node_settings(description):
    lines = plan(
        "deploys/seed.py", "in1", description, fresh_facts(SERVICE_KEY, modules={}, sysctl={})
    )
    names = op_names(lines)
    assert "ssh hardening (keys only)" in names
    assert not [n for n in names if "swap" in n or "Kubernetes" in n or "kernel modules" in n]
    assert "conntrack" not in "\n".join(lines)


def test_lab_container_builtin_modules_and_clock(description):
    facts = converged_facts(
        description,
        "w1",
        container="systemd-nspawn",
        modules={"overlay": "builtin", "br_netfilter": "builtin"},
        sysctl={
            "net.ipv4.ip_forward": "0",
            "net.bridge.bridge-nf-call-iptables": "1",
            "net.bridge.bridge-nf-call-ip6tables": "1",
        },
    )
    facts["kubi.facts.ServiceState"]["unit=chrony"] = {"active": False, "enabled": True}
    lines = plan("deploys/seed.py", "w1", description, facts)
    # Built-in modules are never modprobed; chrony is not started in a container; only
    # the one sysctl that differs triggers applying the platform's own sysctl file.
    assert lines == ["apply Kubernetes sysctls: sysctl -q -p /etc/sysctl.d/90-kubi-kubernetes.conf"]


def test_upgrade_always_upgrades_every_run(description):
    description["seed"] = {"upgrade": "always"}
    lines = plan("deploys/seed.py", "cp1", description, converged_facts(description, "cp1"))
    assert op_names(lines) == ["system update and upgrade (seed.upgrade=always)"]
    assert "dist-upgrade" in lines[0]


@pytest.mark.parametrize(("upgrade", "has_upgrade"), [("first", True), ("never", False)])
def test_first_seed_refreshes_lists_and_upgrades_unless_never(description, upgrade, has_upgrade):
    description["seed"] = {"upgrade": upgrade}
    lines = plan("deploys/seed.py", "cp1", description, fresh_facts())
    first = [line for line in lines if line.startswith("system update")]
    assert len(first) == 1 and "apt-get -q update" in first[0]
    assert ("dist-upgrade" in first[0]) is has_upgrade


def test_new_package_on_a_seeded_host_refreshes_lists_first(description):
    description["seed"] = {"extra_packages": ["htop"]}
    lines = plan("deploys/seed.py", "cp1", description, converged_facts(description, "cp1"))
    assert lines == [
        "base packages: "
        + ops.apt_explained(
            f"{ops.REPAIR_DPKG} && {ops.refresh_lists()} && "
            + ops.apt_get(
                "-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
                "-o DPkg::Lock::Timeout=300 install htop"
            )
        )
    ]


def test_no_proxy_configured_removes_ours(description):
    del description["apt_proxy"]
    facts = converged_facts(description, "cp1")
    facts["kubi.facts.ManagedFile"][f"path={PATHS['proxy']}"] = managed("old proxy\n")
    assert plan("deploys/seed.py", "cp1", description, facts) == [
        f"apt proxy: sh -c 'rm -f {PATHS['proxy']}'"
    ]


def test_package_proxy_switch_routes_apt_through_the_repository(description):
    description["package_proxy"] = {"for_all_hosts": True}
    lines = plan("deploys/seed.py", "cp1", description, fresh_facts())
    proxy = uploads(lines)[PATHS["proxy"]]
    assert 'Acquire::http::Proxy "http://repository.plan.kubi.internal:3142";' in proxy
    facts = fresh_facts(SERVICE_KEY, modules={}, sysctl={})
    own = uploads(plan("deploys/seed.py", "repo1", description, facts))[PATHS["proxy"]]
    assert 'Acquire::http::Proxy "http://10.20.0.1:3142";' in own  # its own upstream


def test_non_root_deploy_user_keeps_access_through_sudo(description):
    description["ssh"] = {"user": "admin"}
    lines = plan("deploys/seed.py", "cp1", description, fresh_facts())
    assert "PermitRootLogin no" in uploads(lines)[PATHS["sshd"]]


def test_an_interrupted_dpkg_is_finished_before_anything_else_apt_does(description):
    facts = converged_facts(description, "in1", key=SERVICE_KEY, dpkg_pending=2)
    assert plan("deploys/seed.py", "in1", description, facts) == [
        "finish the work of an interrupted dpkg (dpkg --configure -a): "
        "DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef --force-confold",
        "finish the work of an interrupted dpkg (dpkg --configure -a): "
        + ops.apt_get(
            "-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
            "-o DPkg::Lock::Timeout=300 --fix-broken install"
        ),
    ]
