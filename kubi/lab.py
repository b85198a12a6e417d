"""Local lab: several real Debian hosts on this machine, booted with systemd-nspawn.

Why this shape (measured in docs/lab.md): every host boots real systemd from one shared
debootstrap base through its own overlayfs, in its own network namespace on the bridge
`kubibr0` (10.77.0.0/24, no NAT, no default route). Packages come through apt-cacher-ng on the
bridge address, which is also the shape of the production package proxy.

Choices a caller should know:
- `up` is additive: running hosts are kept (with their addresses), missing ones are started.
  A running host that is in the state but no longer requested is kept too; shrink the lab
  with `down` then `up`.
- Anything of the lab that is not a healthy running host (left by a killed session: mounts,
  netns, veths, cgroups, orphan processes, stale state) is removed by `up` and by `down`.
  Lab objects are found by their names (netns `kubi-*`, links `kv-*`, cgroup `kubi-lab`,
  mounts under LAB_DIR/hosts), so no state file is needed to clean up.
- `down` keeps the base rootfs cache and the SSH key, so the next `up` takes seconds; it leaves
  apt-cacher-ng running: it is a machine service listening on loopback (and on the bridge
  address, which goes away with the bridge), and `up` restarts it whenever it is not serving.
- Safety: before any connection to a lab address, `check_route` proves the packet goes out
  through the bridge; a blackhole route for 10.77.0.0/16 keeps lab traffic off the default
  route while the lab is up.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

LAB_DIR = Path(os.environ.get("KUBI_LAB_DIR", "/var/lib/kubi-lab"))
BRIDGE = "kubibr0"
SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = str(SUBNET.network_address + 1)
GUARD_RANGE = "10.77.0.0/16"
PROXY_PORT = 3142
APT_PROXY = f"http://{GATEWAY}:{PROXY_PORT}"

FIRST_HOST_OCTET = 11  # .2-.10 stay free for anything the lab may add on the bridge later
HOST_PREFIX = "lab-"
NETNS_PREFIX = "kubi-"
VETH_PREFIX = "kv-"
CGROUP_GROUP = "kubi-lab"
ROLES = ("input", "output", "repository", "control_plane", "workers")

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3",
    "iproute2", "iputils-ping", "curl", "ca-certificates", "procps", "sudo", "gnupg", "less",
    "netbase",
)  # fmt: skip
# Content of the base's completion marker: a change of recipe rebuilds the cached base.
BASE_RECIPE = f"kubi-lab base v2 {SUITE} " + ",".join(BASE_PACKAGES)
SYSTEM_PACKAGES = ("debootstrap", "systemd-container", "apt-cacher-ng")
# tool -> Debian package providing it; missing ones are installed by `up`.
TOOLS = {
    "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "ip": "iproute2", "ss": "iproute2", "unshare": "util-linux", "chroot": "coreutils",
}  # fmt: skip

ACNG_DIR = Path("/etc/apt-cacher-ng")
ACNG_SNIPPET = (
    "# Written by `kubi lab up`: serve the lab on loopback and the lab bridge only.\n"
    f"Port: {PROXY_PORT}\n"
    f"BindAddress: 127.0.0.1 {GATEWAY}\n"
    "# HTTPS repositories, asked for as http://HTTPS///host/path, go to port 443.\n"
    "AllowUserPorts: 80 443\n"
)
# The packaged default backend does not resolve on these machines ("503 Host not found").
ACNG_BACKEND = f"{MIRROR}/\n"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
NETNS_DIR = Path("/run/netns")
CGROUP_MOUNT = Path("/sys/fs/cgroup")
SYSFS_NET = Path("/sys/class/net")

SSH_TIMEOUT = 60.0  # seconds for every host to answer SSH after start
STOP_TIMEOUT = 15.0  # seconds for an orderly poweroff before processes are killed
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
)  # fmt: skip
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], object]


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


# --- pure parts: planning, naming, parsing ---------------------------------------------------


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


def _is_host_address(address: str) -> bool:
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
    )


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
    else (hybrid/legacy) the name=systemd v1 hierarchy plus the cgroup2 one if mounted."""
    systemd_v1: list[Path] = []
    unified: list[Path] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        point = Path(_unescape(fields[4]))
        if point != CGROUP_MOUNT and CGROUP_MOUNT not in point.parents:
            continue
        if extra[0] == "cgroup2":
            unified.append(point)
        elif extra[0] == "cgroup" and "name=systemd" in extra[2].split(","):
            systemd_v1.append(point)
    if CGROUP_MOUNT in unified:
        return [CGROUP_MOUNT]
    return systemd_v1 + unified


