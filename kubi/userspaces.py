"""Userspaces: each developer's or team's namespace (the source's "k8s-userspace").

For each userspace of `userspaces.spaces`, kubi renders:

- the Namespace, enforcing the Pod Security Standard `userspaces.pod_security` (baseline by
  default: no privileged pod, host namespace or host path, so a developer never reaches a
  node as root), and warning about what `restricted` would refuse;
- one ServiceAccount per member, named after the person, and its long-lived token (a Secret
  of type kubernetes.io/service-account-token, which kube-controller-manager fills): the
  API tells people apart in its audit log, and deleting the Secret revokes the token;
- the Role `developer` (the workloads, their configuration and their network objects,
  read-only quota, limits and events; never RBAC, so no one widens their own rights) and
  the RoleBinding that gives it to the members' ServiceAccounts, in that namespace only;
- a ResourceQuota (no NodePort or LoadBalancer Service: a userspace opens no port on the
  nodes) and a LimitRange whose defaults let a pod without requests and limits run.

Each member's kubeconfig (one context per userspace they belong to, the server being the
input host's local API stream) is written into their home on the input host by a process
running as them, never by root following a path they control (deploys/userspaces.py).
Removing a userspace from the config prunes its namespace, and everything in it: its
tokens stop working at once.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from kubi.config import Platform

COMPONENT = "userspaces"
ROLE = "developer"
KUBECONFIG = ".kube/config"  # in the member's home on the input host
# First line of every kubeconfig kubi writes: kubi rewrites or removes only its own files.
MARKER = "# Written by kubi (deploys/userspaces.py): it is rewritten at every run."
# Every kind this component renders, for the prune of what it no longer renders.
KINDS = sorted(
    [
        ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Secret"),
        ("v1", "ResourceQuota"), ("v1", "LimitRange"),
        ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ]
)  # fmt: skip
_ALL = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
_READ = ["get", "list", "watch"]
RULES = [
    {
        "apiGroups": [""],
        "resources": [
            "pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward", "services",
            "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts",
        ],
        "verbs": _ALL,
    },
    {"apiGroups": [""], "resources": ["events", "resourcequotas", "limitranges"], "verbs": _READ},
    {
        "apiGroups": ["apps"],
        "resources": [
            "deployments", "deployments/scale", "statefulsets", "statefulsets/scale",
            "replicasets", "daemonsets",
        ],
        "verbs": _ALL,
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _ALL},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _ALL},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _ALL},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses", "networkpolicies"],
        "verbs": _ALL,
    },
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _READ},
]  # fmt: skip


def token_secret(member: str) -> str:
    """The name of a member's token Secret in a userspace."""
    return f"{member}-token"


def check_members(platform: Platform) -> list[str]:
    """Config problems: a member who is not a person of `users` (who would have no account
    on the input host to receive the kubeconfig)."""
    if not platform.enabled(COMPONENT):
        return []
    people = {user.name for user in platform.users}
    return [
        f"field 'userspaces.spaces.{index}.members': {member} is not one of `users`: add "
        f"the person there (role dev), or take them out of userspace {space.name}"
        for index, space in enumerate(platform.userspaces.spaces)
        for member in space.members
        if member not in people
    ]


def memberships(platform: Platform) -> dict[str, list[str]]:
    """Person -> the userspaces they belong to, in the config's order."""
    found: dict[str, list[str]] = {}
    for space in platform.userspaces.spaces:
        for member in space.members:
            found.setdefault(member, []).append(space.name)
    return found


