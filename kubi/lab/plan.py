"""The lab's names, plan and state file, and the parsing of what the machine reports.

Pure (no command is run here) except for the state file, so the unit tier covers it all.
Every other lab module reads `LAB_DIR` through this module (`plan.LAB_DIR`), so one
assignment here moves the whole lab.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

# Everything the lab keeps on disk (base rootfs, hosts' overlays, keys, state, secrets).
# Resolved: mounts and processes are found by the real path (mountinfo, nspawn's argv), and
# nspawn runs from "/", where a relative path would mean something else.
LAB_DIR = Path(os.environ.get("KUBI_LAB_DIR", "/var/lib/kubi-lab")).resolve()
BRIDGE = "kubibr0"
SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = str(SUBNET.network_address + 1)
GUARD_RANGE = "10.77.0.0/16"
# The lab's own apt-cacher-ng process (not the machine's service, which it leaves alone),
# on a port of its own so that both can run; its cache outlives labs (a fresh lab then
# fetches nothing twice), in a folder of its own.
PROXY_PORT = 3149
APT_PROXY = f"http://{GATEWAY}:{PROXY_PORT}"
# Its configuration, log, socket and pid file: not under LAB_DIR, which may be a folder only
# root can enter (the proxy runs as its package's account); one lab per machine, one folder.
PROXY_DIR = Path("/run/kubi-lab-proxy")
PROXY_CACHE = Path(os.environ.get("KUBI_LAB_PROXY_CACHE", "/var/cache/kubi-lab-proxy")).resolve()
MIRROR = "http://deb.debian.org/debian"  # apt-cacher-ng's backend for Debian
# The lab's own package mirror (kubi.lab.kubernetes): what no registry reachable from the lab
# serves (Kubernetes packages), laid out like upstream's repositories under their host names
# (the apt-mirror layout of kubi.aptsource.mirrored), served read-only on loopback and the
# bridge address; its log and pid file in a folder of its own under /run.
LAB_MIRROR_PORT = 3150
LAB_MIRROR = f"http://{GATEWAY}:{LAB_MIRROR_PORT}"
LAB_MIRROR_RUN_DIR = Path("/run/kubi-lab-mirror")
# The lab's DNS server (kubi.lab.dns), on the bridge address: its log and pid file.
LAB_DNS_RUN_DIR = Path("/run/kubi-lab-dns")

FIRST_HOST_OCTET = 11  # .2-.10 stay free for anything the lab may add on the bridge later
HOST_PREFIX = "lab-"
NETNS_PREFIX = "kubi-"
VETH_PREFIX = "kv-"
CGROUP_GROUP = "kubi-lab"
ROLES = ("input", "output", "repository", "control_plane", "workers")
KUBERNETES_NODE_ROLES = ("control_plane", "workers")

NETNS_DIR = Path("/run/netns")
CGROUP_MOUNT = Path("/sys/fs/cgroup")
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
)  # fmt: skip

Log = Callable[[str], object]

# The account the lab's platform deploys as: root, or an admin account with sudo that `up`
# makes on every host (`kubi lab up --deploy-user NAME`, or this variable), to run every
# tier the way a platform deployed by an admin account runs.
DEPLOY_USER_ENV = "KUBI_LAB_DEPLOY_USER"
_DEPLOY_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}", re.ASCII)


class LabError(Exception):
    """A lab problem, worded for the user: what is wrong and what to do."""


@dataclass(frozen=True)
class LabHost:
    name: str
    role: str
    address: str


@dataclass
class LabState:
    hosts: list[LabHost]
    ssh_key: Path
    bridge: str
    gateway: str
    apt_proxy: str
    deploy_user: str = "root"


# --- planning and naming ---------------------------------------------------------------------


def plan_hosts(total: int = 5, control_planes: int = 1) -> list[LabHost]:
    """One host per role, `control_planes` control planes, the rest workers (at least one)."""
    if control_planes < 1:
        raise LabError(f"the lab needs at least one control plane, not {control_planes}.")
    minimum = 4 + control_planes
    if total < minimum:
        raise LabError(
            f"{total} hosts are too few for {control_planes} control plane(s): the lab needs "
            f"input, output, repository, the control planes and a worker, so use {minimum} or more."
        )
    capacity = SUBNET.num_addresses - 1 - FIRST_HOST_OCTET
    if total > capacity:
        raise LabError(f"{total} hosts do not fit in {SUBNET}; use {capacity} or fewer.")
    roles = [("input", "input"), ("output", "output"), ("repository", "repository")]
    roles += [(f"cp{i}", "control_plane") for i in range(1, control_planes + 1)]
    roles += [(f"worker{i}", "workers") for i in range(1, total - len(roles) + 1)]
    return [
        LabHost(HOST_PREFIX + short, role, host_address(index))
        for index, (short, role) in enumerate(roles)
    ]


def host_address(index: int) -> str:
    """Address of the index-th host (0 -> .11)."""
    return str(SUBNET.network_address + FIRST_HOST_OCTET + index)


def assign_hosts(kept: Iterable[LabHost], planned: Iterable[LabHost]) -> list[LabHost]:
    """Kept hosts keep their addresses; new planned hosts get their planned address when free,
    else the lowest free one (so growing the control planes never moves a running worker)."""
    hosts = list(kept)
    names = {h.name for h in hosts}
    used = {h.address for h in hosts}
    last = int(SUBNET.broadcast_address) - int(SUBNET.network_address) - FIRST_HOST_OCTET
    for host in planned:
        if host.name in names:
            continue
        address = host.address
        if address in used:
            free = [a for a in map(host_address, range(last)) if a not in used]
            if not free:
                raise LabError(f"no free address left in {SUBNET}; run `kubi lab down` first.")
            address = free[0]
        used.add(address)
        hosts.append(LabHost(host.name, host.role, address))
    return sorted(hosts, key=lambda h: ipaddress.ip_address(h.address))


def is_host_address(address: str) -> bool:
    """In the lab /24 and not the network, broadcast or the bridge's own (gateway) address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    reserved = (SUBNET.network_address, SUBNET.broadcast_address, ipaddress.ip_address(GATEWAY))
    return ip in SUBNET and ip not in reserved


