"""kubi's apply layer (kubi/apply.py) against a real kube-apiserver and etcd (the `apiserver`
fixture), plus its pure parts. No scheduler, controller-manager or kubelet runs: workloads
never get ready by themselves, so tests write the status a controller would.

Each test works in a namespace named after it, which is also its platform label, so that
`prune` (cluster-wide by label) never sees another test's objects.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import time

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import NotFoundError

from kubi import apply
from kubi.apply import ApplyError, NotReady

WIDGET_SCHEMA = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
}


@pytest.fixture
def api(apiserver):
    return apply.dynamic_client(apiserver.api_client())


@pytest.fixture
def ns(request) -> str:
    """This test's own namespace name (and platform label)."""
    return ("t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()))[:50].strip("-")


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config_map(ns: str, name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(ns, name), "data": data}


def deployment(ns: str, name: str = "web", image: str = "registry.invalid/web:1") -> dict:
    labels = {"app": name}
    pod = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}}
    spec = {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ns, name),
        "spec": spec,
    }


def job(ns: str, name: str = "migrate") -> dict:
    container = {"name": name, "image": "registry.invalid/migrate:1"}
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(ns, name),
            "spec": {"template": template}}  # fmt: skip


def widgets(group: str) -> tuple[dict, dict]:
    """A CRD of kind Widget in `group` (cluster-wide: one group per test), and a Widget
    without metadata."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": WIDGET_SCHEMA}}],
        },
    }  # fmt: skip
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "spec": {"size": 3}}
    return crd, widget


def _meta(ns: str, name: str) -> dict:
    return {"name": name, "namespace": ns}


def live(api, obj: dict) -> dict | None:
    """The object as the server has it now, or None."""
    prefix = {} if "/" in obj["apiVersion"] else {"prefix": "api"}
    resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"], **prefix)
    meta = obj["metadata"]
    try:
        return api.get(resource, name=meta["name"], namespace=meta.get("namespace")).to_dict()
    except NotFoundError:
        return None


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- apply -----------------------------------------------------------------------------------


def test_second_apply_changes_nothing(api, ns):
    objects = [
        deployment(ns),
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ns, "web"),
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
        config_map(ns, "settings", level="info"),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ns, "web")},
        namespace(ns),
    ]  # fmt: skip
    first = apply.apply(api, objects, component="web", platform=ns)
    assert [str(a) for a in first.objects] == [
        f"Namespace {ns}: created",
        f"ServiceAccount {ns}/web: created",
        f"ConfigMap {ns}/settings: created",
        f"Service {ns}/web: created",
        f"Deployment {ns}/web: created",
    ]
    versions = {apply.describe(o): live(api, o)["metadata"]["resourceVersion"] for o in objects}

    second = apply.apply(api, objects, component="web", platform=ns)

    assert set(second.actions.values()) == {"unchanged"} and not second.changed
    assert {apply.describe(o): live(api, o)["metadata"]["resourceVersion"] for o in objects} == (
        versions
    )
    assert live(api, objects[2])["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kubi",
        "kubi.io/component": "web",
        "kubi.io/platform": ns,
    }
    assert objects[2]["metadata"] == _meta(ns, "settings")  # the caller's objects untouched


def test_changed_field_is_reported_and_live(api, ns):
    apply.apply(api, [namespace(ns), config_map(ns, "settings", level="info"), deployment(ns)],
                component="web", platform=ns)  # fmt: skip
    newer = [namespace(ns), config_map(ns, "settings", level="debug"), deployment(ns, image="x:2")]

    result = apply.apply(api, newer, component="web", platform=ns)

    assert result.actions == {
        f"Namespace {ns}": "unchanged",
        f"ConfigMap {ns}/settings": "changed",
        f"Deployment {ns}/web": "changed",
    }
    assert live(api, newer[1])["data"] == {"level": "debug"}
    assert live(api, newer[2])["spec"]["template"]["spec"]["containers"][0]["image"] == "x:2"


def test_crd_and_its_custom_resource_in_one_call(api, ns):
    crd, widget = widgets(f"{ns}.kubi.test")
    widget["metadata"] = _meta(ns, "blue")

    result = apply.apply(api, [widget, crd, namespace(ns)], component="widgets", platform=ns)

    assert [a.kind for a in result.objects] == ["CustomResourceDefinition", "Namespace", "Widget"]
    assert set(result.actions.values()) == {"created"}
    assert live(api, widget)["spec"] == {"size": 3}
    conditions = {c["type"]: c["status"] for c in live(api, crd)["status"]["conditions"]}
    assert conditions["Established"] == "True"
    again = apply.apply(api, [widget, crd, namespace(ns)], component="widgets", platform=ns)
    assert set(again.actions.values()) == {"unchanged"}


def test_custom_resource_waits_for_its_crd_to_be_established(api, ns, monkeypatch):
    """A CRD whose names clash with another's is never Established: its resources wait for it,
    bounded, and the error says why."""
    group = f"{ns}.kubi.test"
    first, _ = widgets(group)
    apply.apply(api, [first], component="widgets", platform=ns)
    clashing, gadget = widgets(group)
    clashing["metadata"]["name"] = f"gadgets.{group}"
    clashing["spec"]["names"] |= {"plural": "gadgets", "kind": "Gadget"}  # singular: widget
    gadget |= {"kind": "Gadget", "metadata": _meta(ns, "g")}
    monkeypatch.setattr(apply, "CRD_TIMEOUT", 1.0)

    with pytest.raises(ApplyError) as refused:
        apply.apply(api, [gadget, namespace(ns), clashing], component="widgets", platform=ns)

    assert str(refused.value) == (
        f"Gadget {ns}/g: waited 1 s for CustomResourceDefinition gadgets.{group}: not "
        'Established (NamesAccepted: "widget" is already in use; Established: not all names '
        "are accepted)"
    )


def test_custom_resource_without_its_crd_is_refused(api, ns):
    _, widget = widgets(f"{ns}.kubi.test")
    widget["metadata"] = _meta(ns, "blue")

    with pytest.raises(ApplyError, match=f"Widget {ns}/blue: the API server serves no Widget"):
        apply.apply(api, [namespace(ns), widget], component="widgets", platform=ns)


def test_prune_deletes_exactly_what_was_dropped(api, apiserver, ns):
    kinds = [("v1", "ConfigMap"), ("v1", "Namespace")]
    kept, dropped = config_map(ns, "kept", a="1"), config_map(ns, "dropped", a="1")
    apply.apply(api, [namespace(ns), kept, dropped], component="web", platform=ns)
    others_component = config_map(ns, "dropped-too", a="1")  # same kind, another component
    apply.apply(api, [others_component], component="db", platform=ns)
    other_platform = config_map(ns, "elsewhere", a="1")
    apply.apply(api, [other_platform], component="web", platform=f"{ns}-other")
    unlabelled = config_map(ns, "by-hand", a="1")
    client.CoreV1Api(apiserver.api_client()).create_namespaced_config_map(ns, unlabelled)

    keep = [namespace(ns), kept]
    planned = apply.prune(api, keep, component="web", platform=ns, kinds=kinds, dry_run=True)
    assert planned == [f"ConfigMap {ns}/dropped"]
    assert live(api, dropped) is not None  # a dry run deletes nothing
    deleted = apply.prune(api, keep, component="web", platform=ns, kinds=kinds)

    assert deleted == [f"ConfigMap {ns}/dropped"]
    assert live(api, dropped) is None
    for obj in (namespace(ns), kept, others_component, other_platform, unlabelled):
        assert live(api, obj) is not None, apply.describe(obj)
    assert apply.prune(api, [namespace(ns), kept], component="web", platform=ns, kinds=kinds) == []


def test_dry_run_persists_nothing_and_shows_the_change(api, ns):
    apply.apply(api, [namespace(ns), config_map(ns, "settings", level="info")],
                component="web", platform=ns)  # fmt: skip
    version = live(api, config_map(ns, "settings"))["metadata"]["resourceVersion"]
    wanted = [namespace(ns), config_map(ns, "settings", level="debug"), config_map(ns, "new")]

    result = apply.apply(api, wanted, component="web", platform=ns, dry_run=True)

    assert result.dry_run
    assert result.actions == {
        f"Namespace {ns}": "unchanged",
        f"ConfigMap {ns}/settings": "changed",
        f"ConfigMap {ns}/new": "created",
    }
    changed = result.objects[1].diff
    assert "-  level: info\n" in changed and "+  level: debug\n" in changed
    assert not any(line.startswith(("+", "-")) and "resourceVersion" in line
                   for line in changed.splitlines())  # fmt: skip
    assert result.objects[0].diff == ""
    settings = live(api, config_map(ns, "settings"))
    assert settings["data"] == {"level": "info"}
    assert settings["metadata"]["resourceVersion"] == version
    assert live(api, config_map(ns, "new")) is None


def test_dry_run_into_a_new_namespace_creates_nothing(api, ns):
    """The server cannot dry-run an object in a namespace only the dry run makes: shown as
    rendered."""
    objects = [config_map(ns, "settings", level="info"), namespace(ns)]

    result = apply.apply(api, objects, component="web", platform=ns, dry_run=True)

    assert result.actions == {f"Namespace {ns}": "created", f"ConfigMap {ns}/settings": "created"}
    assert "+  level: info\n" in result.objects[1].diff
    assert f"+  name: {ns}\n" in result.objects[0].diff
    assert live(api, namespace(ns)) is None


def test_invalid_object_is_one_error_naming_it(api, ns):
    broken = deployment(ns, "broken")
    del broken["spec"]["selector"]

    with pytest.raises(ApplyError) as refused:
        apply.apply(api, [namespace(ns), broken], component="web", platform=ns)

    message = str(refused.value)
    assert message.startswith(f"Deployment {ns}/broken: 422 Unprocessable Entity: ")
    assert "spec.selector: Required value" in message
    assert "HTTP response headers" not in message and "Traceback" not in message
    assert refused.value.status == 422


def test_forbidden_object_is_one_error_naming_it(api, apiserver, ns):
    """RBAC is real: a token allowed ConfigMaps in one namespace gets 403 in another."""
    rbac = "rbac.authorization.k8s.io/v1"
    rule = {"apiGroups": [""], "resources": ["configmaps"],
            "verbs": ["get", "list", "create", "patch"]}  # fmt: skip
    apply.apply(api, [
        namespace(ns), namespace(f"{ns}-b"),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ns, "deployer")},
        {"apiVersion": rbac, "kind": "Role", "metadata": _meta(ns, "deployer"), "rules": [rule]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": _meta(ns, "deployer"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
         "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]},
    ], component="web", platform=ns)  # fmt: skip
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = (
        client.CoreV1Api(apiserver.api_client())
        .create_namespaced_service_account_token("deployer", ns, request)
        .status.token
    )
    limited = apply.dynamic_client(apiserver.api_client(token))

    allowed = apply.apply(limited, [config_map(ns, "c")], component="web", platform=ns)
    assert allowed.actions == {f"ConfigMap {ns}/c": "created"}
    with pytest.raises(ApplyError, match=f"ConfigMap {ns}-b/c: 403 Forbidden: .*forbidden") as no:
        apply.apply(limited, [config_map(f"{ns}-b", "c")], component="web", platform=ns)
    assert no.value.status == 403


def test_bad_label_value_is_refused_before_anything_is_sent(api, ns):
    with pytest.raises(ValueError, match="component name 'Web_UI' cannot be the label"):
        apply.apply(api, [namespace(ns)], component="Web_UI", platform=ns)
    with pytest.raises(ValueError, match="platform name"):
        apply.prune(api, [], component="web", platform="-p", kinds=[("v1", "ConfigMap")])
    assert live(api, namespace(ns)) is None


# --- wait_ready ------------------------------------------------------------------------------


def test_deployment_that_never_gets_pods_times_out_naming_it(api, ns):
    web = deployment(ns)
    apply.apply(api, [namespace(ns), web], component="web", platform=ns)

    started = time.monotonic()
    with pytest.raises(NotReady) as late:
        apply.wait_ready(api, [namespace(ns), web], timeout=2)

    assert 2 <= time.monotonic() - started < 5
    lines = str(late.value).splitlines()
    assert lines[0] == "not ready after 2 s:"
    assert lines[1].startswith(f"Deployment {ns}/web: 0 of 1 replicas ready")
    assert "no pods" in lines[2]
    assert "Namespace" not in str(late.value)


def test_not_ready_says_why_from_pods_and_warnings(api, apiserver, ns):
    unschedulable = "0/3 nodes are available: 3 node(s) had untolerated taint."
    backoff = {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "registry.invalid/web:1"',
    }
    web, _ = web_pod_waiting(api, apiserver, ns, lambda image: {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": unschedulable}],
        "containerStatuses": [{"name": "web", "image": image, "imageID": "",
                               "ready": False, "restartCount": 0, "state": {"waiting": backoff}}],
    })  # fmt: skip
    core = client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_event(ns, {
        "metadata": {"name": "web-1.pull"}, "type": "Warning", "reason": "Failed", "count": 4,
        "message": 'Failed to pull image "registry.invalid/web:1": dial tcp: i/o timeout',
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": ns},
        "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "kubelet"},
    })  # fmt: skip

    with pytest.raises(NotReady) as late:
        apply.wait_ready(api, [web], timeout=1)

    message = str(late.value)
    assert f"Deployment {ns}/web: 0 of 1 replicas ready" in message
    assert f"pod web-1: Pending: Unschedulable: {unschedulable}" in message
    assert (
        "pod web-1: container web (registry.invalid/web:1) waiting: ImagePullBackOff: "
        'Back-off pulling image "registry.invalid/web:1"'
    ) in message
    assert (
        'warning about Pod web-1: Failed: Failed to pull image "registry.invalid/web:1": '
        "dial tcp: i/o timeout (x4)"
    ) in message


def test_failed_job_raises_at_once(api, apiserver, ns):
    migrate = job(ns)
    apply.apply(api, [namespace(ns), migrate], component="db", platform=ns)
    reason = "Job has reached the specified backoff limit"
    failed = {"status": "True", "reason": "BackoffLimitExceeded", "message": reason,
              "lastTransitionTime": now(), "lastProbeTime": now()}  # fmt: skip
    # 1.33 checks Job status as its controller writes it: FailureTarget first, a startTime
    status = {"startTime": now(), "conditions": [{"type": "FailureTarget", **failed},
                                                 {"type": "Failed", **failed}]}  # fmt: skip
    jobs = client.BatchV1Api(apiserver.api_client())
    jobs.patch_namespaced_job_status("migrate", ns, {"status": status})

    started = time.monotonic()
    with pytest.raises(NotReady) as failure:
        apply.wait_ready(api, [migrate], timeout=30)

    assert time.monotonic() - started < 3
    assert str(failure.value).startswith(f"Job {ns}/migrate failed: BackoffLimitExceeded: {reason}")


def test_ready_once_the_status_says_so(api, apiserver, ns):
    crd, _ = widgets(f"{ns}.kubi.test")
    web = deployment(ns)
    agent = deployment(ns, "agent") | {"kind": "DaemonSet"}
    del agent["spec"]["replicas"]
    objects = [namespace(ns), crd, web, agent]
    apply.apply(api, objects, component="web", platform=ns)
    apps = client.AppsV1Api(apiserver.api_client())
    with pytest.raises(NotReady, match=f"DaemonSet {ns}/agent: 0 of 0 pods ready"):
        apply.wait_ready(api, objects, timeout=0.5)  # no status yet: not seen by a controller

    apps.patch_namespaced_deployment_status("web", ns, {"status": {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
        "availableReplicas": 1}})  # fmt: skip
    apps.patch_namespaced_daemon_set_status("agent", ns, {"status": {
        "observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
        "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2}})  # fmt: skip
    started = time.monotonic()
    apply.wait_ready(api, objects, timeout=10)

    assert time.monotonic() - started < 2


# --- pure parts ------------------------------------------------------------------------------


def test_order_puts_definitions_first_and_custom_resources_last():
    def obj(api_version: str, kind: str, name: str = "x") -> dict:
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}

    given = [
        obj("example.com/v1", "Widget"),
        obj("serving.knative.dev/v1", "Service"),  # not the core Service: a custom resource
        obj("batch/v1", "Job"),
        obj("apps/v1", "Deployment", "b"),
        obj("v1", "ConfigMap", "second"),
        obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        obj("v1", "Service"),
        obj("v1", "ConfigMap", "first"),
        obj("apps/v1", "Deployment", "a"),
        obj("networking.k8s.io/v1", "Ingress"),
        obj("rbac.authorization.k8s.io/v1", "ClusterRole"),
        obj("v1", "Namespace"),
        obj("v1", "ServiceAccount"),
        obj("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ]

    ordered = [f"{o['apiVersion']} {o['kind']} {o['metadata']['name']}" for o in apply.order(given)]

    assert ordered == [
        "apiextensions.k8s.io/v1 CustomResourceDefinition x",
        "v1 Namespace x",
        "v1 ServiceAccount x",
        "rbac.authorization.k8s.io/v1 ClusterRole x",
        "rbac.authorization.k8s.io/v1 ClusterRoleBinding x",
        "v1 ConfigMap second",  # the given order among one kind
        "v1 ConfigMap first",
        "v1 Service x",
        "apps/v1 Deployment b",
        "apps/v1 Deployment a",
        "batch/v1 Job x",
        "example.com/v1 Widget x",
        "serving.knative.dev/v1 Service x",
        "networking.k8s.io/v1 Ingress x",
    ]


def test_clean_removes_what_the_server_keeps_for_itself():
    server = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}, "uid": "1-2",
                     "resourceVersion": "7", "generation": 2, "creationTimestamp": "2025-01-01",
                     "managedFields": [{"manager": "kubi"}]},
        "data": {"k": "v"}, "status": {"phase": "x"},
    }  # fmt: skip

    assert apply.clean(server) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}}, "data": {"k": "v"},
    }  # fmt: skip
    assert server["metadata"]["uid"] == "1-2" and "status" in server  # a copy
    assert apply.clean(None) == {}


def test_diff_shows_only_what_matters():
    before = config_map("n", "c", level="info")
    before["metadata"] |= {"resourceVersion": "1", "managedFields": [{"manager": "kubi"}]}
    noise_only = config_map("n", "c", level="info") | {"status": {"x": 1}}
    after = config_map("n", "c", level="debug")
    after["metadata"]["resourceVersion"] = "2"

    assert apply.diff(before, noise_only, "ConfigMap n/c") == ""
    changed = apply.diff(before, after, "ConfigMap n/c").splitlines()
    assert changed[:2] == ["--- ConfigMap n/c (live)", "+++ ConfigMap n/c (applied)"]
    assert [line for line in changed[2:] if line[:1] in "+-"] == [
        "-  level: info",
        "+  level: debug",
    ]
    created = apply.diff(None, after, "ConfigMap n/c").splitlines()
    assert all(line.startswith("+") for line in created[3:]) and "+  level: debug" in created


def test_a_diff_never_shows_a_secrets_values():
    """pyinfra prints the diff of what it would change: a token, a password, never."""
    live = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "data": {"token": "c2VjcmV0LXRva2Vu"},
        "stringData": {"password": "hunter2"},
    }
    applied = copy.deepcopy(live)
    applied["data"]["token"] = "bmV3LXRva2Vu"
    applied["metadata"]["labels"] = {"kubi.io/component": "userspaces"}
    shown = apply.diff(live, applied, "Secret n/s")
    assert "kubi.io/component" in shown and "(hidden)" in shown
    assert not {"c2VjcmV0LXRva2Vu", "bmV3LXRva2Vu", "hunter2"} & set(shown.split())
    assert apply.diff(None, applied, "Secret n/s").count("(hidden)") == 2


@pytest.mark.parametrize("value", ["Web", "web_ui", "-web", "web-", "", "w" * 64, "web.ui"])
def test_labels_refuse_what_is_not_a_dns_label(value):
    with pytest.raises(ValueError, match=f"component name {value!r} cannot be the label"):
        apply.labels(value, "prod")
    with pytest.raises(ValueError, match=f"platform name {value!r}"):
        apply.labels("web", value)


def test_labels():
    assert apply.labels("ingress-nginx", "p" + "1" * 62) == {
        "app.kubernetes.io/managed-by": "kubi",
        "kubi.io/component": "ingress-nginx",
        "kubi.io/platform": "p" + "1" * 62,
    }
    assert tuple(apply.labels("a", "b")) == apply.LABELS


def web_pod_waiting(api, apiserver, ns, status):
    """The Deployment `web` and one pod of it, with `status` as a kubelet would report it;
    returns the Deployment and the pod's image."""
    web = deployment(ns)
    default_account = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": _meta(ns, "default")}  # fmt: skip
    apply.apply(api, [namespace(ns), default_account, web], component="web", platform=ns)
    core = client.CoreV1Api(apiserver.api_client())
    pod_spec = web["spec"]["template"]["spec"]  # as its ReplicaSet would make it
    core.create_namespaced_pod(ns, {"metadata": {"name": "web-1", "labels": {"app": "web"}},
                                    "spec": pod_spec})  # fmt: skip
    image = pod_spec["containers"][0]["image"]
    core.patch_namespaced_pod_status("web-1", ns, {"status": status(image)})
    return web, image


