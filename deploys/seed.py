"""seed: what every platform host gets first.

System update (on first seeding, or every run with seed.upgrade=always), base packages,
time synchronisation, hostname, /etc/hosts entries for all platform hosts, SSH hardening;
on Kubernetes nodes also swap off and the kernel modules and sysctls kubeadm expects.

    pyinfra inventories/lab.py deploys/seed.py
"""

import shlex

from pyinfra import host
from pyinfra.operations import server

from facts.seed import SeedState
from kubi import ops
from kubi.deploy import addresses, component, entry_script, me, platform
from kubi.templates import render

MARKER = "/var/lib/kubi/seeded"
BASE_PACKAGES = ["ca-certificates", "curl", "gnupg", "sudo", "chrony", "rsync", "jq", "lsof"]
# What kubeadm's preflight checks and kube-proxy need on a node.
KUBERNETES_PACKAGES = ["conntrack", "socat", "ethtool", "iptables", "ipset"]
KUBERNETES_MODULES = ("overlay", "br_netfilter")
KUBERNETES_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
SYSCTL_FILE = "/etc/sysctl.d/90-kubi-kubernetes.conf"


@component("seed")
def seed() -> None:
    cfg = platform()
    node = me()
    kube = node.is_kubernetes_node
    facts = host.get_fact(
        SeedState,
        marker=MARKER,
        modules=KUBERNETES_MODULES if kube else (),
        sysctls=tuple(KUBERNETES_SYSCTLS) if kube else (),
    )

    # --- names (first: the apt proxy may be the repository host, known by its alias) ---
    if facts["hostname"] != node.short_name:
        short = shlex.quote(node.short_name)
        server.shell(
            name=f"hostname {node.short_name}",
            commands=[
                f"hostnamectl set-hostname {short} 2>/dev/null"
                f" || {{ hostname {short} && echo {short} > /etc/hostname; }}"
            ],
        )
    ip_of = addresses()
    entries = []
    for other in cfg.hosts:
        names = list(dict.fromkeys([other.name, other.short_name]))
        if "repository" in other.roles:
            names.append(cfg.repository_alias)
        entries.append({"ip": ip_of[other.name], "names": names})
    ops.block(
        name="/etc/hosts platform entries",
        path="/etc/hosts",
        content=render("seed", "hosts", entries=entries),
        # A damaged file (localhost lost) is a change to repair, not "no change".
        required=("127.0.0.1 localhost",),
    )

    # --- packages ----------------------------------------------------------------------------
    apt_proxy = cfg.apt_proxy_for(node)
    ops.file(
        name="apt proxy",
        # 90-: read after the distribution's and the image's own apt settings, so it wins.
        path="/etc/apt/apt.conf.d/90kubi-proxy",
        content=render("seed", "apt-proxy.conf", apt_proxy=apt_proxy) if apt_proxy else None,
    )
    if facts["dpkg_pending"]:
        # Also when nothing is left to install: `dpkg --audit` lists half-done packages.
        server.shell(
            name="finish the work of an interrupted dpkg (dpkg --configure -a)",
            commands=[
                f"{ops.APT_ENV} dpkg --configure -a --force-confdef --force-confold",
                ops.apt_get(f"{ops.APT_OPTS} --fix-broken install"),
            ],
        )
    upgrade = ops.system_upgrade(
        name=f"system update and upgrade (seed.upgrade={cfg.seed.upgrade})",
        marker=MARKER,
        upgrade=cfg.seed.upgrade,
        seeded=facts["seeded"],
    )
    ops.packages(
        name="base packages",
        names=BASE_PACKAGES + (KUBERNETES_PACKAGES if kube else []) + cfg.seed.extra_packages,
        update=not upgrade.will_change,  # the upgrade just refreshed the package lists
    )

    # --- time --------------------------------------------------------------------------------
    if facts["timezone"] != cfg.seed.timezone:
        zone = cfg.seed.timezone
        server.shell(
            name=f"time zone {zone}",
            commands=[
                f"ln -sf {shlex.quote('/usr/share/zoneinfo/' + zone)} /etc/localtime",
                f"echo {shlex.quote(zone)} > /etc/timezone",
            ],
        )
    ops.file(
        name="chrony configuration",
        path="/etc/chrony/chrony.conf",
        content=render("seed", "chrony.conf", ntp_servers=cfg.seed.ntp_servers),
        reload="systemctl try-restart chrony",
    )
    if facts["container"]:
        # A container cannot set the clock (no CAP_SYS_TIME): systemd skips chrony there, so
        # "running" would never converge. The machine's own clock is synchronised instead.
        ops.service(
            name=f"chrony enabled (not started: {facts['container']} container shares "
            "the host clock)",
            unit="chrony",
            running=None,
        )
    else:
        ops.service(name="chrony running", unit="chrony")

    # --- ssh ---------------------------------------------------------------------------------
    ops.file(
        name="ssh hardening (keys only)",
        path="/etc/ssh/sshd_config.d/10-kubi-hardening.conf",
        content=render("seed", "sshd-hardening.conf", deploy_user=node.ssh_user),
        check="sshd -t",
        reload="systemctl reload ssh",
    )

    # --- Kubernetes nodes ----------------------------------------------------------------------
    if kube:
        if facts["swap_active"]:
            server.shell(name="swap off now", commands=["swapoff -a"])
        if facts["swap_fstab"]:
            server.shell(
                name="swap off at boot (/etc/fstab)",
                commands=[
                    r"sed -i -E '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/#kubi# /' /etc/fstab"
                ],
            )
        ops.file(
            name="kernel modules at boot",
            path="/etc/modules-load.d/kubi-kubernetes.conf",
            content=render("seed", "kubernetes-modules.conf", modules=KUBERNETES_MODULES),
        )
        # A built-in module needs no loading (and a lab host, sharing the machine's kernel,
        # could not load one anyway).
        missing = [m for m, status in facts["modules"].items() if status == "missing"]
        if missing:
            server.shell(
                name=f"load kernel modules {' '.join(missing)}",
                commands=[f"modprobe -a {' '.join(map(shlex.quote, missing))}"],
            )
        ops.file(
            name="sysctls for Kubernetes",
            path=SYSCTL_FILE,
            content=render("seed", "kubernetes-sysctl.conf", sysctls=KUBERNETES_SYSCTLS),
        )
        if any(facts["sysctl"].get(key) != value for key, value in KUBERNETES_SYSCTLS.items()):
            # Only our own file: `sysctl --system` would also touch kernel-wide keys that a
            # container may not write.
            server.shell(
                name="apply Kubernetes sysctls",
                commands=[f"sysctl -q -p {shlex.quote(SYSCTL_FILE)}"],
            )


if entry_script(__name__):
    seed()