def netns_name(host: str) -> str:
    return NETNS_PREFIX + host


def veth_name(host: str) -> str:
    """Bridge-side veth name; Linux caps interface names at 15 characters."""
    name = VETH_PREFIX + host.removeprefix(HOST_PREFIX)
    if len(name) > 15:
        raise LabError(f"lab host name {host!r} is too long for an interface name; shorten it.")
    return name


def nspawn_argv(host: LabHost, merged: Path) -> list[str]:
    """systemd-nspawn flags (docs/lab.md): --register=no --keep-unit because there may be no
    system bus, --private-network with our netns grants CAP_NET_ADMIN inside.

    A Kubernetes node's /var/lib/containerd is a folder of the machine's own file system
    beside its overlay: containerd's overlayfs snapshots cannot live on an overlay."""
    node = host.role in KUBERNETES_NODE_ROLES
    # A node's second reboot hung with a passive console (its systemd blocked writing to a
    # console nobody read); a pipe, into console.log, never blocks.
    console = "--console=pipe" if node else "--console=passive"
    argv = [
        "systemd-nspawn", "--boot", f"--directory={merged}", f"--machine={host.name}",
        f"--network-namespace-path={NETNS_DIR / netns_name(host.name)}", "--private-network",
        "--register=no", "--keep-unit", console, "--resolv-conf=off",
        "--link-journal=no", "--timezone=off",
    ]  # fmt: skip
    if node:
        argv += [
            f"--bind={merged.parent / 'containerd'}:/var/lib/containerd",
            # What a kubelet and runc need of a container host (docs/kubernetes-lab.md §3):
            # every capability, the kernel log (kubelet exits without it).
            "--capability=all", "--bind=/dev/kmsg",
        ]  # fmt: skip
    return argv


def launcher_env(host: LabHost) -> dict[str, str]:
    """The launcher's environment: runc needs syscalls nspawn's seccomp filter blocks, so a
    Kubernetes node boots without that filter (the lab only; a real node has none)."""
    env = {"PATH": PATH_ENV, "LC_ALL": "C"}
    if host.role in KUBERNETES_NODE_ROLES:
        env["SYSTEMD_SECCOMP"] = "0"
    return env


# /proc/sys values a kubelet insists on (it exits otherwise); /proc/sys is read-only in a
# host and shared with the machine, so each host sees a file of its own mounted over them.
KUBELET_PROC_SYS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


