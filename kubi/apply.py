"""Server-side apply of rendered Kubernetes objects: the one way kubi changes a cluster's API.

Every object gets kubi's labels (managed by kubi, its component, its platform), so `prune`
finds what a component owns and nothing else. Objects go in dependency order (`order`), and a
custom resource waits for its CRD to be Established. `apply` says per object whether the
server created, changed or left it alone, judged by the object's resourceVersion, not by
guessing; a dry run asks the server (dryRun=All) and shows a diff. `wait_ready` waits,
bounded, and says why an object is not ready.

Objects are plain dicts as loaded from YAML; `api` is a `kubernetes.dynamic.DynamicClient`
(`dynamic_client` makes one).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import (
    NotFoundError,
    ResourceNotFoundError,
    ResourceNotUniqueError,
)

FIELD_MANAGER = "kubi"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "kubi.io/component"
PLATFORM = "kubi.io/platform"
LABELS = (MANAGED_BY, COMPONENT, PLATFORM)  # the keys; `labels` gives their values
REQUEST_TIMEOUT = 30.0  # seconds, for one request
CRD_TIMEOUT = 30.0  # for a CRD to be Established and served, before its first resource
POLL = 0.5  # seconds between two looks at objects that are not ready
PULL_CHECK = 5.0  # seconds between two looks for pods waiting on a missing image
EXPLAIN_TIMEOUT = 5.0  # for one request that looks for why an object is not ready
NOISE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")

Object = Mapping[str, Any]
Action = Literal["created", "changed", "unchanged"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
# (API group, kind) in the order they are applied; kinds not listed (custom resources,
# Ingresses, webhooks that need their Service's pods) come after all of them.
_ORDER = [
    _CRD, ("", "Namespace"),
    # RBAC and configuration: what workloads refer to
    ("", "ServiceAccount"), ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"), ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"), ("", "ConfigMap"), ("", "Secret"),
    ("", "ResourceQuota"), ("", "LimitRange"), ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"), ("networking.k8s.io", "IngressClass"),
    ("", "PersistentVolume"), ("", "PersistentVolumeClaim"),
    ("networking.k8s.io", "NetworkPolicy"), ("policy", "PodDisruptionBudget"), ("", "Service"),
    # workloads
    ("apps", "Deployment"), ("apps", "DaemonSet"), ("apps", "StatefulSet"),
    ("apps", "ReplicaSet"), ("batch", "Job"), ("batch", "CronJob"), ("", "Pod"),
]  # fmt: skip
_RANK = {group_kind: rank for rank, group_kind in enumerate(_ORDER)}


class ApplyError(Exception):
    """The API server refused an object or could not be reached; the message names the
    object and gives the server's own reason. `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ApiUnreachable(ApplyError):
    """Nothing answered at the API's address: before the first converge made the cluster,
    or while it is down."""


class NotReady(Exception):
    """Objects not ready in time, or a failed Job; the message names each and says why."""


@dataclass(frozen=True)
class Applied:
    """What the apply of one object did (in a dry run: would do)."""

    kind: str
    name: str  # namespace/name, or the name of a cluster-wide object
    action: Action
    diff: str = ""  # unified diff (YAML) of the live object and the server's answer

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}"


@dataclass(frozen=True)
class ApplyResult:
    objects: tuple[Applied, ...]
    dry_run: bool = False

    @property
    def actions(self) -> dict[str, Action]:
        """'Kind namespace/name' -> what was done to it."""
        return {f"{a.kind} {a.name}": a.action for a in self.objects}

    @property
    def changed(self) -> bool:
        return any(a.action != "unchanged" for a in self.objects)

    def __str__(self) -> str:
        lines = [str(a) for a in self.objects]
        if self.dry_run:
            lines += [a.diff.rstrip("\n") for a in self.objects if a.diff]
        return "\n".join(lines)


