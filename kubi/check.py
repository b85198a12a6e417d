"""`kubi check`: the health of a platform's cluster, read over SSH, as an operator asks for it
before and after a change (KubeMarine's check_paas): every node reachable, its kubelet
running and Ready; each control plane's static pods running; etcd with one healthy member
per control plane; every certificate kubeadm and the kubelet use, with its expiry.

Each finding is OK, WARN or FAIL; the command exits 1 when one is FAIL. Reading only: it
changes nothing anywhere. Gathering (SSH, one round trip per node and two on the control
plane that answers for the cluster) is apart from judging (`judge`), which tests feed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kubi import kubeadm

Level = Literal["OK", "WARN", "FAIL"]
LEVELS: tuple[Level, ...] = ("OK", "WARN", "FAIL")
WARN_DAYS = 30  # a certificate this close to its end is a warning...
FAIL_DAYS = 7  # ...and this close, a failure: renew it (kubeadm certs renew)
CONTROL_PLANE_PODS = kubeadm.CONTROL_PLANE_PODS
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")

# One round trip per node: the kubelet, and the end date of each certificate it holds.
NODE_SCRIPT = r"""
echo "kubelet $(systemctl is-active kubelet)"
end() { openssl x509 -noout -enddate 2>/dev/null | cut -d= -f2; }
for f in /var/lib/kubelet/pki/kubelet-client-current.pem /etc/kubernetes/pki/*.crt \
    /etc/kubernetes/pki/etcd/*.crt; do
  [ -f "$f" ] && echo "cert $f $(end < "$f")"
done
for f in KUBECONFIGS; do
  c=$(sed -n 's/^ *client-certificate-data: *//p' "/etc/kubernetes/$f" 2>/dev/null)
  [ -n "$c" ] && echo "cert /etc/kubernetes/$f $(echo "$c" | base64 -d | end)"
done
if [ -f /etc/kubernetes/manifests/etcd.yaml ]; then
  echo "etcd_health $(curl -sS --max-time 5 ETCD_CLIENT https://127.0.0.1:2379/health 2>&1 \
    | tr -d '\n')"