def pulling(message):
    return lambda image: {
        "phase": "Pending",
        "containerStatuses": [{"name": "web", "image": image, "imageID": "", "ready": False,
                               "restartCount": 0,
                               "state": {"waiting": {"reason": "ErrImagePull",
                                                     "message": message(image)}}}],
    }  # fmt: skip


def test_an_image_the_registry_does_not_have_is_said_at_once_in_one_line(api, apiserver, ns):
    """Waiting would not make the image appear: the wait stops at its first look, with one
    line for the object, naming the image."""
    absent = pulling(
        lambda image: (
            f'failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": {image}: not found'
        )
    )
    web, image = web_pod_waiting(api, apiserver, ns, absent)

    started = time.monotonic()
    with pytest.raises(NotReady) as missing:
        apply.wait_ready(api, [web], timeout=60)

    assert time.monotonic() - started < 5
    assert str(missing.value) == (
        f"Deployment {ns}/web: cannot pull {image}: the registry the nodes pull from does not "
        "have it (pod web-1); copy it there (the images component) or fix its name"
    )


def test_a_pull_that_fails_otherwise_is_waited_for(api, apiserver, ns):
    """A registry that does not answer may answer later: only the timeout speaks."""
    web, _ = web_pod_waiting(api, apiserver, ns, pulling(lambda image: "dial tcp: i/o timeout"))
    with pytest.raises(NotReady) as late:
        apply.wait_ready(api, [web], timeout=2)
    assert str(late.value).startswith("not ready after 2 s:")