class _MemoryDiscoverer(LazyDiscoverer):
    """Discovery kept in memory. The library's default cache file in /tmp is named after
    the server's URL alone, so API servers that come and go at one address (tests, a
    rebuilt cluster) would read each other's stale resource lists."""

    def _write_cache(self) -> None:
        pass


def dynamic_client(api_client: ApiClient) -> DynamicClient:
    """A dynamic client of `api_client`'s server; it reads discovery at once."""
    with _about(f"discovery at {api_client.configuration.host}"):
        # a cache file that cannot exist: discovery starts afresh and is never written
        return DynamicClient(api_client, cache_file="/dev/null/kubi", discoverer=_MemoryDiscoverer)


def labels(component: str, platform: str) -> dict[str, str]:
    """kubi's labels for an object of `component` on `platform`; ValueError when a name
    cannot be a label value of the DNS-label shape kubi uses."""
    for key, value in ((COMPONENT, component), (PLATFORM, platform)):
        if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
            raise ValueError(
                f"{key.split('/')[1]} name {value!r} cannot be the label {key}: use 1 to 63 "
                "lower-case letters, digits and '-', starting and ending with a letter or digit"
            )
    return {MANAGED_BY: FIELD_MANAGER, COMPONENT: component, PLATFORM: platform}


def order(objects: Iterable[Object]) -> list[Object]:
    """`objects` in the order to apply them: CRDs and Namespaces, then RBAC and
    configuration, then workloads, then anything else (custom resources); the given order
    is kept among objects of one kind."""
    return sorted(objects, key=_rank)


def kinds(objects: Iterable[Object]) -> list[tuple[str, str]]:
    """(apiVersion, kind) of every object, once each: what a component rendered from a
    chart may own, for its prune."""
    return sorted({(obj["apiVersion"], obj["kind"]) for obj in objects})


def describe(obj: Object) -> str:
    """'Kind namespace/name', as messages name an object."""
    return f"{obj.get('kind')} {_name(obj)}"


def _name(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace + '/' if namespace else ''}{meta.get('name')}"


def clean(obj: Object | None) -> dict[str, Any]:
    """A copy of `obj` without what the server keeps for itself (status, field managers,
    versions, uid, creation time): what is left is what a reader of a diff cares about."""
    cleaned: dict[str, Any] = copy.deepcopy(dict(obj or {}))
    cleaned.pop("status", None)
    meta = cleaned.get("metadata")
    if isinstance(meta, dict):
        for field in NOISE:
            meta.pop(field, None)
    return cleaned


def diff(live: Object | None, applied: Object | None, what: str) -> str:
    """Unified diff (YAML) of two versions of an object, noise removed (`clean`) and a
    Secret's values hidden; empty when they are the same."""

    def lines(obj: Object | None) -> list[str]:
        cleaned = clean(obj)
        if cleaned.get("kind") == "Secret":  # a diff is printed: never a secret's value
            for field in ("data", "stringData"):
                if isinstance(cleaned.get(field), dict):
                    cleaned[field] = {key: "(hidden)" for key in cleaned[field]}
        return yaml.safe_dump(cleaned, sort_keys=True).splitlines(True) if cleaned else []

    return "".join(
        difflib.unified_diff(lines(live), lines(applied), f"{what} (live)", f"{what} (applied)")
    )


# --- apply ---------------------------------------------------------------------------------


