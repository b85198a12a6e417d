"""The lab hosts' life cycle: `up`, `down`, `status` and `leftovers`.

- `up` is additive: running hosts are kept (with their addresses), missing ones are started.
  A running host that is in the state but no longer requested is kept too; shrink the lab
  with `down` then `up`.
- Anything of the lab that is not a healthy running host (left by a killed session: mounts,
  netns, veths, cgroups, orphan processes, stale state) is removed by `up` and by `down`.
  Lab objects are found by their names (netns `kubi-*`, links `kv-*`, cgroup `kubi-lab`,
  mounts under LAB_DIR/hosts), so no state file is needed to clean up.
- `stop HOST` powers a host off and keeps its disk: it leaves the network (its netns goes,
  as a switched-off machine's address stops answering); `start HOST`, and `up`, boot it
  again from the same disk, with the same address and host keys.
- `down` keeps the base rootfs and the SSH key, so the next `up` takes seconds, and leaves
  apt-cacher-ng running: a machine service on loopback (its bridge address goes away with
  the bridge); `up` restarts it whenever it is not serving.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from kubi.lab import dns, kubernetes, machine, plan, rootfs
from kubi.lab.plan import (
    APT_PROXY,
    BRIDGE,
    GATEWAY,
    GUARD_RANGE,
    HOST_PREFIX,
    NETNS_DIR,
    NETNS_PREFIX,
    SUBNET,
    VETH_PREFIX,
    LabError,
    LabHost,
    LabState,
    Log,
)

SSH_TIMEOUT = 60.0  # seconds for every host to answer SSH after start
STOP_TIMEOUT = 15.0  # seconds for an orderly poweroff before processes are killed
STOPPED = "stopped"  # marker in a host's folder: powered off by `stop`, disk kept


# --- finding and removing hosts ------------------------------------------------------------------


def _known_names() -> set[str]:
    """Host names that have anything of the lab left, found without the state file."""
    hosts_dir = plan.hosts_dir()
    names = {p.name for p in hosts_dir.iterdir()} if hosts_dir.is_dir() else set()
    names |= {ns.removeprefix(NETNS_PREFIX) for ns in machine.lab_netns()}
    names |= set(machine.nspawn_pids().values())
    for group in machine.group_dirs():
        if group.is_dir():
            names |= {p.name for p in group.iterdir() if p.is_dir()}
    if machine.PROPAGATE_DIR.is_dir():
        names |= {p.name for p in machine.PROPAGATE_DIR.iterdir() if p.name.startswith(HOST_PREFIX)}
    try:
        state = plan.load_state()
    except LabError:
        state = None
    names |= {h.name for h in state.hosts} if state else set()
    return names


def leftovers() -> list[str]:
    """Everything of the lab still present on this machine (empty after `down`)."""
    found = [f"mount {m}" for m in machine.mounts_under(plan.hosts_dir())]
    found += [f"netns {ns}" for ns in machine.lab_netns()]
    found += [f"link {link}" for link in machine.lab_links()]
    if machine.guard_present():
        found.append(f"route blackhole {GUARD_RANGE}")
    found += [f"cgroup {group}" for group in machine.group_dirs() if group.exists()]
    found += [f"process {pid} {cmd}" for pid, cmd in sorted(machine.lab_pids().items())]
    propagate = machine.PROPAGATE_DIR
    if propagate.is_dir():
        found += [f"dir {p}" for p in propagate.iterdir() if p.name.startswith(HOST_PREFIX)]
    found += [f"dir {p}" for p in (plan.hosts_dir(),) if p.exists()]
    found += [f"file {p}" for p in (plan.state_path(),) if p.exists()]
    return found


def _stop_hosts(names: set[str], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM to nspawn is an orderly poweroff; what is left after `grace` is killed."""
    nspawn = [pid for pid, name in machine.nspawn_pids().items() if name in names]
    machine.signal_all(nspawn, signal.SIGTERM)
    machine.wait(lambda: not any(m in names for m in machine.nspawn_pids().values()), grace)
    cgroups = [cg for name in names for cg in machine.host_cgroups(name)]
    for cgroup in cgroups:
        kill = cgroup / "cgroup.kill"  # cgroup v2 kills the whole subtree at once
        if kill.exists():
            kill.write_text("1")
    stray = [pid for pid, m in machine.nspawn_pids().items() if m in names]
    machine.signal_all(
        stray + [p for cg in cgroups for p in machine.cgroup_pids(cg)], signal.SIGKILL
    )
    if not machine.wait(lambda: not any(machine.cgroup_pids(cg) for cg in cgroups), 10):
        raise LabError(
            f"processes of lab hosts {', '.join(sorted(names))} survive SIGKILL; "
            "check `ps` for processes stuck in D state and retry `kubi lab down`."
        )