def listening(ss_output: str) -> set[str]:
    """Local `addr:port` of listening TCP sockets from `ss -Hltn`."""
    found = set()
    for line in ss_output.splitlines():
        words = line.split()
        if len(words) >= 4:
            found.add(words[3])
    return found


def nspawn_argv(host: LabHost, merged: Path) -> list[str]:
    """systemd-nspawn flags from docs/lab.md; --register=no --keep-unit because there is no
    system bus here, --private-network with our netns grants CAP_NET_ADMIN inside."""
    return [
        "systemd-nspawn", "--boot", f"--directory={merged}", f"--machine={host.name}",
        f"--network-namespace-path={NETNS_DIR / netns_name(host.name)}", "--private-network",
        "--register=no", "--keep-unit", "--console=passive", "--resolv-conf=off",
        "--link-journal=no", "--timezone=off",
    ]  # fmt: skip


def launcher_script(nspawn: list[str]) -> str:
    """Shell loop run detached per host; its arguments are the host's cgroup dirs.

    It joins the host's own cgroups first (with --keep-unit nspawn nests payload/ and
    supervisor/ under its caller's cgroup, so hosts would collide otherwise), boots again on
    exit 133 (a reboot request), and starts each boot in a new time namespace whose boottime
    is 0, so /proc/uptime restarts like on a real reboot (pyinfra's reboot check waits for it).
    """
    return (
        'for cg in "$@"; do mkdir -p "$cg" && echo $$ > "$cg/cgroup.procs" || exit 90; done\n'
        "while :; do\n"
        "  up=$(cut -d. -f1 /proc/uptime)\n"
        f'  unshare --time --fork --boottime="-$up" -- {shlex.join(nspawn)}\n'
        "  rc=$?\n"
        '  echo "kubi-lab: systemd-nspawn exited with status $rc"\n'
        '  [ "$rc" -eq 133 ] || exit "$rc"\n'
        "done\n"
    )


def ssh_argv(address: str, *command: str, key: Path | None = None) -> list[str]:
    """ssh command line for a lab host (re-created hosts get new host keys: none are kept)."""
    return ["ssh", "-i", str(key or _key_path()), *SSH_OPTIONS, f"root@{address}", *command]


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


# --- paths and small helpers -----------------------------------------------------------------


def _base_dir() -> Path:
    return LAB_DIR / "base"


def _base_marker() -> Path:
    return LAB_DIR / "base.complete"


def _key_path() -> Path:
    return LAB_DIR / "id_ed25519"


def known_hosts_file() -> Path:
    """The host keys of the running lab hosts, written by `up` for strict checking."""
    return LAB_DIR / "known_hosts"


def _write_known_hosts(hosts: list[LabHost]) -> None:
    lines = []
    for host in hosts:
        key = _host_dir(host.name) / "merged/etc/ssh/ssh_host_ed25519_key.pub"
        lines.append(f"{host.address} {' '.join(key.read_text().split()[:2])}")
    _write(known_hosts_file(), "\n".join(lines) + "\n")


def _state_path() -> Path:
    return LAB_DIR / "state.json"


def _hosts_dir() -> Path:
    return LAB_DIR / "hosts"


def _host_dir(name: str) -> Path:
    return _hosts_dir() / name


