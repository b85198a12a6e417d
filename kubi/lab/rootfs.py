"""The lab's root filesystems: one debootstrap base, built once through apt-cacher-ng and
shared read-only, and per host an overlayfs over it that makes the host itself (name,
address, host keys). A change of recipe rebuilds the base; `down` keeps it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from kubi.lab import machine, plan
from kubi.lab.plan import GATEWAY, MIRROR, PROXY_PORT, LabError, LabHost, Log

SUITE = "bookworm"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3",
    "iproute2", "iputils-ping", "curl", "ca-certificates", "procps", "sudo", "gnupg", "less",
    "netbase",
)  # fmt: skip
# Content of the base's completion marker: a change of recipe rebuilds the cached base.
# v3: the lab proxy moved to its own port (written into the base's apt configuration).
# v4: apt's source cache kept, as on any Debian host (see _configure_base).
BASE_RECIPE = f"kubi-lab base v4 {SUITE} " + ",".join(BASE_PACKAGES)


def ensure_key() -> Path:
    """The lab's root SSH key (kept by `down`, so hosts of the next `up` accept it)."""
    key = plan.key_path()
    plan.LAB_DIR.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        key.with_name(key.name + ".pub").unlink(missing_ok=True)
        machine.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubi-lab", "-f", key)
    key.chmod(0o600)
    public = key.with_name(key.name + ".pub")
    if not public.exists():
        public.write_text(machine.run("ssh-keygen", "-y", "-f", key).stdout)
    return key


def base_complete() -> bool:
    marker = plan.base_marker()
    return marker.exists() and marker.read_text() == BASE_RECIPE and plan.base_dir().is_dir()