def objects(platform: Platform) -> list[dict[str, Any]]:
    """Every object of every userspace (module docstring)."""
    enforce = platform.userspaces.pod_security
    rendered: list[dict[str, Any]] = []
    for space in platform.userspaces.spaces:
        ns = space.name
        rendered.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": enforce,
                        "pod-security.kubernetes.io/enforce-version": "latest",
                        "pod-security.kubernetes.io/warn": "restricted",
                        "pod-security.kubernetes.io/warn-version": "latest",
                    },
                },
            }
        )
        for member in space.members:
            rendered.append(_object("v1", "ServiceAccount", member, ns))
            secret = _object("v1", "Secret", token_secret(member), ns)
            secret["metadata"]["annotations"] = {"kubernetes.io/service-account.name": member}
            secret["type"] = "kubernetes.io/service-account-token"
            rendered.append(secret)
        role = _object("rbac.authorization.k8s.io/v1", "Role", ROLE, ns)
        role["rules"] = RULES
        rendered.append(role)
        binding = _object("rbac.authorization.k8s.io/v1", "RoleBinding", ROLE, ns)
        binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE}
        binding["subjects"] = [
            {"kind": "ServiceAccount", "name": member, "namespace": ns} for member in space.members
        ]
        rendered.append(binding)
        quota, limits = space.quota, space.limits
        resource_quota = _object("v1", "ResourceQuota", COMPONENT, ns)
        resource_quota["spec"] = {
            "hard": {
                "requests.cpu": quota.requests_cpu,
                "requests.memory": quota.requests_memory,
                "limits.cpu": quota.limits_cpu,
                "limits.memory": quota.limits_memory,
                "pods": str(quota.pods),
                "persistentvolumeclaims": str(quota.persistent_volume_claims),
                "requests.storage": quota.requests_storage,
                "services.nodeports": "0",
                "services.loadbalancers": "0",
            }
        }
        rendered.append(resource_quota)
        limit_range = _object("v1", "LimitRange", COMPONENT, ns)
        limit_range["spec"] = {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {
                        "cpu": limits.default_request_cpu,
                        "memory": limits.default_request_memory,
                    },
                    "default": {"cpu": limits.default_cpu, "memory": limits.default_memory},
                    "max": {"cpu": limits.max_cpu, "memory": limits.max_memory},
                }
            ]
        }
        rendered.append(limit_range)
    return rendered


def _object(api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
    }


def read_tokens(api: Any, platform: Platform) -> dict[tuple[str, str], str | None]:
    """(userspace, member) -> the member's token there, None while there is none yet (the
    Secret not made, or not filled by kube-controller-manager yet)."""
    from kubernetes.dynamic.exceptions import NotFoundError

    secrets = api.resources.get(api_version="v1", kind="Secret")
    tokens: dict[tuple[str, str], str | None] = {}
    for space in platform.userspaces.spaces:
        for member in space.members:
            try:
                found = secrets.get(name=token_secret(member), namespace=space.name).to_dict()
            except NotFoundError:
                found = {}
            data = (found.get("data") or {}).get("token")
            tokens[(space.name, member)] = base64.b64decode(data).decode() if data else None
    return tokens


def kubeconfig(
    platform: Platform, person: str, tokens: dict[tuple[str, str], str], ca_pem: str, port: int
) -> str:
    """`person`'s kubeconfig: one context per userspace they belong to (named after it, in
    its namespace), the first one current; the server is https://127.0.0.1:`port` (the input
    host's API stream, or a workstation's end of an `ssh -L` to it)."""
    spaces = memberships(platform).get(person, [])
    cluster = platform.name
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                },
            }
        ],
        "users": [
            {"name": f"{person}@{space}", "user": {"token": tokens[(space, person)]}}
            for space in spaces
        ],
        "contexts": [
            {
                "name": space,
                "context": {"cluster": cluster, "namespace": space, "user": f"{person}@{space}"},
            }
            for space in spaces
        ],
        "current-context": spaces[0] if spaces else "",
        "preferences": {},
    }
    return f"{MARKER}\n" + yaml.safe_dump(config, sort_keys=False)


class UserspaceError(Exception):
    """A kubeconfig that cannot be made; the message says what to do."""


def for_workstation(
    platform: Platform,
    person: str,
    tokens: dict[tuple[str, str], str | None],
    ca_pem: str,
    port: int | None = None,
) -> tuple[str, str]:
    """(`person`'s kubeconfig, the ssh line that carries it) for a workstation: the server
    is the workstation's end of an ``ssh -L`` to the input host's API stream."""
    spaces = memberships(platform).get(person)
    if not spaces:
        raise UserspaceError(
            f"{person} is in no userspace: add them to the members of one (userspaces.spaces)"
        )
    missing = [space for space in spaces if not tokens.get((space, person))]
    if missing:
        raise UserspaceError(
            f"{person} has no token yet in {', '.join(missing)}: run "
            "`pyinfra <inventory> deploys/userspaces.py` first"
        )
    local = port or platform.cockpit.api_port
    entry = platform.role("input")[0]
    ssh_port = f"-p {entry.ssh_port} " if entry.ssh_port != 22 else ""
    line = (
        f"ssh -N {ssh_port}-L {local}:127.0.0.1:{platform.cockpit.api_port} "
        f"{person}@{entry.address}"
    )
    return kubeconfig(platform, person, tokens, ca_pem, local), line  # type: ignore[arg-type]