def _remove_host(name: str) -> None:
    """Remove every trace of one (stopped) host: mounts, netns, veth, cgroups, files."""
    directory = plan.host_dir(name)
    for point in machine.mounts_under(directory):
        if machine.run("umount", point, check=False).returncode != 0:
            machine.run("umount", "-l", point)
    if machine.mounts_under(directory):  # never let rmtree below walk into the shared base
        raise LabError(f"{directory} still has mounts; unmount them and run down again.")
    if (NETNS_DIR / plan.netns_name(name)).exists():
        machine.run("ip", "netns", "del", plan.netns_name(name))
    veth = VETH_PREFIX + name.removeprefix(HOST_PREFIX)
    if len(veth) <= 15 and (machine.SYSFS_NET / veth).exists():  # usually gone with the netns
        machine.run("ip", "link", "del", veth, check=False)
    for cgroup in machine.host_cgroups(name):
        machine.remove_cgroup(cgroup)
    shutil.rmtree(machine.PROPAGATE_DIR / name, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)


def _reap(keep: set[str]) -> int:
    """Remove all lab hosts not in `keep` and stray lab veths; returns how many were removed."""
    names = _known_names() - keep
    if names:
        _stop_hosts(names)
        for name in sorted(names):
            _remove_host(name)
    kept_links = {plan.veth_name(name) for name in keep} | {BRIDGE}
    for link in machine.lab_links():
        if link not in kept_links:
            machine.run("ip", "link", "del", link, check=False)
    return len(names)


def down(log: Log = print) -> None:
    """Stop every lab host, the lab's apt-cacher-ng, DNS and mirror servers, and remove all the
    lab put on this machine except the base, the SSH key, the proxy's cache and what was built
    from the Kubernetes binaries. Safe to run any number of
    times, also after a crash."""
    machine.require_root()
    machine.refuse_other_lab()
    started = time.monotonic()
    count = _reap(set())
    machine.stop_proxy()
    dns.stop()
    kubernetes.stop()
    if (machine.SYSFS_NET / BRIDGE).exists():
        machine.run("ip", "link", "del", BRIDGE)
    if machine.guard_present():
        machine.run("ip", "route", "del", "blackhole", GUARD_RANGE)
    for group in machine.group_dirs():
        machine.remove_cgroup(group)
    plan.state_path().unlink(missing_ok=True)
    plan.known_hosts_file().unlink(missing_ok=True)
    if plan.hosts_dir().exists():
        shutil.rmtree(plan.hosts_dir())
    log(f"lab: down in {time.monotonic() - started:.1f} s ({count} hosts removed)")


# --- starting hosts ------------------------------------------------------------------------------