def apply(
    api: DynamicClient,
    objects: Iterable[Object],
    *,
    component: str,
    platform: str,
    dry_run: bool = False,
) -> ApplyResult:
    """Server-side apply of `objects` (field manager kubi, conflicts forced) in `order`,
    with kubi's labels. A dry run persists nothing: the server answers what it would store.

    An object whose namespace or CRD only the same dry run creates cannot be asked about
    (the server knows neither): it is shown as rendered."""
    wanted = labels(component, platform)
    ordered = order(_labelled(obj, wanted) for obj in objects)
    crds = {_crd_serves(o): o for o in ordered if _group_kind(o) == _CRD}
    settled: set[tuple[str, str]] = set()  # custom resources whose CRD is Established
    dry_namespaces: set[str] = set()  # namespaces and CRDs that only this dry run made
    dry_kinds: set[tuple[str, str]] = set()
    results = []
    for obj in ordered:
        what, name = describe(obj), _name(obj)
        group_kind = _group_kind(obj)
        namespace = obj["metadata"].get("namespace")
        if dry_run and (group_kind in dry_kinds or namespace in dry_namespaces):
            results.append(Applied(obj["kind"], name, "created", diff(None, obj, what)))
            continue
        if group_kind in crds and group_kind not in settled:
            _await_crd(api, crds[group_kind], what)
            settled.add(group_kind)
        resource = _resource(api, obj["apiVersion"], obj["kind"], what)
        if resource is None:
            raise ApplyError(
                f"{what}: the API server serves no {obj['kind']} in {obj['apiVersion']} "
                "(is its CustomResourceDefinition applied?)"
            )
        if resource.namespaced != bool(namespace):
            scope = "namespaced: set" if resource.namespaced else "cluster-wide: remove"
            raise ApplyError(f"{what}: {obj['kind']} is {scope} metadata.namespace")
        live = _get(api, resource, obj["metadata"]["name"], namespace, what)
        answer = _server_side_apply(api, resource, obj, what, dry_run)
        action = _action(live, answer, dry_run)
        if dry_run and action == "created" and group_kind == ("", "Namespace"):
            dry_namespaces.add(obj["metadata"]["name"])
        if dry_run and action == "created" and group_kind == _CRD:
            dry_kinds.add(_crd_serves(obj))
        results.append(Applied(obj["kind"], name, action, diff(live, answer, what)))
    return ApplyResult(tuple(results), dry_run)


def _labelled(obj: Object, wanted: dict[str, str]) -> dict[str, Any]:
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise ApplyError(f"{describe(obj)}: no {field}")
    if not isinstance(obj.get("metadata"), Mapping) or not obj["metadata"].get("name"):
        raise ApplyError(f"{describe(obj)}: no metadata.name")
    labelled = copy.deepcopy(dict(obj))
    labelled["metadata"]["labels"] = {**(labelled["metadata"].get("labels") or {}), **wanted}
    return labelled


def _action(live: Object | None, answer: Object, dry_run: bool) -> Action:
    if live is None:
        return "created"
    if dry_run:  # a dry run stores nothing, so the resourceVersion stays where it was
        return "unchanged" if clean(live) == clean(answer) else "changed"
    same = live["metadata"]["resourceVersion"] == answer["metadata"]["resourceVersion"]
    return "unchanged" if same else "changed"