def _run(
    *argv: str | Path, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess:
    args = [str(a) for a in argv]
    env = {**os.environ, "PATH": PATH_ENV, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{shlex.join(args)}` did not finish within {timeout:.0f} s.") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"`{shlex.join(args)}` failed with status {proc.returncode}: {detail[0]}")
    return proc


def _write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write a file if its content differs; True when it changed."""
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)
    return True


def _write_state(state: LabState) -> None:
    """Atomic: a killed `up` never leaves half a state file."""
    path = _state_path()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state_to_dict(state), indent=2) + "\n")
    os.replace(tmp, path)


def load_state() -> LabState | None:
    """The lab as `up` left it; None when no lab was created."""
    path = _state_path()
    if not path.exists():
        return None
    try:
        return state_from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{path} is unreadable ({exc}); run `kubi lab down` to reset the lab."
        ) from exc


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, cgroups): run it as root.")


# --- checks before connecting ---------------------------------------------------------------


def _route_get(address: str) -> tuple[int, str]:
    proc = _run("ip", "route", "get", address, check=False, timeout=10)
    return proc.returncode, " ".join((proc.stdout or proc.stderr).split())


def check_route(address: str) -> None:
    """Refuse unless traffic to `address` leaves through the lab bridge.

    Without this, a packet to a 10.x address while the bridge is down would leave by the
    default route towards networks this machine must never probe.
    """
    if not _is_host_address(address):
        raise LabError(
            f"{address} is not a lab host address (inside {SUBNET}); refusing to connect."
        )
    code, output = _route_get(address)
    device = route_device(output) if code == 0 else None
    if device != BRIDGE:
        raise LabError(
            f"traffic to {address} would not go through the lab bridge {BRIDGE} "
            f"(`ip route get` says: {output or 'nothing'}); refusing to connect: run `kubi lab up`."
        )


def _tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_on(address: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a shell command on a lab host as root over SSH (route checked first)."""
    check_route(address)
    return subprocess.run(
        ssh_argv(address, command), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


# --- discovery of lab objects (by name) --------------------------------------------------------


def _cgroup_roots() -> list[Path]:
    roots = cgroup_roots(Path("/proc/self/mountinfo").read_text())
    if not roots:
        raise LabError("no cgroup hierarchy is mounted under /sys/fs/cgroup; mount cgroup2 there.")
    return roots


def _mounts_under(directory: Path) -> list[Path]:
    """Mount points under `directory`, deepest first (the unmount order)."""
    prefix = str(directory) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point.startswith(prefix):
            points.append(Path(point))
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


def _lab_netns() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def _lab_links() -> list[str]:
    if not SYSFS_NET.is_dir():
        return []
    return sorted(
        p.name for p in SYSFS_NET.iterdir() if p.name == BRIDGE or p.name.startswith(VETH_PREFIX)
    )


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _nspawn_machine(argv: list[str]) -> str | None:
    """Machine name of a systemd-nspawn process booting a lab host, else None."""
    if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
        return None
    directory = next((a.split("=", 1)[1] for a in argv if a.startswith("--directory=")), "")
    if not directory.startswith(str(_hosts_dir()) + "/"):
        return None
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--machine=")), None)


def _nspawn_pids() -> dict[int, str]:
    """pid -> machine name of every systemd-nspawn process running a lab host."""
    found = {}
    for pid in _all_pids():
        machine = _nspawn_machine(_cmdline(pid))
        if machine:
            found[pid] = machine
    return found


def _group_dirs() -> list[Path]:
    return [root / CGROUP_GROUP for root in _cgroup_roots()]


def _host_cgroups(name: str) -> list[Path]:
    return [group / name for group in _group_dirs()]


def _cgroup_pids(directory: Path) -> set[int]:
    pids: set[int] = set()
    if not directory.is_dir():
        return pids
    for path in directory.rglob("cgroup.procs"):
        try:
            pids.update(int(p) for p in path.read_text().split())
        except OSError:
            continue
    return pids


def _lab_pids() -> dict[int, str]:
    """Every process of the lab: those in lab cgroups and lab nspawn processes elsewhere."""
    pids = {
        pid: " ".join(_cmdline(pid))[:80] for group in _group_dirs() for pid in _cgroup_pids(group)
    }
    for pid, machine in _nspawn_pids().items():
        pids.setdefault(pid, f"systemd-nspawn --machine={machine}")
    return pids


def _known_names() -> set[str]:
    """Host names that have anything of the lab left, found without the state file."""
    names = {p.name for p in _hosts_dir().iterdir()} if _hosts_dir().is_dir() else set()
    names |= {ns.removeprefix(NETNS_PREFIX) for ns in _lab_netns()}
    names |= set(_nspawn_pids().values())
    for group in _group_dirs():
        if group.is_dir():
            names |= {p.name for p in group.iterdir() if p.is_dir()}
    if PROPAGATE_DIR.is_dir():
        names |= {p.name for p in PROPAGATE_DIR.iterdir() if p.name.startswith(HOST_PREFIX)}
    try:
        state = load_state()
    except LabError:
        state = None
    names |= {h.name for h in state.hosts} if state else set()
    return names


def _guard_present() -> bool:
    routes = _run("ip", "-4", "route", "show", "type", "blackhole", timeout=10).stdout.split()
    return GUARD_RANGE in routes


def leftovers() -> list[str]:
    """Everything of the lab still present on this machine (empty after `down`)."""
    found = [f"mount {m}" for m in _mounts_under(_hosts_dir())]
    found += [f"netns {ns}" for ns in _lab_netns()]
    found += [f"link {link}" for link in _lab_links()]
    if _guard_present():
        found.append(f"route blackhole {GUARD_RANGE}")
    found += [f"cgroup {group}" for group in _group_dirs() if group.exists()]
    found += [f"process {pid} {cmd}" for pid, cmd in sorted(_lab_pids().items())]
    if PROPAGATE_DIR.is_dir():
        found += [f"dir {p}" for p in PROPAGATE_DIR.iterdir() if p.name.startswith(HOST_PREFIX)]
    found += [f"dir {p}" for p in (_hosts_dir(),) if p.exists()]
    found += [f"file {p}" for p in (_state_path(),) if p.exists()]
    return found


# --- teardown ------------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop_hosts(names: set[str], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM to nspawn is an orderly poweroff; what is left after `grace` is killed."""
    nspawn = [pid for pid, machine in _nspawn_pids().items() if machine in names]
    _signal(nspawn, signal.SIGTERM)
    _wait(lambda: not any(m in names for m in _nspawn_pids().values()), grace)
    cgroups = [cg for name in names for cg in _host_cgroups(name)]
    for cgroup in cgroups:
        kill = cgroup / "cgroup.kill"  # cgroup v2 kills the whole subtree at once
        if kill.exists():
            kill.write_text("1")
    stray = [pid for pid, m in _nspawn_pids().items() if m in names]
    _signal(stray + [p for cg in cgroups for p in _cgroup_pids(cg)], signal.SIGKILL)
    if not _wait(lambda: not any(_cgroup_pids(cg) for cg in cgroups), 10):
        raise LabError(
            f"processes of lab hosts {', '.join(sorted(names))} survive SIGKILL; "
            "check `ps` for processes stuck in D state and retry `kubi lab down`."
        )


def _remove_cgroup(directory: Path) -> None:
    """Depth-first rmdir: cgroup dirs go only once empty of children."""
    if not directory.is_dir():
        return
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        sub.rmdir()
    directory.rmdir()


def _remove_host(name: str) -> None:
    """Remove every trace of one (stopped) host: mounts, netns, veth, cgroups, files."""
    for point in _mounts_under(_host_dir(name)):
        if _run("umount", point, check=False).returncode != 0:
            _run("umount", "-l", point)
    if _mounts_under(_host_dir(name)):  # never let rmtree below walk into the shared base
        raise LabError(f"{_host_dir(name)} still has mounts; unmount them and run down again.")
    if (NETNS_DIR / netns_name(name)).exists():
        _run("ip", "netns", "del", netns_name(name))
    veth = VETH_PREFIX + name.removeprefix(HOST_PREFIX)
    if len(veth) <= 15 and (SYSFS_NET / veth).exists():  # usually gone with the netns already
        _run("ip", "link", "del", veth, check=False)
    for cgroup in _host_cgroups(name):
        _remove_cgroup(cgroup)
    shutil.rmtree(PROPAGATE_DIR / name, ignore_errors=True)
    shutil.rmtree(_host_dir(name), ignore_errors=True)


def _reap(keep: set[str]) -> int:
    """Remove all lab hosts not in `keep` and stray lab veths; returns how many were removed."""
    names = _known_names() - keep
    if names:
        _stop_hosts(names)
        for name in sorted(names):
            _remove_host(name)
    kept_links = {veth_name(name) for name in keep} | {BRIDGE}
    for link in _lab_links():
        if link not in kept_links:
            _run("ip", "link", "del", link, check=False)
    return len(names)


def down(log: Log = print) -> None:
    """Stop every lab host and remove all the lab put on this machine except the base cache,
    the SSH key and apt-cacher-ng. Safe to run any number of times, also after a crash."""
    _require_root()
    started = time.monotonic()
    count = _reap(set())
    if (SYSFS_NET / BRIDGE).exists():
        _run("ip", "link", "del", BRIDGE)
    if _guard_present():
        _run("ip", "route", "del", "blackhole", GUARD_RANGE)
    for group in _group_dirs():
        _remove_cgroup(group)
    _state_path().unlink(missing_ok=True)
    known_hosts_file().unlink(missing_ok=True)
    if _hosts_dir().exists():
        shutil.rmtree(_hosts_dir())
    log(f"lab: down in {time.monotonic() - started:.1f} s ({count} hosts removed)")


# --- bring-up pieces -----------------------------------------------------------------------------


def _ensure_system(log: Log) -> None:
    """Debian-family host with the tools the lab drives; installs missing packages."""
    if not Path("/etc/debian_version").exists():
        raise LabError("the lab needs a Debian-family machine (no /etc/debian_version here).")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool, path=PATH_ENV)})
    if not missing:
        return
    packages = sorted(set(missing) | set(SYSTEM_PACKAGES))
    log(f"lab: installing {' '.join(packages)}")
    if _run("apt-get", "install", "-y", *packages, check=False, timeout=900).returncode != 0:
        _run("apt-get", "update", timeout=600)
        _run("apt-get", "install", "-y", *packages, timeout=900)


def _ensure_key() -> Path:
    key = _key_path()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        key.with_name(key.name + ".pub").unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubi-lab", "-f", key)
    key.chmod(0o600)
    public = key.with_name(key.name + ".pub")
    if not public.exists():
        public.write_text(_run("ssh-keygen", "-y", "-f", key).stdout)
    return key


def _ensure_guard() -> None:
    """Blackhole the lab's /16 so lab traffic never takes the default route — unless the machine
    already uses something in that range (its resolver is a 10.x address here)."""
    lines = _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    lines += _run("ip", "-4", "-o", "addr", "show").stdout.splitlines()
    resolv = Path("/etc/resolv.conf")
    conflicts = guard_conflicts(lines, resolv.read_text() if resolv.exists() else "")
    if conflicts:
        raise LabError(
            f"this machine already uses {', '.join(conflicts)} inside {GUARD_RANGE}, so the lab "
            "cannot take that range safely; free it or change kubi.lab.SUBNET and GUARD_RANGE."
        )
    if not _guard_present():
        _run("ip", "route", "add", "blackhole", GUARD_RANGE)


def _ensure_bridge() -> None:
    if not (SYSFS_NET / BRIDGE).exists():
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _proxy_serving() -> bool:
    sockets = listening(_run("ss", "-Hltn").stdout)
    wanted = {f"127.0.0.1:{PROXY_PORT}", f"{GATEWAY}:{PROXY_PORT}"}
    return wanted <= sockets and f"0.0.0.0:{PROXY_PORT}" not in sockets


def _restart_proxy() -> None:
    """systemd when it is PID 1, else the init script (which drops root to apt-cacher-ng)."""
    if Path("/run/systemd/system").is_dir():
        argv = ["systemctl", "restart", "apt-cacher-ng"]
    else:
        argv = ["/etc/init.d/apt-cacher-ng", "restart"]
    # The daemon must not hold our pipes open, and must not belong to the caller's session.
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, timeout=60, env={**os.environ, "PATH": PATH_ENV},
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed; see /var/log/apt-cacher-ng/ and retry.")


def _ensure_proxy(log: Log) -> None:
    changed = _write(ACNG_DIR / "zz_kubi_lab.conf", ACNG_SNIPPET)
    changed |= _write(ACNG_DIR / "backends_debian", ACNG_BACKEND)
    if changed or not _proxy_serving():
        _restart_proxy()
        if not _wait(_proxy_serving, 15, 0.2):
            raise LabError(
                f"apt-cacher-ng does not listen on 127.0.0.1 and {GATEWAY} port {PROXY_PORT}; "
                "see /var/log/apt-cacher-ng/apt-cacher.err."
            )
        log(f"lab: apt-cacher-ng serving on 127.0.0.1 and {GATEWAY} port {PROXY_PORT}")


def _base_complete() -> bool:
    marker = _base_marker()
    return marker.exists() and marker.read_text() == BASE_RECIPE and _base_dir().is_dir()


def _ensure_base(key: Path, log: Log) -> None:
    """Build the shared rootfs once through the proxy; a half-built one is started over."""
    if _base_complete():
        return
    base = _base_dir()
    _base_marker().unlink(missing_ok=True)
    shutil.rmtree(base, ignore_errors=True)
    started = time.monotonic()
    log(f"lab: building the base rootfs ({SUITE}, through apt-cacher-ng; about a minute)")
    source = f"http://127.0.0.1:{PROXY_PORT}/{MIRROR.removeprefix('http://')}"
    proc = _run(
        "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, base,
        source, check=False, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(
            f"debootstrap failed (see {base}/debootstrap/debootstrap.log); check that "
            f"apt-cacher-ng on 127.0.0.1:{PROXY_PORT} reaches {MIRROR}, then run `up` again."
        )
    _configure_base(base, key)
    _base_marker().write_text(BASE_RECIPE)
    log(f"lab: base rootfs built in {time.monotonic() - started:.1f} s")


def _configure_base(base: Path, key: Path) -> None:
    """Post-steps of docs/lab.md that make one base bootable as many distinct hosts."""
    etc = base / "etc"
    _authorize(base, key)
    _write(etc / "apt/sources.list", _sources_list())
    _write(
        etc / "apt/apt.conf.d/01kubi-lab-proxy",
        f'Acquire::http::Proxy "{APT_PROXY}";\nAcquire::Check-Valid-Until "false";\n'
        # No source cache: it would be re-written (39 MiB) into every host's upper layer.
        'Dir::Cache::srcpkgcache "";\n',
    )
    # Hosts have no DNS and no route out; the gateway answers port 53 with a refusal at once.
    # Not 127.0.0.1: CoreDNS forwarding to a loopback resolver detects a loop and stops.
    _write(etc / "resolv.conf", f"# lab hosts have no DNS\nnameserver {GATEWAY}\n")
    _write(etc / "hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    _write(etc / "machine-id", "")  # empty: systemd makes a fresh id per host at boot
    dbus_id = base / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for host_key in (etc / "ssh").glob("ssh_host_*"):
        host_key.unlink()  # per-host keys are made at host creation
    getty = etc / "systemd/system/console-getty.service"
    getty.unlink(missing_ok=True)
    getty.symlink_to("/dev/null")
    _write(etc / "systemd/journald.conf.d/kubi-lab.conf", "[Journal]\nStorage=volatile\n")
    _write(etc / "ssh/sshd_config.d/kubi-lab.conf", "UseDNS no\n")
    # Clean first: `update` then rebuilds pkgcache.bin in the base, not in every host's upper.
    _run("chroot", base, "apt-get", "clean")
    proxy = f"Acquire::http::Proxy=http://127.0.0.1:{PROXY_PORT}"  # no bridge needed while building
    _run("chroot", base, "apt-get", "-o", proxy, "update", timeout=600)


def _sources_list() -> str:
    return (
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )


def _authorize(root: Path, key: Path) -> None:
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    _write(ssh_dir / "authorized_keys", key.with_name(key.name + ".pub").read_text(), 0o600)


def _prepare_rootfs(host: LabHost, key: Path) -> None:
    """Overlay over the base plus what makes this host itself: name, address, host keys."""
    directory = _host_dir(host.name)
    upper, work, merged = (directory / d for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={_base_dir()},upperdir={upper},workdir={work}"
    _run("mount", "-t", "overlay", "overlay", "-o", options, merged)
    etc = merged / "etc"
    _write(etc / "hostname", f"{host.name}\n")
    _write(etc / "hosts", (_base_dir() / "etc/hosts").read_text() + f"{host.address} {host.name}\n")
    _authorize(merged, key)  # also right when the key was re-made after the base was built
    _run("ssh-keygen", "-A", "-f", merged)


def _create_netns(host: LabHost) -> None:
    """Namespace with eth0 on the bridge and only the lab /24: no default route, no way out."""
    ns, veth = netns_name(host.name), veth_name(host.name)
    _run("ip", "netns", "add", ns)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _run("ip", "link", "set", veth, "master", BRIDGE, "up")
    _run("ip", "-n", ns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    _run("ip", "-n", ns, "link", "set", "eth0", "up")


def _launch(host: LabHost) -> None:
    """Start the host's boot loop detached (own session, output to console.log), so it
    outlives the calling process and shell."""
    directory = _host_dir(host.name)
    cgroups = [str(cg) for cg in _host_cgroups(host.name)]
    script = launcher_script(nspawn_argv(host, directory / "merged"))
    with open(directory / "console.log", "ab") as console:
        subprocess.Popen(
            ["sh", "-c", script, "kubi-lab-launcher", *cgroups], stdin=subprocess.DEVNULL,
            stdout=console, stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
            env={"PATH": PATH_ENV, "LC_ALL": "C"},
        )  # fmt: skip


def _is_running(host: LabHost) -> bool:
    """nspawn is alive and its bridge link is still there (else the host is unreachable)."""
    return host.name in _nspawn_pids().values() and (SYSFS_NET / veth_name(host.name)).exists()


def _ssh_ready(host: LabHost, key: Path, deadline: float) -> bool:
    check_route(host.address)
    while time.monotonic() < deadline:
        if _tcp_open(host.address, 22):
            proc = subprocess.run(
                ssh_argv(host.address, "true", key=key), capture_output=True, timeout=15,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if proc.returncode == 0:
                return True
        time.sleep(0.2)
    return False


def _wait_ssh(hosts: list[LabHost], key: Path, timeout: float = SSH_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        ready = list(pool.map(lambda h: _ssh_ready(h, key, deadline), hosts))
    late = [h for h, ok in zip(hosts, ready, strict=True) if not ok]
    if late:
        h = late[0]
        raise LabError(
            f"lab host {h.name} ({h.address}) did not answer SSH within {timeout:.0f} s"
            + (f" (nor did {len(late) - 1} more)" if len(late) > 1 else "")
            + f"; see its boot log {_host_dir(h.name) / 'console.log'}."
        )


def _previous_hosts(log: Log) -> list[LabHost]:
    try:
        state = load_state()
    except LabError as exc:
        log(f"lab: ignoring the old state: {exc}")
        return []
    return state.hosts if state else []


def up(total: int = 5, control_planes: int = 1, log: Log = print) -> LabState:
    """Bring the lab up (idempotent): every requested host booted and answering SSH."""
    planned = plan_hosts(total, control_planes)
    _require_root()
    started = time.monotonic()
    _ensure_system(log)
    _cgroup_roots()
    key = _ensure_key()
    kept = [h for h in _previous_hosts(log) if _is_running(h)] if _base_complete() else []
    if removed := _reap({h.name for h in kept}):
        log(f"lab: cleaned up {removed} stopped or unknown host(s)")
    _ensure_guard()
    _ensure_bridge()
    _ensure_proxy(log)
    _ensure_base(key, log)
    hosts = assign_hosts(kept, planned)
    new = [h for h in hosts if h not in kept]
    state = LabState(hosts, key, BRIDGE, GATEWAY, APT_PROXY)
    _write_state(state)
    for host in kept:  # the bridge may have been re-created under running hosts
        _run("ip", "link", "set", veth_name(host.name), "master", BRIDGE, "up")
    if new:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda h: _prepare_rootfs(h, key), new))
        for host in new:
            _create_netns(host)
            _launch(host)
    _wait_ssh(hosts, key)
    _write_known_hosts(hosts)
    log(
        f"lab: {len(hosts)} hosts up in {time.monotonic() - started:.1f} s "
        f"({len(new)} started, {len(kept)} kept)"
    )
    return state


def status() -> list[dict]:
    """Per host of the state: name, role, address, running, ssh (TCP 22 answers)."""
    state = load_state()
    if state is None:
        return []
    rows = []
    for host in state.hosts:
        running = _is_running(host)
        ssh = False
        if running:
            try:
                check_route(host.address)
                ssh = _tcp_open(host.address, 22)
            except LabError:
                ssh = False
        rows.append({**asdict(host), "running": running, "ssh": ssh})
    return rows


# --- the lab as a platform -------------------------------------------------------------------

# People of the lab platform, one per role, so the bastion can be tested for real.
LAB_PEOPLE = (("lab-ops", "ops"), ("lab-dev", "dev"))


def person_key(name: str) -> Path:
    """Private key of a lab person (generated once, 0600); the public half goes in the config."""
    path = LAB_DIR / "people" / name / "id_ed25519"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@kubi-lab", "-f", path)
    return path


REACHABILITY_TTL = 600.0  # seconds a reachability verdict is reused by later runs


def _fetch_status(url: str, timeout: float) -> int | None:
    """HTTP status of a GET through the machine's package proxy (None: no answer at all)."""
    import urllib.error
    import urllib.request

    from kubi.graylog import through_proxy

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": APT_PROXY}))
    try:
        with opener.open(through_proxy(url, APT_PROXY), timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def reachable(urls: list[str], timeout: float = 5.0) -> dict[str, bool]:
    """Whether this machine can fetch each URL, asked through its own package proxy.

    The proxy is the lab hosts' only way out, so this is exactly what they can reach. An
    upstream answer (even 404) counts; the proxy's own 5xx (name, connection or TLS
    failure upstream) does not. Verdicts are reused for REACHABILITY_TTL seconds.
    """
    cache = LAB_DIR / "reachability.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    now = time.time()
    result = {}
    for url in urls:
        entry = known.get(url)
        if entry is None or now - entry["at"] > REACHABILITY_TTL:
            status = _fetch_status(url, timeout)
            entry = {"at": now, "ok": status is not None and status < 500}
            known[url] = entry
        result[url] = entry["ok"]
    with contextlib.suppress(OSError):
        _write(cache, json.dumps(known))
    return result


def _log_stack_setting(description: dict, log: Log) -> dict:
    """graylog.install for the lab: on only when the log stack's repositories answer."""
    from kubi.config import validate
    from kubi.graylog import upstream_repositories

    repositories = upstream_repositories(validate(description, source="lab"))
    verdicts = reachable([url for _, url in repositories])
    missing = [name for name, url in repositories if not verdicts[url]]
    if missing:
        log(
            f"lab: notice: the log stack's repositories are not reachable from this machine "
            f"({', '.join(missing)}): Graylog is left out (graylog.install=false)"
        )
    return {"install": not missing}


def _to_stderr(message: str) -> None:
    # stderr: pyinfra's own log stream (stdout may carry its --json output)
    print(message, file=sys.stderr)


def platform_description(state: LabState, log: Log = _to_stderr) -> dict:
    """The platform description of a running lab, for `kubi.inventory.declare`.

    Every address is first checked to route through the lab bridge (the safety rule).
    """
    groups: dict[str, list] = {}
    for host in state.hosts:
        check_route(host.address)
        groups.setdefault(host.role, []).append((host.name, {"address": host.address}))
    people = [
        {"name": name, "role": role, "keys": [person_key(name).with_suffix(".pub").read_text()]}
        for name, role in LAB_PEOPLE
    ]
    description = {
        "name": "lab",
        "groups": groups,
        "domain": "lab.kubi.internal",
        "apt_proxy": state.apt_proxy,
        "secrets_dir": str(LAB_DIR / "secrets"),
        "ssh": {
            "user": "root",
            "key": str(state.ssh_key),
            # Each lab host has its own host key; `up` records them all.
            "strict_host_key_checking": "yes",
            "known_hosts_file": str(known_hosts_file()),
        },
        "network": {"host_cidrs": [str(SUBNET)]},
        "users": people,
        # Prove the offline-install path: hosts install through the repository host, whose
        # cache goes through the machine's proxy (apt_proxy).
        "package_proxy": {"for_all_hosts": True},
    }
    description["graylog"] = _log_stack_setting(description, log)
    return description
