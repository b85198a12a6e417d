"""Headlamp, the Kubernetes dashboard (kubi/dashboard.py): its objects, and a real API server
that accepts them, with its ServiceAccount bound to nothing."""

from __future__ import annotations

import copy

from kubi import apply, dashboard
from kubi.config import matrices
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION
from tests.unit.test_cilium import images


def platform():
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = "/nonexistent/kubi-test-secrets"
    return declare(None, **description).config


def one(objects, kind):
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_behind_the_admin_ingress_at_its_cockpit_name():
    objects = dashboard.objects(platform())
    rule = one(objects, "Ingress")["spec"]
    assert rule["ingressClassName"] == "admin"
    assert rule["rules"][0]["host"] == "dashboard.plan.kubi.internal"  # the cockpit's Host
    assert [r.name for r in platform().ui_routes if r.backend == "admin_ingress"] == ["dashboard"]
    namespace = one(objects, "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    assert images(objects) == [matrices.addon_image("dashboard")]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "-in-cluster" in args and "-unsafe-use-service-account-token" not in args
    # no RBAC at all: the dashboard acts with each person's own token
    assert not [o for o in objects if "rbac" in o["apiVersion"]]


def test_applied_to_a_real_api_server_then_nothing_changes_and_it_has_no_rights(apiserver):
    objects = dashboard.objects(platform())
    api = apply.dynamic_client(apiserver.api_client())
    first = apply.apply(api, objects, component="dashboard", platform="dash-test")
    assert {a.action for a in first.objects} == {"created"}
    again = apply.apply(api, objects, component="dashboard", platform="dash-test")
    assert {a.action for a in again.objects} == {"unchanged"}
    review = api.resources.get(
        api_version="authorization.k8s.io/v1", kind="SubjectAccessReview"
    ).create(
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{dashboard.NAMESPACE}:{dashboard.NAME}",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {"verb": "list", "resource": "secrets"},
            },
        }
    )
    assert review.status.allowed is not True
    apply.prune(api, [], component="dashboard", platform="dash-test", kinds=dashboard.KINDS)
    apiserver.wait_namespaces_gone([dashboard.NAMESPACE])