fi
true
""".replace("KUBECONFIGS", " ".join(KUBECONFIGS)).replace("ETCD_CLIENT", kubeadm.ETCD_CLIENT)

KUBECTL = f"{kubeadm.ADMIN_KUBECTL} --request-timeout=10s"
CLUSTER_COMMANDS = {
    "nodes": f"{KUBECTL} get nodes -o json",
    "pods": f"{KUBECTL} -n kube-system get pods -l tier=control-plane -o json",
    "etcd_members": (
        f"curl -sS --max-time 5 {kubeadm.ETCD_CLIENT} -X POST -d '{{}}' {kubeadm.ETCD_MEMBERS}/list"
    ),
}


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str  # a host, or "cluster" / "etcd"
    message: str


@dataclass
class NodeReport:
    """What one node said (or why it could not)."""

    name: str
    control_plane: bool
    error: str | None = None  # SSH failed: why
    kubelet: str | None = None
    certs: dict[str, float] = field(default_factory=dict)  # path -> end, epoch seconds
    etcd_health: str | None = None


@dataclass
class ClusterReport:
    """What the control plane that answered said of the whole cluster."""

    answered_by: str | None = None
    errors: list[str] = field(default_factory=list)
    nodes: dict[str, Any] | None = None
    pods: dict[str, Any] | None = None
    etcd_members: dict[str, Any] | None = None


def parse_node(name: str, control_plane: bool, output: str) -> NodeReport:
    report = NodeReport(name, control_plane)
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "kubelet":
            report.kubelet = rest.strip()
        elif kind == "cert":
            path, _, date = rest.partition(" ")
            try:
                end = datetime.strptime(date.strip(), "%b %d %H:%M:%S %Y %Z")
            except ValueError:
                continue
            report.certs[path] = end.replace(tzinfo=UTC).timestamp()
        elif kind == "etcd_health":
            report.etcd_health = rest.strip()
    return report


def _ready(node: dict) -> tuple[str, str]:
    for condition in node.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status", "Unknown"), condition.get("message", "")
    return "Unknown", "no Ready condition"


def _days(seconds: float) -> float:
    return seconds / 86400


def judge(
    nodes: list[NodeReport], cluster: ClusterReport, control_planes: list[str], now: float
) -> list[Finding]:
    """Every finding, from what was gathered."""
    found: list[Finding] = []
    for node in nodes:
        if node.error:
            found.append(Finding("FAIL", node.name, f"unreachable: {node.error}"))
            continue
        if node.kubelet != "active":
            found.append(Finding("FAIL", node.name, f"kubelet is {node.kubelet or 'missing'}"))
        found.extend(_cert_findings(node, now))
        if node.control_plane:
            healthy = '"health":"true"' in (node.etcd_health or "").replace(" ", "")
            found.append(
                Finding("OK", node.name, "etcd member healthy")
                if healthy
                else Finding(
                    "FAIL", node.name, f"etcd unhealthy: {node.etcd_health or 'no answer'}"
                )
            )
    if cluster.answered_by is None:
        why = "; ".join(cluster.errors) or "none of them answers over SSH"
        found.append(Finding("FAIL", "cluster", f"no control plane could read the cluster: {why}"))
        return found
    found.extend(_node_findings(nodes, cluster))
    found.extend(_pod_findings(cluster, control_planes))
    found.extend(_etcd_findings(cluster, control_planes))
    return found


def _cert_findings(node: NodeReport, now: float) -> Iterable[Finding]:
    if not node.certs:
        yield Finding("FAIL", node.name, "no certificate found: is it a node of the cluster?")
        return
    path, end = min(node.certs.items(), key=lambda item: item[1])
    days = _days(end - now)
    name = path.rsplit("/", 1)[-1]
    if days < 0:
        yield Finding("FAIL", node.name, f"certificate {path} expired {-days:.0f} days ago")
    elif days < FAIL_DAYS:
        yield Finding(
            "FAIL", node.name, f"certificate {path} expires in {days:.1f} days: renew now"
        )
    elif days < WARN_DAYS:
        yield Finding("WARN", node.name, f"certificate {path} expires in {days:.0f} days")
    else:
        yield Finding(
            "OK", node.name, f"{len(node.certs)} certificates, the first to expire {name} "
            f"in {days:.0f} days"
        )  # fmt: skip


def _node_findings(nodes: list[NodeReport], cluster: ClusterReport) -> Iterable[Finding]:
    items = {n["metadata"]["name"]: n for n in (cluster.nodes or {}).get("items", [])}
    for node in nodes:
        if node.name not in items:
            yield Finding("FAIL", node.name, "not a node of the cluster: run deploys/kubernetes.py")
            continue
        status, message = _ready(items[node.name])
        if status == "True":
            yield Finding("OK", node.name, "Ready")
        else:
            yield Finding("FAIL", node.name, f"not Ready ({status}): {message}")
    extra = sorted(set(items) - {n.name for n in nodes})
    if extra:
        yield Finding("WARN", "cluster", f"nodes not in the inventory: {', '.join(extra)}")


def _pod_findings(cluster: ClusterReport, control_planes: list[str]) -> Iterable[Finding]:
    pods = {p["metadata"]["name"]: p for p in (cluster.pods or {}).get("items", [])}
    for cp in control_planes:
        bad = []
        for part in CONTROL_PLANE_PODS:
            pod = pods.get(f"{part}-{cp}")
            if pod is None:
                bad.append(f"{part} missing")
                continue
            status = pod.get("status", {})
            ready = all(c.get("ready") for c in status.get("containerStatuses", [{}]))
            if status.get("phase") != "Running" or not ready:
                bad.append(f"{part} {status.get('phase', '?')}{'' if ready else ', not ready'}")
        yield (
            Finding("FAIL", cp, "control plane pods: " + "; ".join(bad))
            if bad
            else Finding("OK", cp, "control plane pods running: " + ", ".join(CONTROL_PLANE_PODS))
        )


def _etcd_findings(cluster: ClusterReport, control_planes: list[str]) -> Iterable[Finding]:
    members = (cluster.etcd_members or {}).get("members")
    if not isinstance(members, list):
        yield Finding("FAIL", "etcd", "no member list from etcd")
        return
    names = {m.get("name", "") for m in members}
    missing = sorted(set(control_planes) - names)
    extra = sorted(names - set(control_planes))
    if missing:
        yield Finding("FAIL", "etcd", f"control planes not members: {', '.join(missing)}")
    if extra:
        yield Finding(
            "WARN", "etcd", f"members that are no control plane of the inventory: "
            f"{', '.join(n or '(unnamed: a join that never started)' for n in extra)}"
        )  # fmt: skip
    if not missing and not extra:
        yield Finding("OK", "etcd", f"{len(members)} members, one per control plane")


# --- gathering over SSH ----------------------------------------------------------------------


def gather(declared, connect: Callable[[str, dict], Any]) -> tuple[list[NodeReport], ClusterReport]:
    """Ask every Kubernetes node at once; then the first control plane that answers, for the
    cluster. `connect(name, host_data)` opens an `SshHost` (tests give their own)."""
    platform = declared.config
    nodes = [h for h in platform.hosts if h.is_kubernetes_node]

    def ask(host) -> NodeReport:
        control_plane = "control_plane" in host.roles
        try:
            with connect(host.name, declared.host_data(host.name)) as target:
                done = target.run(NODE_SCRIPT)
        except Exception as exc:  # noqa: BLE001  (an unreachable host is a finding)
            return NodeReport(host.name, control_plane, error=str(exc))
        return parse_node(host.name, control_plane, done.stdout.decode(errors="replace"))

    with ThreadPoolExecutor(max_workers=min(16, len(nodes) or 1)) as pool:
        reports = list(pool.map(ask, nodes))
    cluster = ClusterReport()
    for report in reports:
        if not report.control_plane or report.error:
            continue
        try:
            with connect(report.name, declared.host_data(report.name)) as target:
                answers = {}
                for key, command in CLUSTER_COMMANDS.items():
                    done = target.run(command)
                    if done.returncode != 0:
                        raise RuntimeError(
                            f"{command.split()[0]} failed: "
                            + done.stderr.decode(errors="replace").strip()[-300:]
                        )
                    answers[key] = json.loads(done.stdout)
        except Exception as exc:  # noqa: BLE001  (the next control plane may answer)
            cluster.errors.append(f"{report.name}: {exc}")
            continue
        cluster.answered_by = report.name
        cluster.nodes, cluster.pods = answers["nodes"], answers["pods"]
        cluster.etcd_members = answers["etcd_members"]
        break
    return reports, cluster


def render(findings: list[Finding]) -> str:
    width = max((len(f.subject) for f in findings), default=0)
    lines = [f"{f.level:<4}  {f.subject:<{width}}  {f.message}" for f in findings]
    counts = {level: sum(f.level == level for f in findings) for level in LEVELS}
    lines.append(
        "kubi check: " + ", ".join(f"{counts[level]} {level}" for level in reversed(LEVELS))
    )
    return "\n".join(lines)


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.level == "FAIL" for f in findings) else 0