def _server_side_apply(
    api: DynamicClient, resource: Any, obj: Object, what: str, dry_run: bool
) -> dict[str, Any]:
    with _about(what):
        answer: dict[str, Any] = api.server_side_apply(
            resource, body=dict(obj), namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True,
            dry_run="All" if dry_run else None,
            serializer=_plain, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
    return answer


def _await_crd(api: DynamicClient, crd: Object, what: str) -> None:
    """Wait until `crd` is Established and its kind is in discovery (which follows a moment
    later), refreshing the client's discovery."""
    deadline = time.monotonic() + CRD_TIMEOUT
    try:
        wait_ready(api, [crd], CRD_TIMEOUT)
    except NotReady as error:
        detail = str(error).split("\n", 1)[-1]
        raise ApplyError(f"{what}: waited {CRD_TIMEOUT:g} s for {detail}") from None
    group, kind = _crd_serves(crd)
    version = next((v["name"] for v in crd["spec"].get("versions", []) if v.get("served")), "")
    api.resources.invalidate_cache()
    while _resource(api, f"{group}/{version}", kind, what) is None:
        if time.monotonic() > deadline:
            raise ApplyError(
                f"{what}: CustomResourceDefinition {crd['metadata']['name']} is Established "
                f"but {group}/{version} {kind} is not in the API server's discovery after "
                f"{CRD_TIMEOUT:.0f} s"
            )
        time.sleep(0.2)  # each miss rereads discovery


# --- prune ---------------------------------------------------------------------------------


def prune(
    api: DynamicClient,
    keep: Iterable[Object],
    *,
    component: str,
    platform: str,
    kinds: Iterable[tuple[str, str]],
    dry_run: bool = False,
) -> list[str]:
    """Delete the objects of `kinds` ((apiVersion, kind) pairs the component may own) that
    carry this component's and platform's labels and are not in `keep` (what was just
    rendered); returns them as 'Kind namespace/name'. Objects without all three labels are
    never touched. Custom resources go before their CRDs, Namespaces last. A dry run
    deletes nothing and returns what it would delete."""
    wanted = labels(component, platform)
    selector = ",".join(f"{key}={value}" for key, value in wanted.items())
    kept = {_identity(obj) for obj in keep}
    doomed = []
    for api_version, kind in kinds:
        resource = _resource(api, api_version, kind, f"{kind} ({api_version})")
        if resource is None:
            continue  # not served (a CRD already gone): nothing of it to prune
        with _about(f"listing {kind} ({api_version}) of {selector}"):
            listing = api.get(resource, label_selector=selector, serializer=_plain,
                              _request_timeout=REQUEST_TIMEOUT)  # fmt: skip
        for item in listing.get("items", []):
            item = {**item, "apiVersion": api_version, "kind": kind}
            if _identity(item) not in kept and not item["metadata"].get("deletionTimestamp"):
                doomed.append((resource, item))
    deleted = []
    for resource, item in sorted(doomed, key=lambda pair: _rank(pair[1]), reverse=True):
        what = describe(item)
        if dry_run:
            deleted.append(what)
            continue
        with _about(f"deleting {what}"):
            try:
                api.delete(resource, name=item["metadata"]["name"],
                           namespace=item["metadata"].get("namespace"),
                           propagation_policy="Background",  # a Job's own default orphans
                           serializer=_plain, _request_timeout=REQUEST_TIMEOUT)  # fmt: skip
            except NotFoundError:
                continue  # gone meanwhile
        deleted.append(what)
    return deleted


def _identity(obj: Object) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    group, kind = _group_kind(obj)
    return group, kind, meta.get("namespace") or "", meta.get("name") or ""


# --- wait ----------------------------------------------------------------------------------


def wait_ready(api: DynamicClient, objects: Iterable[Object], timeout: float) -> None:
    """Wait until every CRD is Established, Deployment, StatefulSet and DaemonSet rolled out
    and Job complete; other kinds are ready once applied. NotReady after `timeout` seconds,
    naming each object still not ready and why (its pods, the last warnings); at once when
    a Job failed, and as soon as a pod waits for an image its registry does not have (one
    line per object: waiting would not make the image appear)."""
    deadline = time.monotonic() + timeout
    pending = [obj for obj in objects if _group_kind(obj) in _READINESS]
    next_pull_check = time.monotonic()
    while True:
        waiting: list[tuple[Object, dict[str, Any] | None, str]] = []
        for obj in pending:
            what = describe(obj)
            meta = obj["metadata"]
            resource = _resource(api, obj["apiVersion"], obj["kind"], what)
            live = None
            if resource is not None:
                left = max(1.0, min(REQUEST_TIMEOUT, deadline - time.monotonic()))
                live = _get(api, resource, meta["name"], meta.get("namespace"), what, left)
            if live is None:
                waiting.append((obj, None, "not found"))
                continue
            ready, failed, summary = _READINESS[_group_kind(obj)](live)
            if failed:
                raise NotReady(f"{what} failed: {failed}{_why(api, live)}")
            if not ready:
                waiting.append((obj, live, summary))
        if not waiting:
            return
        if time.monotonic() >= next_pull_check:  # a few calls per object: not at every poll
            next_pull_check = time.monotonic() + PULL_CHECK
            missing = [
                f"{describe(obj)}: {line}"
                for obj, live, _ in waiting
                for line in _missing_images(api, live)
            ]
            if missing:
                raise NotReady("\n".join(missing))
        if time.monotonic() >= deadline:
            reasons = [
                f"{describe(obj)}: {summary}" + _why(api, live) for obj, live, summary in waiting
            ]
            raise NotReady(f"not ready after {timeout:g} s:\n" + "\n".join(reasons))
        time.sleep(max(0.0, min(POLL, deadline - time.monotonic())))
        pending = [obj for obj, _, _ in waiting]


Readiness = tuple[bool, str, str]  # ready, why it failed (Jobs), what its status says


def _conditions(live: Object) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (live.get("status") or {}).get("conditions") or []}