def ensure_base(key: Path, log: Log) -> None:
    """Build the shared rootfs once through the proxy; a half-built one is started over."""
    if base_complete():
        return
    base = plan.base_dir()
    plan.base_marker().unlink(missing_ok=True)
    shutil.rmtree(base, ignore_errors=True)
    started = time.monotonic()
    log(f"lab: building the base rootfs ({SUITE}, through apt-cacher-ng; about a minute)")
    source = f"http://127.0.0.1:{PROXY_PORT}/{MIRROR.removeprefix('http://')}"
    proc = machine.run(
        "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, base,
        source, check=False, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(
            f"debootstrap failed (see {base}/debootstrap/debootstrap.log); check that "
            f"apt-cacher-ng on 127.0.0.1:{PROXY_PORT} reaches {MIRROR}, then run `up` again."
        )
    _configure_base(base, key)
    plan.base_marker().write_text(BASE_RECIPE)
    log(f"lab: base rootfs built in {time.monotonic() - started:.1f} s")


def _configure_base(base: Path, key: Path) -> None:
    """What makes one base bootable as many distinct hosts (docs/lab.md, "How the lab is
    built")."""
    etc = base / "etc"
    authorize(base, key)
    machine.write(etc / "apt/sources.list", _sources_list())
    machine.write(
        etc / "apt/apt.conf.d/01kubi-lab-proxy",
        # apt's source cache (srcpkgcache.bin) stays on, as on any Debian host: without it,
        # every apt command after a package change re-read all the package lists (a second
        # of CPU each, on every host at once); switching it off saved 39 MiB a host.
        f'Acquire::http::Proxy "{plan.APT_PROXY}";\nAcquire::Check-Valid-Until "false";\n',
    )
    # Hosts have no DNS and no route out; the gateway answers "no such name" at once (dns.py).
    # Not 127.0.0.1: CoreDNS forwarding to a loopback resolver detects a loop and stops.
    machine.write(etc / "resolv.conf", f"# lab hosts have no DNS\nnameserver {GATEWAY}\n")
    machine.write(etc / "hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    machine.write(etc / "machine-id", "")  # empty: systemd makes a fresh id per host at boot
    dbus_id = base / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for host_key in (etc / "ssh").glob("ssh_host_*"):
        host_key.unlink()  # per-host keys are made at host creation
    getty = etc / "systemd/system/console-getty.service"
    getty.unlink(missing_ok=True)
    getty.symlink_to("/dev/null")
    machine.write(etc / "systemd/journald.conf.d/kubi-lab.conf", "[Journal]\nStorage=volatile\n")
    machine.write(etc / "ssh/sshd_config.d/kubi-lab.conf", "UseDNS no\n")
    # Clean first: `update` then rebuilds pkgcache.bin in the base, not in every host's upper.
    machine.run("chroot", base, "apt-get", "clean")
    proxy = f"Acquire::http::Proxy=http://127.0.0.1:{PROXY_PORT}"  # no bridge needed while building
    machine.run("chroot", base, "apt-get", "-o", proxy, "update", timeout=600)


def _sources_list() -> str:
    return (
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )


def authorize(root: Path, key: Path) -> None:
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    machine.write(ssh_dir / "authorized_keys", key.with_name(key.name + ".pub").read_text(), 0o600)


def add_deploy_account(root: Path, name: str, key: Path) -> None:
    """An admin account as production inventories use one: the lab key, sudo without a
    password (a person's own sudo rules come from the bastion; this is the deploy's)."""
    machine.run("useradd", "--root", root, "--create-home", "--shell", "/bin/bash", name)
    uid, gid = next(
        (int(f[2]), int(f[3]))
        for f in (line.split(":") for line in (root / "etc/passwd").read_text().splitlines())
        if f[0] == name
    )
    ssh_dir = root / "home" / name / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    machine.write(keys, key.with_name(key.name + ".pub").read_text(), 0o600)
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)
    machine.write(
        root / "etc/sudoers.d/kubi-lab-deploy", f"{name} ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440
    )


def mount_overlay(host: LabHost) -> Path:
    """The host's disk: its own upper layer over the shared base, mounted at `merged` (kept
    as it is when mounted already: a stopped host keeps its disk)."""
    directory = plan.host_dir(host.name)
    upper, work, merged = (directory / d for d in ("upper", "work", "merged"))
    (directory / "containerd").mkdir(parents=True, exist_ok=True)  # see plan.nspawn_argv
    if merged in machine.mounts_under(directory):
        return merged
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={plan.base_dir()},upperdir={upper},workdir={work}"
    machine.run("mount", "-t", "overlay", "overlay", "-o", options, merged)
    return merged


NODE_UNIT = "kubi-lab-node.service"
NODE_SCRIPT = "/usr/local/sbin/kubi-lab-node"


def add_node_boot_unit(root: Path) -> None:
    """Lab only: what a kubelet needs of a host that is a container, at every boot, before
    containerd and the kubelet start (docs/kubernetes-lab.md §4). A real node needs none of
    it: the deploys set real sysctls and load real modules there."""
    machine.write(root / NODE_SCRIPT.lstrip("/"), plan.node_boot_script(), 0o755)
    unit = root / "etc/systemd/system" / NODE_UNIT
    machine.write(unit, plan.node_boot_unit(NODE_SCRIPT))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / NODE_UNIT
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{NODE_UNIT}")
    # A pod whose PID 1 ignores SIGTERM held the host's shutdown for 90 s.
    machine.write(
        root / "etc/systemd/system.conf.d/kubi-lab.conf", "[Manager]\nDefaultTimeoutStopSec=10s\n"
    )


def prepare_rootfs(host: LabHost, key: Path, deploy_user: str = "root") -> None:
    """Overlay over the base plus what makes this host itself: name, address, host keys,
    and the deploy account when it is not root."""
    merged = mount_overlay(host)
    etc = merged / "etc"
    machine.write(etc / "hostname", f"{host.name}\n")
    hosts = (plan.base_dir() / "etc/hosts").read_text() + f"{host.address} {host.name}\n"
    machine.write(etc / "hosts", hosts)
    authorize(merged, key)  # also right when the key was re-made after the base was built
    if deploy_user != "root":
        add_deploy_account(merged, deploy_user, key)
    if host.role in plan.KUBERNETES_NODE_ROLES:
        add_node_boot_unit(merged)
    machine.run("ssh-keygen", "-A", "-f", merged)
