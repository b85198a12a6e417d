"""The policy every workload kubi puts into a cluster follows, checked on the rendered
objects (tests/unit/test_manifests.py checks every add-on's render against it):

- every container, init containers included, requests and limits both cpu and memory: the
  scheduler places it by what it asks, and one runaway container cannot starve a node;
- no privilege it does not need. Each privilege a pod uses is named (`privileges`), and
  the add-on declares the ones it needs, with the reason, next to its render
  (`Needs`). The check also fails on a declared privilege the render no longer uses, so
  the declarations never outlive their reason.

A privilege is one of (with the container's name where it is the container's):

    hostNetwork, hostPID, hostIPC             the node's namespaces
    hostPort <port>                           a port of the node
    hostPath <path>                           a folder or file of the node
    <container>: privileged                   every device and capability of the node
    <container>: capability <NAME>            one added capability
    <container>: may escalate                 allowPrivilegeEscalation is not false
    <container>: as root                      neither runAsNonRoot nor a non-zero runAsUser
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Object = Mapping[str, Any]
# workload ("<Kind> <namespace>/<name>") -> privilege -> why the add-on needs it
Needs = Mapping[str, Mapping[str, str]]

RESOURCES = ("cpu", "memory")


def each(privileges: Iterable[str], why: str) -> dict[str, str]:
    """Several privileges needed for one reason, for a `Needs` declaration."""
    return dict.fromkeys(privileges, why)


def pod_spec(obj: Object) -> Mapping[str, Any] | None:
    """The pod spec an object runs (a Pod's own, a workload's template), or None."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return (template or {}).get("spec") if isinstance(template, Mapping) else None


def workload(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('namespace') or ''}/{meta.get('name')}"


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def resource_problems(obj: Object) -> list[str]:
    """What the containers of `obj` leave out of their requests and limits."""
    spec = pod_spec(obj)
    if spec is None:
        return []
    problems = []
    for container in _containers(spec):
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            missing = [r for r in RESOURCES if r not in (resources.get(bound) or {})]
            if missing:
                problems.append(
                    f"{workload(obj)}: container {container.get('name')} has no "
                    f"{bound} for {' and '.join(missing)}"
                )
    return problems


def privileges(obj: Object) -> set[str]:
    """Every privilege the pods of `obj` use (the module's list)."""
    spec = pod_spec(obj)
    if spec is None:
        return set()
    used = {flag for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)}
    used |= {
        f"hostPath {volume['hostPath'].get('path')}"
        for volume in spec.get("volumes") or []
        if volume.get("hostPath")
    }
    pod_context = spec.get("securityContext") or {}
    for container in _containers(spec):
        name = container.get("name")
        context = container.get("securityContext") or {}
        used |= {
            f"hostPort {p['hostPort']}" for p in container.get("ports") or [] if p.get("hostPort")
        }
        if context.get("privileged"):
            used.add(f"{name}: privileged")
        added = (context.get("capabilities") or {}).get("add") or []
        used |= {f"{name}: capability {cap}" for cap in added}
        if context.get("allowPrivilegeEscalation") is not False:
            used.add(f"{name}: may escalate")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if not non_root and not user:
            used.add(f"{name}: as root")
    return used


def problems(objects: Iterable[Object], needs: Needs) -> list[str]:
    """Every breach of the policy by `objects`: a container without its requests and
    limits, a privilege no declaration allows, and a declared privilege left unused."""
    found: list[str] = []
    seen: set[str] = set()
    for obj in objects:
        if pod_spec(obj) is None:
            continue
        what = workload(obj)
        seen.add(what)
        found += resource_problems(obj)
        used, allowed = privileges(obj), needs.get(what, {})
        found += [f"{what}: uses {p}, which nothing declares" for p in sorted(used - set(allowed))]
        found += [
            f"{what}: declares {p}, which it no longer uses" for p in sorted(set(allowed) - used)
        ]
    found += [f"{what}: declared, but not rendered" for what in sorted(set(needs) - seen)]
    return found