def _true(condition: dict[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _unobserved(live: Object) -> str:
    """Why the controller's status does not count yet, or ''."""
    observed = (live.get("status") or {}).get("observedGeneration")
    generation = live["metadata"].get("generation", 0)
    if observed is None:
        return "; its controller has not picked it up (is kube-controller-manager running?)"
    if observed < generation:
        return f"; its controller has seen generation {observed} of {generation}"
    return ""


def _crd_readiness(live: Object) -> Readiness:
    conditions = _conditions(live)
    if _true(conditions.get("Established")):
        return True, "", ""
    problems = [f"{c['type']}: {c.get('message', '')}" for c in conditions.values() if not _true(c)]
    return False, "", "not Established" + (f" ({'; '.join(problems)})" if problems else "")


def _deployment_readiness(live: Object) -> Readiness:
    want = live["spec"].get("replicas", 1)
    status = live.get("status") or {}
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    available, total = status.get("availableReplicas", 0), status.get("replicas", 0)
    unobserved = _unobserved(live)
    done = not unobserved and updated == available == total == want
    old = f", {total - updated} old" if total > updated else ""
    summary = f"{ready} of {want} replicas ready ({updated} updated, {available} available{old})"
    return done, "", summary + unobserved


def _statefulset_readiness(live: Object) -> Readiness:
    want = live["spec"].get("replicas", 1)
    status = live.get("status") or {}
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    on_delete = (live["spec"].get("updateStrategy") or {}).get("type") == "OnDelete"
    unobserved = _unobserved(live)
    done = not unobserved and ready == want and (on_delete or updated == want)
    return done, "", f"{ready} of {want} replicas ready ({updated} updated){unobserved}"


def _daemonset_readiness(live: Object) -> Readiness:
    status = live.get("status") or {}
    desired = status.get("desiredNumberScheduled", 0)
    ready, updated = status.get("numberReady", 0), status.get("updatedNumberScheduled", 0)
    unobserved = _unobserved(live)
    done = not unobserved and desired == ready == updated
    return done, "", f"{ready} of {desired} pods ready ({updated} updated){unobserved}"


def _job_readiness(live: Object) -> Readiness:
    conditions = _conditions(live)
    for kind in ("Failed", "FailureTarget"):  # FailureTarget: failing, pods being stopped
        if _true(conditions.get(kind)):
            condition = conditions[kind]
            return False, f"{condition.get('reason', kind)}: {condition.get('message', '')}", ""
    status = live.get("status") or {}
    completions = live["spec"].get("completions", 1)
    summary = (
        f"{status.get('succeeded', 0)} of {completions} completions, "
        f"{status.get('active', 0)} active, {status.get('failed', 0)} failed pods"
    )
    return _true(conditions.get("Complete")), "", summary


_READINESS = {
    _CRD: _crd_readiness,
    ("apps", "Deployment"): _deployment_readiness,
    ("apps", "StatefulSet"): _statefulset_readiness,
    ("apps", "DaemonSet"): _daemonset_readiness,
    ("batch", "Job"): _job_readiness,
}
_PODS_SHOWN = 5
_WARNINGS_SHOWN = 3


def _why(api: DynamicClient, live: Object | None) -> str:
    """Lines on the pods of `live` and the last warnings about it and them ('' for objects
    without pods). A failure to look is said, not raised: it must not hide NotReady."""
    if live is None:
        return ""
    namespace = live["metadata"].get("namespace")
    selector = _selector((live.get("spec") or {}).get("selector"))
    if not namespace:
        return ""
    lines = []
    try:
        pods = []
        if selector is not None:
            pods = _list(api, "v1", "Pod", namespace, label_selector=selector)
            if not pods:
                lines.append("no pods")
        for pod in pods[:_PODS_SHOWN]:
            lines += [f"pod {pod['metadata']['name']}: {line}" for line in _pod_problems(pod)]
        if len(pods) > _PODS_SHOWN:
            lines.append(f"and {len(pods) - _PODS_SHOWN} more pods")
        events = _list(api, "v1", "Event", namespace, field_selector="type=Warning")
        involved = [(live["kind"], live["metadata"]["name"])]
        involved += [("Pod", pod["metadata"]["name"]) for pod in pods[:_PODS_SHOWN]]
        for kind, name in involved:
            lines += [
                f"warning about {kind} {name}: {line}" for line in _warnings(events, kind, name)
            ]
    except ApplyError as error:
        lines.append(f"(could not look further: {error})")
    return "".join(f"\n  {line}" for line in lines)


_PULL_WAITS = ("ErrImagePull", "ImagePullBackOff")
# What containerd and the registries say of an image they do not have.
_ABSENT = ("not found", "manifest unknown", "NotFound")


def _missing_images(api: DynamicClient, live: Object | None) -> list[str]:
    """'cannot pull <image>: ...' for each image that a pod of `live` waits for and that the
    registry says it does not have (the container's waiting message, or a warning of the
    kubelet about that pod). A failure to look is no finding: the timeout still speaks."""
    if live is None or not live["metadata"].get("namespace"):
        return []
    namespace = live["metadata"]["namespace"]
    selector = _selector((live.get("spec") or {}).get("selector"))
    if selector is None:
        return []
    try:
        pods = _list(api, "v1", "Pod", namespace, label_selector=selector)
        stuck: dict[str, tuple[str, str]] = {}  # image -> (pod, the container's message)
        for pod in pods:
            status = pod.get("status") or {}
            for container in (status.get("initContainerStatuses") or []) + (
                status.get("containerStatuses") or []
            ):
                waiting = (container.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in _PULL_WAITS:
                    name = pod["metadata"]["name"]
                    stuck.setdefault(container.get("image", ""), (name, waiting.get("message", "")))
        if not stuck:
            return []
        events = _list(api, "v1", "Event", namespace, field_selector="type=Warning")
    except ApplyError:
        return []
    lines = []
    for image, (pod_name, message) in stuck.items():
        said = [message] + [
            e.get("message", "")
            for e in events
            if (e.get("involvedObject") or {}).get("name") == pod_name
        ]
        if any(image in text and any(a in text for a in _ABSENT) for text in said):
            lines.append(
                f"cannot pull {image}: the registry the nodes pull from does not have it "
                f"(pod {pod_name}); copy it there (the images component) or fix its name"
            )
    return lines


def _selector(selector: Mapping[str, Any] | None) -> str | None:
    """A label selector as the API's query syntax; None when it selects nothing useful."""
    if not selector:
        return None
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
             "Exists": key, "DoesNotExist": f"!{key}"}[operator]
        )  # fmt: skip
    return ",".join(parts) or None


def _pod_problems(pod: Object) -> list[str]:
    status = pod.get("status") or {}
    phase = status.get("phase", "Unknown")
    problems = []
    scheduled = _conditions(pod).get("PodScheduled")
    if scheduled and not _true(scheduled):
        problems.append(f"{phase}: {scheduled.get('reason', '')}: {scheduled.get('message', '')}")
    elif phase in ("Failed", "Unknown"):
        problems.append(f"{phase}: {status.get('reason', '')}: {status.get('message', '')}")
    containers = (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    )
    for container in containers:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        where = f"container {container.get('name')} ({container.get('image')})"
        if waiting:
            reason = waiting.get("reason", "waiting")
            problems.append(f"{where} waiting: {reason}: {waiting.get('message', '')}".rstrip(": "))
        elif terminated and terminated.get("exitCode", 0) != 0:
            problems.append(
                f"{where} exited {terminated.get('exitCode')}: {terminated.get('reason', '')}"
            )
        elif state.get("running") and not container.get("ready"):
            problems.append(f"{where} running, not ready (its readiness probe)")
    if not problems and phase != "Running":
        problems.append(phase)
    return problems


def _warnings(events: list[dict[str, Any]], kind: str, name: str) -> list[str]:
    about = [
        e for e in events
        if (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") == name
    ]  # fmt: skip

    def when(event: dict[str, Any]) -> str:
        meta = event.get("metadata") or {}
        return (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or meta.get("creationTimestamp")
            or ""
        )

    lines = []
    for event in sorted(about, key=when)[-_WARNINGS_SHOWN:]:
        count = event.get("count") or 1
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"{event.get('reason', '')}: {event.get('message', '').strip()}{times}")
    return lines


# --- the API ---------------------------------------------------------------------------------


def _plain(_client: Any, data: Any) -> Any:
    """The dynamic client's serializer that keeps the server's JSON as plain dicts."""
    return data


@contextmanager
def _about(what: str) -> Iterator[None]:
    """The client's errors as one ApplyError naming `what` with the server's message."""
    try:
        yield
    except ApiException as error:
        raise ApplyError(
            f"{what}: {error.status} {error.reason}: {_server_message(error)}", error.status
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise ApiUnreachable(f"{what}: the API server could not be reached: {error}") from None


def _server_message(error: ApiException) -> str:
    body = str(error.body or "").strip()
    try:
        status = json.loads(body)
    except ValueError:
        return body or "(no message)"
    return str(status.get("message") or body) if isinstance(status, dict) else body


def _resource(api: DynamicClient, api_version: str, kind: str, what: str) -> Any | None:
    """The dynamic client's resource for `kind`, or None when the server does not serve it
    (after rereading discovery: the client does that on a miss)."""
    # the core group must be named by its prefix: a version alone matches every group
    prefix = {} if "/" in api_version else {"prefix": "api"}
    with _about(f"{what}: discovery"):
        try:
            return api.resources.get(api_version=api_version, kind=kind, **prefix)
        except ResourceNotFoundError:
            return None
        except ResourceNotUniqueError as error:
            raise ApplyError(f"{what}: ambiguous kind in discovery: {error}") from None


def _get(
    api: DynamicClient,
    resource: Any,
    name: str,
    namespace: str | None,
    what: str,
    timeout: float = REQUEST_TIMEOUT,
) -> dict[str, Any] | None:
    with _about(what):
        try:
            live: dict[str, Any] = api.get(
                resource, name=name, namespace=namespace, serializer=_plain,
                _request_timeout=timeout,
            )  # fmt: skip
        except NotFoundError:
            return None
    return live


def _list(
    api: DynamicClient, api_version: str, kind: str, namespace: str, **selectors: str
) -> list[dict[str, Any]]:
    resource = _resource(api, api_version, kind, kind)
    with _about(f"listing {kind} in {namespace}"):
        listing = api.get(resource, namespace=namespace, serializer=_plain,
                          _request_timeout=EXPLAIN_TIMEOUT, **selectors)  # fmt: skip
    items: list[dict[str, Any]] = listing.get("items") or []
    return items


def _group_kind(obj: Object) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))


def _crd_serves(crd: Object) -> tuple[str, str]:
    """The (group, kind) of the custom resources a CRD defines."""
    spec = crd.get("spec") or {}
    return spec.get("group", ""), (spec.get("names") or {}).get("kind", "")


def _rank(obj: Object) -> int:
    return _RANK.get(_group_kind(obj), len(_RANK))
