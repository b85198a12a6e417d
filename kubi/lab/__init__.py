"""Local lab: several real Debian hosts on this machine, booted with systemd-nspawn.

Every host boots real systemd from one shared debootstrap base through its own overlayfs, in
its own network namespace on the bridge `kubibr0` (10.77.0.0/24, no NAT, no default route).
Packages come through apt-cacher-ng on the bridge address, the shape of the production
package proxy. Before any connection to a lab address, `check_route` proves the packet
leaves through the bridge; a blackhole route for 10.77.0.0/16 keeps lab traffic off the
default route while the lab is up. docs/lab.md describes the lab for its users.

The engine knows no component and no platform config:
- `plan`: names, the host plan, the state file, parsing of what the machine reports (pure);
- `machine`: commands, the route check, kernel objects, packages, modules, bridge, proxy;
- `rootfs`: the shared base and the per-host overlays;
- `hosts`: the life cycle, `up` / `stop` / `start` / `down` / `status` / `leftovers`;
- `dns`: the DNS server on the bridge address, "no such name" at once to every question;
- `kubernetes`, `images`, `mirror`: what the lab makes from real Kubernetes binaries.
`platform` describes the running lab as a kubi platform; it alone imports the platform
config, and it is loaded on first use of its names here.
"""

from __future__ import annotations

from kubi.lab.hosts import down, is_running, is_stopped, leftovers, start, status, stop, up
from kubi.lab.machine import check_route, run_on
from kubi.lab.plan import (
    APT_PROXY,
    BRIDGE,
    GATEWAY,
    GUARD_RANGE,
    ROLES,
    SUBNET,
    LabError,
    LabHost,
    LabState,
    assign_hosts,
    cgroup_roots,
    guard_conflicts,
    known_hosts_file,
    launcher_script,
    listening,
    load_state,
    netns_name,
    nspawn_argv,
    plan_hosts,
    route_device,
    ssh_argv,
    veth_name,
)

_PLATFORM = ("platform_description", "person_key", "reachable", "LAB_PEOPLE")

__all__ = [
    "APT_PROXY", "BRIDGE", "GATEWAY", "GUARD_RANGE", "LAB_DIR", "ROLES", "SUBNET", "LabError",
    "LabHost", "LabState", "assign_hosts", "cgroup_roots", "check_route", "down",
    "guard_conflicts", "is_running", "is_stopped", "known_hosts_file", "launcher_script",
    "leftovers", "listening", "load_state", "netns_name", "nspawn_argv", "plan_hosts",
    "route_device", "run_on", "ssh_argv", "start", "status", "stop", "up", "veth_name",
    *_PLATFORM,
]  # fmt: skip


def __getattr__(name: str):
    """LAB_DIR as `plan` holds it now; the platform names import the platform config, so
    they load only when used (`kubi lab up/down/status` never needs it)."""
    if name == "LAB_DIR":
        from kubi.lab import plan

        return plan.LAB_DIR
    if name in _PLATFORM:
        from kubi.lab import platform

        return getattr(platform, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
