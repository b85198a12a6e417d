"""The two ingress controllers (kubi/ingress.py), rendered from the pinned upstream chart by
Helm's own engine, and applied to a real API server.

The chart archive comes from outside the checkout (KUBI_LAB_CHARTS, default
/var/cache/kubi-charts), as Cilium's does; docs/lab.md says where it comes from."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from kubi import apply, ingress, upstream_charts
from kubi.config import matrices
from kubi.config.errors import ConfigError
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION
from tests.unit.test_cilium import images

CHARTS = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))
ARCHIVE = CHARTS / upstream_charts.archive_name(ingress.CHART)
needs_chart = pytest.mark.skipif(
    not ARCHIVE.is_file(),
    reason=f"no {ARCHIVE} (KUBI_LAB_CHARTS): put the pinned chart archive there (docs/lab.md)",
)
WORKERS = [("w1", {"ip": "10.20.0.31"}), ("w2", {"ip": "10.20.0.32"}), ("w3", {"ip": "10.20.0.33"})]


def platform(**ingress_settings):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = "/nonexistent/kubi-test-secrets"
    description["groups"]["workers"] = WORKERS
    description["ingress"] = ingress_settings
    return declare(None, **description).config


def one(objects, kind, name):
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_spec(objects, controller):
    return one(objects, "DaemonSet", f"{controller}-controller")["spec"]["template"]["spec"]


@needs_chart
def test_two_controllers_each_with_its_class_nodes_and_ports():
    cfg = platform(admin_nodes=["w1"], public_nodes=["w2", "w3"])
    objects = ingress.render(cfg, CHARTS)
    assert objects == ingress.render(cfg, CHARTS)  # the same twice: a re-run changes nothing
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for controller, cls, nodes in [("admin-ingress", "admin", ["w1"]),
                                   ("public-ingress", "public", ["w2", "w3"])]:  # fmt: skip
        ns = one(objects, "Namespace", controller)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
        klass = one(objects, "IngressClass", cls)
        assert klass["spec"]["controller"] == "nginx.org/ingress-controller"
        spec = pod_spec(objects, controller)
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (term,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
        assert (term["key"], term["values"]) == ("kubernetes.io/hostname", nodes)
        args = spec["containers"][0]["args"]
        assert f"-ingress-class={cls}" in args
        assert "-enable-custom-resources=false" in args
        assert "-enable-snippets=false" in args
        assert "-enable-telemetry-reporting=false" in args  # nothing sent to F5
        namespaced = [o for o in objects if o["metadata"].get("namespace")]
        assert {o["metadata"]["namespace"] for o in namespaced} == set(ingress.CLASSES)
    admin = one(objects, "Service", "admin-ingress-controller")["spec"]
    assert admin["type"] == "NodePort" and admin["externalTrafficPolicy"] == "Local"
    assert [(p["name"], p["nodePort"]) for p in admin["ports"]] == [("http", 30080)]
    public = one(objects, "Service", "public-ingress-controller")["spec"]
    assert [(p["name"], p["nodePort"]) for p in public["ports"]] == [
        ("http", 30090), ("https", 30443)
    ]  # fmt: skip
    # exactly the images kubi copies into the platform registry (`kubi images mirror`)
    assert images(objects) == matrices.upstream_chart(ingress.CHART).all_images


@needs_chart
def test_by_default_every_worker_carries_both():
    objects = ingress.render(platform(), CHARTS)
    for controller in ingress.CLASSES:
        terms = pod_spec(objects, controller)["affinity"]["nodeAffinity"]
        expression = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert expression[0]["matchExpressions"][0]["values"] == ["w1", "w2", "w3"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"admin_nodes": ["w9"]}, "field 'ingress.admin_nodes': w9 is not a Kubernetes node of "
         "the inventory; the nodes are cp1, w1, w2, w3"),
        ({"public_nodes": ["in1"]}, "field 'ingress.public_nodes': in1 is not a Kubernetes node"),
        ({"public_nodes": []}, "field 'ingress.public_nodes': give at least one node"),
    ],
)  # fmt: skip
def test_chosen_nodes_must_be_kubernetes_nodes(settings, message):
    with pytest.raises(ConfigError) as refused:
        platform(**settings)
    assert message in str(refused.value)


def test_the_cockpit_and_the_firewall_follow_the_chosen_nodes():
    cfg = platform(admin_nodes=["w2"], public_nodes=["w1", "w3"])
    assert [h.name for h in cfg.admin_ingress_nodes] == ["w2"]
    assert [h.name for h in cfg.public_ingress_nodes] == ["w1", "w3"]


@needs_chart
def test_rendered_offline_yet_the_values_schema_still_checks():
    """The chart's values schema refers to Kubernetes' schemas on GitHub, which Helm would
    fetch at each render: kubi renders without them (kubi.helm._offline), and the rest of
    the schema still refuses bad values."""
    from kubi import helm

    values = ingress.values(platform(), "admin-ingress")
    values["controller"]["kind"] = "sidecar"
    with pytest.raises(helm.HelmError, match="values don't meet the specifications"):
        helm.template(ARCHIVE, values, "admin-ingress", "admin-ingress", crds=False)


@needs_chart
def test_applied_to_a_real_api_server_then_nothing_changes(apiserver):
    objects = ingress.render(platform(), CHARTS)
    api = apply.dynamic_client(apiserver.api_client())
    first = apply.apply(api, objects, component="ingress", platform="ingress-test")
    assert {a.action for a in first.objects} == {"created"}
    again = apply.apply(api, objects, component="ingress", platform="ingress-test")
    assert {a.action for a in again.objects} == {"unchanged"}
    classes = api.resources.get(api_version="networking.k8s.io/v1", kind="IngressClass").get()
    assert {"admin", "public"} <= {c.metadata.name for c in classes.items}
    apply.prune(api, [], component="ingress", platform="ingress-test",
                kinds=apply.kinds(objects))  # fmt: skip
    apiserver.wait_namespaces_gone(list(ingress.CLASSES))
