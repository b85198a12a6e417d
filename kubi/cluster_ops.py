"""Day-2 operations on a platform's cluster, run by the `kubi` command over SSH, one control
plane at a time so that the API stays up through them.

- `kubi certs renew`: kubeadm renews every certificate it made on a control plane (the
  CAs, the deployer's, stay), then the control plane's static pods restart to read them,
  and the next control plane goes only once this one's API server answers again.
- `kubi node remove`: drained, reset (kubeadm's files and kubi's of the cluster), its Node
  deleted, a control plane's etcd member removed; then the inventory drops it and a run of
  deploys/all.py makes the other nodes forget it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from kubi import kubeadm, pod_network


class ClusterOpError(Exception):
    """An operation stopped on a host; the message says which, why, and what is left."""


RENEW = (
    f"{kubeadm.wait_local_api()} && kubeadm certs renew all >/dev/null && "
    f"{kubeadm.restart_static_pods(kubeadm.CONTROL_PLANE_PODS)} && {kubeadm.wait_local_api()} && "
    f"{kubeadm.WAIT_CONTROLLERS}"
)


def renew_certificates(declared, connect: Callable[[str, dict], Any], log: Callable[[str], None]):
    """`kubeadm certs renew all` on each control plane in turn."""
    platform = declared.config
    for cp in platform.role("control_plane"):
        with connect(cp.name, declared.host_data(cp.name)) as target:
            done = target.run(RENEW)
        if done.returncode != 0:
            rest = [h.name for h in platform.role("control_plane")]
            left = rest[rest.index(cp.name) + 1 :]
            raise ClusterOpError(
                f"{cp.name}: {done.stderr.decode(errors='replace').strip()[-400:]}; "
                + (f"not renewed yet: {', '.join(left)}; " if left else "")
                + "run kubi check, then kubi certs renew again"
            )
        log(f"{cp.name}: certificates renewed, control plane restarted and answering")


# --- removing a node -------------------------------------------------------------------------

KUBECTL = f"{kubeadm.ADMIN_KUBECTL} --request-timeout=30s"
ETCD_API = f"curl -sS --max-time 10 {kubeadm.ETCD_CLIENT} {kubeadm.ETCD_MEMBERS}"
# What kubi put on a node for the cluster, beyond what kubeadm reset removes.
NODE_CLEANUP = (
    f"systemctl disable --now {pod_network.ROUTES_UNIT} 2>/dev/null; "
    f"rm -f /etc/systemd/system/{pod_network.ROUTES_UNIT} {pod_network.ROUTES_SCRIPT} "
    f"{pod_network.CONFLIST}; rm -rf {kubeadm.CONFIG_DIR}; "
    f"ip route flush proto {pod_network.ROUTES_PROTO}; ip link delete cni0 2>/dev/null; "
    "systemctl daemon-reload; true"
)


def drain_node(node: str, seconds: int) -> str:
    """kubectl that drains `node` (shell-quoted): every pod but the DaemonSets' goes, its
    emptyDir data with it, within `seconds`."""
    return (
        f"{KUBECTL} drain {node} --ignore-daemonsets --delete-emptydir-data --force "
        f"--timeout={seconds}s"
    )


def drain_command(name: str) -> str:
    """Drain `name` unless the cluster has no such node (already removed)."""
    node = shlex.quote(name)
    return f"if {KUBECTL} get node {node} >/dev/null 2>&1; then {drain_node(node, 180)}; fi"


def remove_node(
    declared, name: str, connect: Callable[[str, dict], Any], log: Callable[[str], None]
) -> None:
    """Drain `name`, reset it (kubeadm reset, and kubi's own files of the cluster), then
    delete its Node and, for a control plane, its etcd member if the reset could not."""
    platform = declared.config
    target_host = platform.host(name)
    if not target_host.is_kubernetes_node:
        raise ClusterOpError(f"{name} is no Kubernetes node of this platform")
    others = [h.name for h in platform.role("control_plane") if h.name != name]
    if not others:
        raise ClusterOpError(f"{name} is the only control plane: the cluster would be gone")

    def on_a_control_plane(command: str, what: str) -> bytes:
        problems = []
        for cp in others:
            try:
                with connect(cp, declared.host_data(cp)) as target:
                    done = target.run(command)
            except Exception as exc:  # noqa: BLE001  (the next control plane may answer)
                problems.append(f"{cp}: {exc}")
                continue
            if done.returncode == 0:
                return done.stdout
            problems.append(f"{cp}: {done.stderr.decode(errors='replace').strip()[-300:]}")
        raise ClusterOpError(f"{what} of {name} failed: " + "; ".join(problems))

    on_a_control_plane(drain_command(name), "the drain")
    log(f"{name}: drained")
    try:
        with connect(name, declared.host_data(name)) as target:
            done = target.run(f"{kubeadm.RESET} >/dev/null 2>&1; {NODE_CLEANUP}")
        log(
            f"{name}: kubeadm reset, the cluster's files removed"
            if done.returncode == 0
            else f"{name}: the reset failed ({done.stderr.decode(errors='replace').strip()[-200:]})"
        )
    except Exception as exc:  # noqa: BLE001  (a dead host is removed from the cluster all the same)
        log(f"{name}: unreachable, not reset ({exc}); the cluster forgets it all the same")
    on_a_control_plane(f"{KUBECTL} delete node {shlex.quote(name)} --ignore-not-found", "delete")
    if "control_plane" in target_host.roles:
        listed = json.loads(on_a_control_plane(f"{ETCD_API}/list -X POST -d '{{}}'", "etcd"))
        for member in listed.get("members", []):
            if member.get("name") == name:
                body = shlex.quote(json.dumps({"ID": member["ID"]}))
                on_a_control_plane(f"{ETCD_API}/remove -X POST -d {body}", "etcd member removal")
                log(f"{name}: etcd member removed")
    log(
        f"{name}: out of the cluster; take it out of the inventory and run deploys/all.py, "
        "so that the other nodes' api_proxy, firewall and routes forget it"
    )
