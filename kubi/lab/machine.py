"""The machine side of the lab: commands, the route check, the kernel objects the lab finds by
name (netns, links, mounts, cgroups, processes), and what `up` prepares on the machine
(packages, kernel modules, the guard route, the bridge, apt-cacher-ng).

Nothing here assumes the machine was prepared before: each `ensure_*` creates or loads what
it needs, or says in one line what is missing and what to do (docs/lab.md, "What the lab
needs from the machine").
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kubi.lab import plan
from kubi.lab.plan import (
    BRIDGE,
    CGROUP_GROUP,
    GATEWAY,
    GUARD_RANGE,
    NETNS_DIR,
    NETNS_PREFIX,
    PATH_ENV,
    PROXY_PORT,
    SUBNET,
    VETH_PREFIX,
    LabError,
    Log,
)

SYSTEM_PACKAGES = ("debootstrap", "systemd-container", "apt-cacher-ng")
# tool -> Debian package providing it; missing ones are installed by `up`.
TOOLS = {
    "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "ip": "iproute2", "ss": "iproute2", "unshare": "util-linux", "chroot": "coreutils",
    "mount": "mount", "modprobe": "kmod",
    # the lab's Kubernetes packages and images (kubi.lab.kubernetes, kubi.lab.images)
    "dpkg-deb": "dpkg", "apt-ftparchive": "apt-utils", "gpg": "gpg", "gpgconf": "gpgconf",
    "gpg-agent": "gpg-agent", "ldd": "libc-bin", "xtables-nft-multi": "iptables",
}  # fmt: skip
# Kernel modules, by name -> config symbol. The lab itself needs the first three; lab hosts
# share this kernel and cannot load modules, so the Kubernetes nodes' modules (deploys/seed.py,
# KUBERNETES_MODULES) are loaded here for them.
KERNEL_MODULES = {
    "bridge": "CONFIG_BRIDGE", "veth": "CONFIG_VETH", "overlay": "CONFIG_OVERLAY_FS",
    "br_netfilter": "CONFIG_BRIDGE_NETFILTER",
}  # fmt: skip

# Every systemd in a lab host takes about ten inotify instances from root's machine-wide
# budget (Debian's default: 128, so about a dozen hosts); kubelets take more.
SYSCTL_FLOORS = {"fs.inotify.max_user_instances": 1024, "fs.inotify.max_user_watches": 524288}

ACNG_DIR = Path("/etc/apt-cacher-ng")  # the package's configuration, copied for the lab's own
# What earlier labs wrote into the machine's own apt-cacher-ng configuration.
OLD_SNIPPET = ACNG_DIR / "zz_kubi_lab.conf"
ACNG_USER = "apt-cacher-ng"
# The packaged default backend does not resolve on these machines ("503 Host not found").
ACNG_BACKEND = f"{plan.MIRROR}/\n"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
SYSFS_NET = Path("/sys/class/net")


# --- commands and files --------------------------------------------------------------------------


def run(*argv: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
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


def write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write a file if its content differs; True when it changed."""
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)
    return True


def wait(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, cgroups): run it as root.")


# --- checks before connecting (the network safety rule) ----------------------------------------


def route_get(address: str) -> tuple[int, str]:
    proc = run("ip", "route", "get", address, check=False, timeout=10)
    return proc.returncode, " ".join((proc.stdout or proc.stderr).split())


def check_route(address: str) -> None:
    """Refuse unless traffic to `address` leaves through the lab bridge.

    Without this, a packet to a 10.x address while the bridge is down would leave by the
    default route towards networks this machine must never probe.
    """
    if not plan.is_host_address(address):
        raise LabError(
            f"{address} is not a lab host address (inside {SUBNET}); refusing to connect."
        )
    code, output = route_get(address)
    device = plan.route_device(output) if code == 0 else None
    if device != BRIDGE:
        raise LabError(
            f"traffic to {address} would not go through the lab bridge {BRIDGE} "
            f"(`ip route get` says: {output or 'nothing'}); refusing to connect: run `kubi lab up`."
        )


def tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_on(address: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a shell command on a lab host as root over SSH (route checked first)."""
    check_route(address)
    return subprocess.run(
        plan.ssh_argv(address, command), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


# --- lab objects, found by name ------------------------------------------------------------------


def cgroup_roots() -> list[Path]:
    roots = plan.cgroup_roots(Path("/proc/self/mountinfo").read_text())
    if not roots:
        raise LabError(
            "no cgroup2 or name=systemd hierarchy is mounted under /sys/fs/cgroup; "
            "mount one (`mount -t cgroup2 none /sys/fs/cgroup`) and retry."
        )
    return roots


def mounts_under(directory: Path) -> list[Path]:
    """Mount points under `directory`, deepest first (the unmount order)."""
    prefix = str(directory) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = plan.unescape(line.split()[4])
        if point.startswith(prefix):
            points.append(Path(point))
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


def lab_netns() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def lab_links() -> list[str]:
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


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def nspawn_machine(argv: list[str]) -> str | None:
    """Machine name of a systemd-nspawn process booting a lab host, else None."""
    if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
        return None
    directory = next((a.split("=", 1)[1] for a in argv if a.startswith("--directory=")), "")
    if not directory.startswith(str(plan.hosts_dir()) + "/"):
        return None
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--machine=")), None)


def nspawn_pids() -> dict[int, str]:
    """pid -> machine name of every systemd-nspawn process running a lab host."""
    found = {}
    for pid in _pids():
        machine = nspawn_machine(_cmdline(pid))
        if machine:
            found[pid] = machine
    return found


def refuse_other_lab() -> None:
    """One lab per machine: the bridge, netns and cgroup names are shared by every LAB_DIR."""
    found = (plan.lab_dir_of(_cmdline(pid)) for pid in _pids())
    others = {folder for folder in found if folder is not None and folder != plan.LAB_DIR}
    if others:
        other = sorted(others)[0]
        raise LabError(
            f"a lab from another folder ({other}) is running on this machine; stop it first "
            f"with `KUBI_LAB_DIR={other} kubi lab down`."
        )


def group_dirs() -> list[Path]:
    return [root / CGROUP_GROUP for root in cgroup_roots()]


def host_cgroups(name: str) -> list[Path]:
    return [group / name for group in group_dirs()]


def cgroup_pids(directory: Path) -> set[int]:
    pids: set[int] = set()
    if not directory.is_dir():
        return pids
    for path in directory.rglob("cgroup.procs"):
        try:
            pids.update(int(p) for p in path.read_text().split())
        except OSError:
            continue
    return pids


def lab_pids() -> dict[int, str]:
    """Every process of the lab: those in lab cgroups and lab nspawn processes elsewhere."""
    pids = {
        pid: " ".join(_cmdline(pid))[:80] for group in group_dirs() for pid in cgroup_pids(group)
    }
    for pid, machine in nspawn_pids().items():
        pids.setdefault(pid, f"systemd-nspawn --machine={machine}")
    return pids


def guard_present() -> bool:
    routes = run("ip", "-4", "route", "show", "type", "blackhole", timeout=10).stdout.split()
    return GUARD_RANGE in routes


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def remove_cgroup(directory: Path) -> None:
    """Depth-first rmdir: cgroup dirs go only once empty of children."""
    if not directory.is_dir():
        return
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        sub.rmdir()
    directory.rmdir()


# --- what `up` prepares on the machine ------------------------------------------------------------


def ensure_system(log: Log) -> None:
    """Debian-family host with the tools the lab drives; installs missing packages."""
    if not Path("/etc/debian_version").exists():
        raise LabError("the lab needs a Debian-family machine (no /etc/debian_version here).")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool, path=PATH_ENV)})
    if not missing:
        return
    packages = sorted(set(missing) | set(SYSTEM_PACKAGES))
    log(f"lab: installing {' '.join(packages)}")
    if run("apt-get", "install", "-y", *packages, check=False, timeout=900).returncode != 0:
        run("apt-get", "update", timeout=600)
        run("apt-get", "install", "-y", *packages, timeout=900)


def _read(path: str, zipped: bool = False) -> str:
    try:
        if zipped:
            with gzip.open(path, "rt") as file:
                return file.read()
        return Path(path).read_text()
    except OSError:
        return ""


def ensure_modules(log: Log) -> None:
    """Load the kernel modules the lab and its hosts need, unless loaded or built in."""
    release = os.uname().release
    config = _read("/proc/config.gz", zipped=True) or _read(f"/boot/config-{release}")
    sysfs = {name for name in KERNEL_MODULES if Path("/sys/module", name).is_dir()}
    missing = plan.missing_modules(
        KERNEL_MODULES, _read("/proc/modules"), _read(f"/lib/modules/{release}/modules.builtin"),
        config, sysfs,
    )  # fmt: skip
    if not missing:
        return
    log(f"lab: loading kernel modules {' '.join(missing)}")
    proc = run("modprobe", "-a", *missing, check=False, timeout=60)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(
            f"kernel modules {', '.join(missing)} are not built into kernel {release} and "
            f"`modprobe` cannot load them ({detail[0]}); install the kernel's modules "
            "(linux-image-*) or use a kernel that has them."
        )


def ensure_limits(log: Log) -> None:
    """Raise the machine's limits that lab hosts share to SYSCTL_FLOORS; never lower one."""
    files = {key: Path("/proc/sys", *key.split(".")) for key in SYSCTL_FLOORS}
    current = {key: int(_read(str(path)).strip() or 0) for key, path in files.items()}
    for key, value in plan.raised_limits(current, SYSCTL_FLOORS).items():
        log(f"lab: raising {key} from {current[key]} to {value}")
        files[key].write_text(f"{value}\n")


def ensure_guard() -> None:
    """Blackhole the lab's /16 so lab traffic never takes the default route — unless the machine
    already uses something in that range (its resolver is a 10.x address here)."""
    lines = run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    lines += run("ip", "-4", "-o", "addr", "show").stdout.splitlines()
    resolv = Path("/etc/resolv.conf")
    conflicts = plan.guard_conflicts(lines, resolv.read_text() if resolv.exists() else "")
    if conflicts:
        raise LabError(
            f"this machine already uses {', '.join(conflicts)} inside {GUARD_RANGE}, so the lab "
            "cannot take that range safely; free it or change kubi.lab.plan.SUBNET and GUARD_RANGE."
        )
    if not guard_present():
        run("ip", "route", "add", "blackhole", GUARD_RANGE)


def ensure_bridge() -> None:
    if not (SYSFS_NET / BRIDGE).exists():
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")


def proxy_serving() -> bool:
    sockets = plan.listening(run("ss", "-Hltn").stdout)
    return {f"127.0.0.1:{PROXY_PORT}", f"{GATEWAY}:{PROXY_PORT}"} <= sockets


def _proxy_pid() -> int | None:
    """The lab proxy's pid, only if that process is our apt-cacher-ng (its pid file may be
    stale, and the number reused)."""
    try:
        pid = int((plan.PROXY_DIR / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    argv = _cmdline(pid)
    if argv and argv[0].endswith("apt-cacher-ng") and str(plan.PROXY_DIR / "conf") in argv:
        return pid
    return None


def stop_proxy() -> None:
    """Stop the lab's own apt-cacher-ng, and no other."""
    pid = _proxy_pid()
    if pid is not None:
        os.kill(pid, 15)
        wait(lambda: _proxy_pid() is None and not Path(f"/proc/{pid}").exists(), 10, 0.1)


def _proxy_config() -> str:
    d = plan.PROXY_DIR
    return (
        "# Written by `kubi lab up`: the lab's own apt-cacher-ng, on loopback and the lab\n"
        "# bridge only, with its own cache, log and pid file.\n"
        f"Port: {PROXY_PORT}\n"
        f"BindAddress: 127.0.0.1 {GATEWAY}\n"
        f"CacheDir: {plan.PROXY_CACHE}\n"
        f"LogDir: {d / 'log'}\n"
        f"PidFile: {d / 'pid'}\n"
        f"SocketPath: {d / 'socket'}\n"
        "# HTTPS repositories, asked for as http://HTTPS///host/path, go to port 443; the\n"
        "# lab's own mirror (Kubernetes packages) listens on its own port.\n"
        f"AllowUserPorts: 80 443 {plan.LAB_MIRROR_PORT}\n"
        "# pkgs.k8s.io's key (and the lab mirror's) is named Release.key: refused by default.\n"
        "VfilePatternEx: /Release\\.key$\n"
        "# The lab mirror is on this machine, and a new lab may build its packages again under\n"
        "# the same names: never cached (a cached copy would fail apt's hash check).\n"
        f"DontCache: {GATEWAY.replace('.', '[.]')}(:{plan.LAB_MIRROR_PORT})?/\n"
    )


def start_apt_cacher_ng(conf: Path, *settings: str) -> subprocess.CompletedProcess:
    """Start an apt-cacher-ng daemon from the configuration folder `conf` (with `Key=value`
    overrides), dropped to the package's own account, detached from the caller's session."""
    return subprocess.run(
        ["setpriv", f"--reuid={ACNG_USER}", f"--regid={ACNG_USER}", "--init-groups",
         "apt-cacher-ng", "-c", str(conf), "ForeGround=0", *settings],
        # The daemon must not hold our pipes open.
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, timeout=60, env={**os.environ, "PATH": PATH_ENV},
    )  # fmt: skip


def ensure_proxy(log: Log) -> None:
    """The lab's own apt-cacher-ng on loopback and the bridge address, started when it is
    not serving. The machine's own apt-cacher-ng, if any, is never touched."""
    OLD_SNIPPET.unlink(missing_ok=True)  # an earlier lab's change to the machine's service
    d = plan.PROXY_DIR
    conf = d / "conf"
    changed = False
    for source in ACNG_DIR.iterdir():  # the package's mappings and defaults
        if source.is_file() and source.name != OLD_SNIPPET.name:
            changed |= write(conf / source.name, source.read_text())
    changed |= write(conf / "backends_debian", ACNG_BACKEND)
    changed |= write(conf / "zz_kubi_lab.conf", _proxy_config())
    for folder in (d, d / "log", plan.PROXY_CACHE):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, ACNG_USER, ACNG_USER)
    # What an earlier lab cached of its mirror (before DontCache): packages since rebuilt.
    shutil.rmtree(plan.PROXY_CACHE / GATEWAY, ignore_errors=True)
    if changed:
        stop_proxy()
    if proxy_serving():
        return
    stop_proxy()
    if start_apt_cacher_ng(conf).returncode != 0 or not wait(proxy_serving, 15, 0.2):
        raise LabError(
            f"the lab's apt-cacher-ng does not listen on 127.0.0.1 and {GATEWAY} port "
            f"{PROXY_PORT} (is the port taken?); see {d / 'log'}/apt-cacher.err."
        )
    log(f"lab: apt-cacher-ng serving on 127.0.0.1 and {GATEWAY} port {PROXY_PORT}")