def _create_netns(host: LabHost) -> None:
    """Namespace with eth0 on the bridge and only the lab /24: no default route, no way out."""
    ns, veth = plan.netns_name(host.name), plan.veth_name(host.name)
    machine.run("ip", "netns", "add", ns)  # creates /run/netns when missing
    machine.run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    machine.run("ip", "link", "set", veth, "master", BRIDGE, "up")
    machine.run("ip", "-n", ns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
    machine.run("ip", "-n", ns, "link", "set", "lo", "up")
    machine.run("ip", "-n", ns, "link", "set", "eth0", "up")


def _launch(host: LabHost) -> None:
    """Start the host's boot loop detached (own session, output to console.log), so it
    outlives the calling process and shell."""
    directory = plan.host_dir(host.name)
    cgroups = [str(cg) for cg in machine.host_cgroups(host.name)]
    script = plan.launcher_script(plan.nspawn_argv(host, directory / "merged"))
    with open(directory / "console.log", "ab") as console:
        subprocess.Popen(
            ["sh", "-c", script, "kubi-lab-launcher", *cgroups], stdin=subprocess.DEVNULL,
            stdout=console, stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
            env=plan.launcher_env(host),
        )  # fmt: skip


def is_stopped(host: LabHost) -> bool:
    """Powered off by `stop`, its disk kept for `start`."""
    return (plan.host_dir(host.name) / STOPPED).exists()


def _unplug(host: LabHost) -> None:
    """Take a host off the bridge: its netns goes, its veth with it."""
    if (NETNS_DIR / plan.netns_name(host.name)).exists():
        machine.run("ip", "netns", "del", plan.netns_name(host.name))
    veth = plan.veth_name(host.name)
    if (machine.SYSFS_NET / veth).exists():
        machine.run("ip", "link", "del", veth, check=False)


def _boot(host: LabHost) -> None:
    """Plug a host into the bridge and boot it from its disk (made by `prepare_rootfs`)."""
    _unplug(host)  # what a crash left
    rootfs.mount_overlay(host)
    _create_netns(host)
    _launch(host)
    (plan.host_dir(host.name) / STOPPED).unlink(missing_ok=True)


def _named(names: list[str]) -> tuple[LabState, list[LabHost]]:
    state = plan.load_state()
    known = {h.name: h for h in state.hosts} if state else {}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LabError(
            f"no lab host {unknown[0]!r}; the lab has "
            + (", ".join(known) if known else "no hosts (run `kubi lab up`)")
        )
    assert state is not None
    return state, [known[n] for n in dict.fromkeys(names)]


def stop(names: list[str], kill: bool = False, log: Log = print) -> None:
    """Power hosts off, keeping their disks: an orderly poweroff (killed after
    STOP_TIMEOUT), or with `kill` a power cut (every process killed at once, no connection
    closed: peers only notice that the host stopped answering). Then its network goes."""
    machine.require_root()
    machine.refuse_other_lab()
    _, hosts = _named(names)
    started = time.monotonic()
    for host in hosts:
        if kill:  # the network first, so that not even a reset leaves the host
            _unplug(host)
    _stop_hosts({h.name for h in hosts}, grace=0 if kill else STOP_TIMEOUT)
    for host in hosts:
        _unplug(host)
        (plan.host_dir(host.name) / STOPPED).touch()
    log(f"lab: {', '.join(h.name for h in hosts)} stopped in {time.monotonic() - started:.1f} s")


def start(names: list[str], log: Log = print) -> None:
    """Boot stopped hosts again from their disks; running ones are left as they are."""
    machine.require_root()
    machine.refuse_other_lab()
    state, hosts = _named(names)
    started = time.monotonic()
    machine.ensure_bridge()
    dns.start(log)
    booted = [h for h in hosts if not is_running(h)]
    for host in booted:
        if not (plan.host_dir(host.name) / "upper").is_dir():
            raise LabError(f"lab host {host.name} has no disk left; run `kubi lab up`.")
        _stop_hosts({host.name})  # a crashed host's leftovers, if any
        _boot(host)
    _wait_ssh(hosts, state.ssh_key)
    log(f"lab: {len(booted)} host(s) started in {time.monotonic() - started:.1f} s")


def is_running(host: LabHost) -> bool:
    """nspawn is alive and its bridge link is still there (else the host is unreachable)."""
    return (
        host.name in machine.nspawn_pids().values()
        and (machine.SYSFS_NET / plan.veth_name(host.name)).exists()
    )


def _ssh_ready(host: LabHost, key: Path, deadline: float) -> bool:
    machine.check_route(host.address)
    while time.monotonic() < deadline:
        if machine.tcp_open(host.address, 22):
            proc = subprocess.run(
                plan.ssh_argv(host.address, "true", key=key), capture_output=True, timeout=15,
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
            + f"; see its boot log {plan.host_dir(h.name) / 'console.log'}."
        )


def _write_known_hosts(hosts: list[LabHost]) -> None:
    lines = []
    for host in hosts:
        key = plan.host_dir(host.name) / "merged/etc/ssh/ssh_host_ed25519_key.pub"
        lines.append(f"{host.address} {' '.join(key.read_text().split()[:2])}")
    machine.write(plan.known_hosts_file(), "\n".join(lines) + "\n")


def _previous_hosts(log: Log) -> list[LabHost]:
    try:
        state = plan.load_state()
    except LabError as exc:
        log(f"lab: ignoring the old state: {exc}")
        return []
    return state.hosts if state else []


def _check_lab_dir() -> None:
    """overlayfs options are comma- and colon-separated: LAB_DIR must not contain either."""
    if any(c in str(plan.LAB_DIR) for c in ",: \t\n"):
        raise LabError(
            f"the lab folder {plan.LAB_DIR} contains a comma, colon or space, which overlayfs "
            "cannot take; set KUBI_LAB_DIR to a plain path."
        )


def up(
    total: int = 5, control_planes: int = 1, deploy_user: str | None = None, log: Log = print
) -> LabState:
    """Bring the lab up (idempotent): every requested host booted and answering SSH as the
    deploy account (`plan.deploy_user`)."""
    planned = plan.plan_hosts(total, control_planes)
    user = plan.deploy_user(deploy_user)
    machine.require_root()
    _check_lab_dir()
    machine.refuse_other_lab()
    started = time.monotonic()
    machine.ensure_system(log)
    machine.ensure_modules(log)
    machine.ensure_limits(log)
    machine.cgroup_roots()
    key = rootfs.ensure_key()
    kept = (
        [h for h in _previous_hosts(log) if is_running(h) or is_stopped(h)]
        if rootfs.base_complete()
        else []
    )
    previous = plan.load_state() if kept else None
    if previous is not None and previous.deploy_user != user:
        raise LabError(
            f"the running lab deploys as {previous.deploy_user}, not {user}: run "
            "`kubi lab down` first to change the deploy account."
        )
    if removed := _reap({h.name for h in kept}):
        log(f"lab: cleaned up {removed} stopped or unknown host(s)")
    machine.ensure_guard()
    machine.ensure_bridge()
    dns.start(log)
    machine.ensure_proxy(log)
    kubernetes.ensure(log)
    rootfs.ensure_base(key, log)
    hosts = plan.assign_hosts(kept, planned)
    new = [h for h in hosts if h not in kept]
    state = LabState(hosts, key, BRIDGE, GATEWAY, APT_PROXY, user)
    plan.write_state(state)
    stopped = [h for h in kept if is_stopped(h)]
    for host in kept:  # the bridge may have been re-created under running hosts
        if host not in stopped:
            machine.run("ip", "link", "set", plan.veth_name(host.name), "master", BRIDGE, "up")
    if new:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda h: rootfs.prepare_rootfs(h, key, user), new))
    for host in new + stopped:
        _boot(host)
    _wait_ssh(hosts, key)
    _write_known_hosts(hosts)
    log(
        f"lab: {len(hosts)} hosts up in {time.monotonic() - started:.1f} s "
        f"({len(new)} started, {len(kept) - len(stopped)} kept, {len(stopped)} restarted)"
        + ("" if user == "root" else f"; the platform deploys as {user}, with sudo")
    )
    return state


def status() -> list[dict]:
    """Per host of the state: name, role, address, running, ssh (TCP 22 answers)."""
    state = plan.load_state()
    if state is None:
        return []
    rows = []
    for host in state.hosts:
        running = is_running(host)
        ssh = False
        if running:
            try:
                machine.check_route(host.address)
                ssh = machine.tcp_open(host.address, 22)
            except LabError:
                ssh = False
        rows.append({**asdict(host), "running": running, "ssh": ssh})
    return rows