def node_boot_script() -> str:
    """The lab node's boot script (lab only; see rootfs.add_node_boot_unit)."""
    lines = [
        "#!/bin/sh",
        "# kubi lab only: a Kubernetes node that is a container. Runs at every boot.",
        "set -e",
        "# nspawn mounts the v1 cgroup controllers read-only; the kubelet and runc write them.",
        "for d in /sys/fs/cgroup/*/; do",
        '  d=${d%/}; [ "$(stat -f -c %T "$d")" = cgroupfs ] || continue',
        '  mount -o remount,bind,rw "$d" 2>/dev/null'
        ' || { mount --bind "$d" "$d" && mount -o remount,bind,rw "$d"; }',
        "done",
        "mkdir -p /run/kubi-lab /lib/modules  # kube-proxy's DaemonSet mounts /lib/modules",
    ]
    for key, value in KUBELET_PROC_SYS.items():
        copy = f"/run/kubi-lab/{key.replace('/', '.')}"
        lines += [
            f'if [ "$(cat /proc/sys/{key})" != {value} ]; then',
            f"  echo {value} > {copy} && mount --bind {copy} /proc/sys/{key}",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def node_boot_unit(script: str) -> str:
    return (
        "[Unit]\n"
        "Description=kubi lab: a Kubernetes node inside a container (lab only)\n"
        "DefaultDependencies=no\n"
        "After=local-fs.target\n"
        "Before=containerd.service kubelet.service sysinit.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={script}\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def launcher_script(nspawn: list[str]) -> str:
    """Shell loop run detached per host; its arguments are the host's cgroup dirs.

    It joins the host's own cgroups first (with --keep-unit nspawn nests payload/ and
    supervisor/ under its caller's cgroup, so hosts would collide otherwise), boots again on
    exit 133 (a reboot request), and starts each boot in a new time namespace whose boottime
    is 0, so /proc/uptime restarts like on a real reboot (pyinfra's reboot check waits for it).
    """
    return (
        # A cpuset cgroup takes no process until it has cpus and memory nodes: copy the
        # parent's down, to the lab's group and to the host's.
        'for cg in "$@"; do mkdir -p "$cg" || exit 90\n'
        '  if [ -f "$cg/cpuset.cpus" ]; then for d in "${cg%/*}" "$cg"; do\n'
        "    for f in cpuset.cpus cpuset.mems; do\n"
        '      [ -n "$(cat "$d/$f")" ] || cat "${d%/*}/$f" > "$d/$f" || exit 90; done; done; fi\n'
        '  echo $$ > "$cg/cgroup.procs" || exit 90; done\n'
        "while :; do\n"
        # The cgroups of the previous boot, depth first: a kubelet stalls on dead containers'.
        '  for cg in "$@"; do find "$cg" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null'
        "; done\n"
        "  up=$(cut -d. -f1 /proc/uptime)\n"
        f'  unshare --time --fork --boottime="-$up" -- {shlex.join(nspawn)}\n'
        "  rc=$?\n"
        '  echo "kubi-lab: systemd-nspawn exited with status $rc"\n'
        '  [ "$rc" -eq 133 ] || exit "$rc"\n'
        "done\n"
    )


def lab_dir_of(argv: list[str]) -> Path | None:
    """LAB_DIR of a systemd-nspawn process booting a lab host (of this or another LAB_DIR)."""
    if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
        return None
    flags = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    netns = flags.get("--network-namespace-path", "")
    directory = Path(flags.get("--directory", "/"))
    if not netns.startswith(f"{NETNS_DIR / NETNS_PREFIX}") or directory.name != "merged":
        return None
    return directory.parents[2]  # LAB_DIR/hosts/<name>/merged


def deploy_user(requested: str | None = None) -> str:
    """The deploy account asked for (argument, else $KUBI_LAB_DEPLOY_USER, else root)."""
    name = requested or os.environ.get(DEPLOY_USER_ENV) or "root"
    if not _DEPLOY_USER.fullmatch(name):
        raise LabError(
            f"deploy user {name[:40]!r}: not an account name; use lowercase letters, digits, "
            "'-' and '_' (at most 32), e.g. kubi-admin"
        )
    return name


def ssh_argv(
    address: str, *command: str, key: Path | None = None, user: str | None = None
) -> list[str]:
    """ssh command line that runs `command` as root on a lab host: as root itself, or as the
    lab's deploy account through `sudo -n` (`user` default: the running lab's). Re-created
    hosts get new host keys: none are kept."""
    if user is None:
        state = load_state()
        user = state.deploy_user if state else "root"
    if user != "root" and command:
        command = ("sudo", "-n", "sh", "-c", shlex.quote(" ".join(command)))
    return ["ssh", "-i", str(key or key_path()), *SSH_OPTIONS, f"{user}@{address}", *command]


# --- parsing what the machine reports ----------------------------------------------------------


def route_device(output: str) -> str | None:
    """Device of a unicast route in `ip route get` output; None for local/blackhole/errors."""
    words = output.split()
    if not words or words[0] in ("local", "blackhole", "unreachable", "prohibit", "broadcast"):
        return None
    for key, value in zip(words, words[1:], strict=False):
        if key == "dev":
            return value
    return None


def guard_conflicts(lines: Iterable[str], resolv_conf: str, guard: str = GUARD_RANGE) -> list[str]:
    """Addresses/networks the machine uses (route, address and resolver lines) that overlap the
    guard range; the lab's own bridge and blackhole lines are ignored (re-runs of `up`)."""
    network = ipaddress.ip_network(guard)
    resolvers = [line for line in resolv_conf.splitlines() if line.startswith("nameserver")]
    found: list[str] = []
    for line in [*lines, *resolvers]:
        words = line.split()
        if BRIDGE in words or words[:2] == ["blackhole", guard]:
            continue
        for word in words:
            try:
                used = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if used.version == 4 and used.overlaps(network) and word not in found:
                found.append(word)
    return found


def cgroup_roots(mountinfo: str) -> list[Path]:
    """Hierarchies where lab cgroups go: the unified one alone when /sys/fs/cgroup is cgroup2,
    else (hybrid/legacy) the name=systemd v1 hierarchy, every v1 controller's, and the
    cgroup2 one if mounted."""
    systemd_v1: list[Path] = []
    controllers: list[Path] = []
    unified: list[Path] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        point = Path(unescape(fields[4]))
        if point != CGROUP_MOUNT and CGROUP_MOUNT not in point.parents:
            continue
        if extra[0] == "cgroup2":
            unified.append(point)
        elif extra[0] == "cgroup" and "name=systemd" in extra[2].split(","):
            systemd_v1.append(point)
        elif extra[0] == "cgroup":
            # Every v1 controller too: otherwise two lab kubelets would share, and fight
            # over, the machine-wide kubepods cgroup of that controller.
            controllers.append(point)
    if CGROUP_MOUNT in unified:
        return [CGROUP_MOUNT]
    return systemd_v1 + controllers + unified


def missing_modules(
    wanted: dict[str, str], proc_modules: str, builtin: str, kernel_config: str, in_sysfs: set[str]
) -> list[str]:
    """Modules of `wanted` (name -> kernel config symbol) neither loaded nor built in.

    A built-in module has no /sys/module entry unless it has parameters, so the kernel's
    modules.builtin list and its config are the other places to look.
    """
    loaded = {line.split()[0] for line in proc_modules.splitlines() if line.strip()}
    built = {Path(line.strip()).name.removesuffix(".ko") for line in builtin.splitlines()}
    config = set(kernel_config.splitlines())
    return [
        name
        for name, symbol in wanted.items()
        if name not in loaded
        and name not in in_sysfs
        and name not in built
        and f"{symbol}=y" not in config
    ]


def raised_limits(current: dict[str, int], floors: dict[str, int]) -> dict[str, int]:
    """The sysctls below their floor, with the floor as new value (limits are only raised)."""
    return {key: floor for key, floor in floors.items() if current.get(key, 0) < floor}


def listening(ss_output: str) -> set[str]:
    """Local `addr:port` of listening TCP sockets from `ss -Hltn`."""
    found = set()
    for line in ss_output.splitlines():
        words = line.split()
        if len(words) >= 4:
            found.add(words[3])
    return found


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


# --- files under LAB_DIR and the state file ------------------------------------------------------


def base_dir() -> Path:
    return LAB_DIR / "base"


def base_marker() -> Path:
    return LAB_DIR / "base.complete"


def key_path() -> Path:
    return LAB_DIR / "id_ed25519"


def known_hosts_file() -> Path:
    """The host keys of the running lab hosts, written by `up` for strict checking."""
    return LAB_DIR / "known_hosts"


def state_path() -> Path:
    return LAB_DIR / "state.json"


def hosts_dir() -> Path:
    return LAB_DIR / "hosts"


def host_dir(name: str) -> Path:
    return hosts_dir() / name


def state_to_dict(state: LabState) -> dict:
    data = asdict(state)
    data["ssh_key"] = str(state.ssh_key)
    return data


def state_from_dict(data: dict) -> LabState:
    return LabState(
        hosts=[LabHost(**h) for h in data["hosts"]],
        ssh_key=Path(data["ssh_key"]),
        bridge=data["bridge"],
        gateway=data["gateway"],
        apt_proxy=data["apt_proxy"],
        deploy_user=data.get("deploy_user", "root"),
    )


def write_state(state: LabState) -> None:
    """Atomic: a killed `up` never leaves half a state file."""
    path = state_path()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state_to_dict(state), indent=2) + "\n")
    os.replace(tmp, path)


def load_state() -> LabState | None:
    """The lab as `up` left it; None when no lab was created."""
    path = state_path()
    if not path.exists():
        return None
    try:
        return state_from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{path} is unreadable ({exc}); run `kubi lab down` to reset the lab."
        ) from exc
