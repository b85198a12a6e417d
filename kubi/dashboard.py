"""The Kubernetes dashboard (component `dashboard`): Headlamp, behind the admin ingress,
reached through the cockpit as http://dashboard.localhost:<cockpit port>/.

The community Kubernetes Dashboard was archived in January 2026; Headlamp (a Kubernetes
SIG UI project) is its recommended successor. kubi renders its few objects itself rather
than from Headlamp's chart, whose defaults bind its ServiceAccount to cluster-admin:

- Headlamp runs in-cluster, and everyone signs in with their own token (a userspace
  member's from their kubeconfig; an operator's from `kubectl create token`), so the API
  decides what each person sees and does. Its ServiceAccount is bound to nothing: the
  dashboard itself has no rights, and reaching it grants none.
- its namespace enforces Pod Security `restricted`, which its pod meets (non-root, no
  capability, no escalation, RuntimeDefault seccomp);
- the Ingress answers `dashboard.<domain>` on the admin ingress, which the cockpit calls
  with that Host header; nothing outside the platform reaches the admin ingress.

The image is pinned by digest in kubi/config/addon_images.toml.
"""

from __future__ import annotations

from typing import Any

from kubi import policy
from kubi.config import Platform, matrices

COMPONENT = "dashboard"
NAMESPACE = "dashboard"
NAME = "headlamp"
PORT = 4466  # Headlamp's own HTTP port
LABELS = {"app.kubernetes.io/name": NAME}
KINDS = sorted(
    [
        ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Service"),
        ("apps/v1", "Deployment"), ("networking.k8s.io/v1", "Ingress"),
    ]
)  # fmt: skip


def in_use(platform: Platform) -> bool:
    return platform.enabled(COMPONENT) and platform.enabled("kubernetes")


def image() -> str:
    return matrices.addon_image(COMPONENT)


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, **extra}


def objects(platform: Platform) -> list[dict[str, Any]]:
    restricted = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}
    container = {
        "name": NAME,
        "image": image(),
        "args": [
            "-in-cluster",
            f"-in-cluster-context-name={platform.name}",
            "-plugins-dir=/headlamp/plugins",
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 100,  # the image's own user and group
            "runAsGroup": 101,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": restricted}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)},
        {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, labels=LABELS),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"serviceAccountName": NAME, "containers": [container]},
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, labels=LABELS),
            "spec": {"selector": LABELS,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _meta(NAME),
            "spec": {
                "ingressClassName": "admin",
                "rules": [{
                    "host": platform.ui_hostname(COMPONENT),
                    "http": {"paths": [{
                        "path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": NAME, "port": {"name": "http"}}},
                    }]},
                }],
            },
        },
    ]  # fmt: skip


# Headlamp needs no privilege (kubi/policy.py).
NEEDS: policy.Needs = {}
