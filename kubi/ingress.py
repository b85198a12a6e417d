"""The two ingress controllers (component `ingress`), rendered from the pinned upstream chart
of F5 NGINX Ingress Controller (kubi/config/upstream_charts.toml) and applied by kubi's
apply layer like every other object (kubi/apply.py), not as Helm releases.

- `admin-ingress`: IngressClass `admin`, plain HTTP on `ingress.admin_http_nodeport`. It
  serves the platform's own UIs (the dashboard, later monitoring). The firewall lets only
  the input host (the cockpit) and the output host reach that NodePort.
- `public-ingress`: IngressClass `public`, HTTP and HTTPS on `ingress.public_http_nodeport`
  and `public_https_nodeport`, which the firewall opens to `firewall.public_ingress_from`
  alone (your load balancer).

Each controller is a DaemonSet on the nodes the config chooses (`ingress.admin_nodes`,
`ingress.public_nodes`; default: every worker), in its own namespace (Pod Security
`baseline`), behind a NodePort Service with `externalTrafficPolicy: Local`: only those
nodes answer on the ports, and applications see the client's address.

Why this controller: the community ingress-nginx was retired in March 2026; F5's NGINX
Ingress Controller is maintained, Apache-2.0, and speaks the plain Ingress API (its own
custom resources are left off, so no CRD is installed, and two controllers coexist by
their class). Its telemetry reporting to F5 is off, and so are snippets (arbitrary NGINX
configuration from any Ingress author).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubi import helm, policy, upstream_charts
from kubi.config import Platform
from kubi.config.platform import Host

CHART = "nginx-ingress"
COMPONENT = "ingress"
IMAGE = "docker.io/nginx/nginx-ingress"  # the chart's short name, with its registry
# controller -> its IngressClass (the controller is its release's and namespace's name)
CLASSES = {"admin-ingress": "admin", "public-ingress": "public"}


def in_use(platform: Platform) -> bool:
    return platform.enabled(COMPONENT) and platform.enabled("kubernetes")


def check_nodes(platform: Platform) -> list[str]:
    """A problem per chosen ingress node that is not a Kubernetes node of the inventory."""
    nodes = {h.name for h in platform.hosts if h.is_kubernetes_node}
    problems = []
    for field in ("admin_nodes", "public_nodes"):
        chosen = getattr(platform.ingress, field)
        for name in chosen or ():
            if name not in nodes:
                problems.append(
                    f"field 'ingress.{field}': {name} is not a Kubernetes node of the "
                    f"inventory; the nodes are {', '.join(sorted(nodes)) or 'none'}"
                )
        if chosen == []:
            problems.append(f"field 'ingress.{field}': give at least one node, or leave it out")
    return problems


def values(platform: Platform, controller: str) -> dict[str, Any]:
    public = controller == "public-ingress"
    ports = platform.ingress
    nodes = platform.public_ingress_nodes if public else platform.admin_ingress_nodes
    return {
        "fullnameOverride": controller,  # its objects: admin-ingress, admin-ingress-controller
        "controller": {
            "kind": "daemonset",
            "image": {"repository": IMAGE},
            "ingressClass": {"name": CLASSES[controller], "create": True},
            "enableCustomResources": False,
            "enableSnippets": False,
            "telemetryReporting": {"enable": False},
            # the address is the load balancer's (public) or the cockpit's (admin), which
            # the controller cannot know
            "reportIngressStatus": {"enable": False},
            "affinity": _on(nodes),
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "service": {
                "type": "NodePort",
                "externalTrafficPolicy": "Local",
                "httpPort": {
                    "nodePort": (
                        ports.public_http_nodeport if public else ports.admin_http_nodeport
                    )
                },
                "httpsPort": (
                    {"enable": True, "nodePort": ports.public_https_nodeport}
                    if public
                    else {"enable": False}
                ),
            },  # fmt: skip
        },
        "prometheus": {"create": False},
    }


def _on(nodes: tuple[Host, ...]) -> dict[str, Any]:
    """An affinity to exactly these nodes (kubeadm names each node after its host)."""
    term = {"key": "kubernetes.io/hostname", "operator": "In", "values": [h.name for h in nodes]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [term]}]
            }
        }
    }


def namespace(name: str) -> dict[str, Any]:
    labels = {f"pod-security.kubernetes.io/{mode}": "baseline" for mode in ("enforce", "warn")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def render(platform: Platform, folder: Path) -> list[dict[str, Any]]:
    """Both controllers' objects for `platform`, from the pinned chart archive in `folder`."""
    archive = upstream_charts.checked_archive(CHART, folder)
    objects = []
    for controller in CLASSES:
        objects.append(namespace(controller))
        objects += helm.template(
            archive, values(platform, controller), controller, controller, crds=False
        )
    return objects


# The privileges of the controllers' pods (kubi/policy.py), checked against the render by
# tests/unit/test_manifests.py.
NEEDS: policy.Needs = {
    f"DaemonSet {controller}/{controller}-controller": {
        "nginx-ingress: capability NET_BIND_SERVICE": "NGINX listens on ports 80 and 443 "
        "as its own user (101), not root",
    }
    for controller in CLASSES
}
