"""Every object an add-on renders, checked before any cluster sees it:

- strictly against the schemas of the platform's Kubernetes version (kubernetes-validate:
  an unknown field or a wrong type fails, which a server-side apply would only say on a
  real cluster), custom resources against the schema of their CRD;
- against kubi's policy (kubi/policy.py): requests and limits on every container, and no
  privilege the add-on does not declare with its reason.

The add-ons rendered from an upstream chart need the chart's archive (KUBI_LAB_CHARTS, as
in test_cilium.py) and skip with one line without it."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from kubi import cilium, dashboard, ingress, policy, upstream_charts, userspaces
from kubi.config import Platform
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION
from tests.unit.test_userspaces import PEOPLE, SPACES

CHARTS = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))


def platform(version: str | None = None) -> Platform:
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = "/nonexistent/kubi-test-secrets"
    description["users"] = PEOPLE
    description["userspaces"] = {"spaces": SPACES}
    description["groups"]["workers"] = [("w1", {"ip": "10.20.0.31"}), ("w2", {"ip": "10.20.0.32"})]
    if version:  # an older minor, with the containerd that runs it
        description["versions"] = {"kubernetes": version}
        description["containerd"] = {"source": "debian"}
    return declare(None, **description).config


# add-on -> (its render, the archive it needs or None, its declared privileges)
ADDONS: dict[str, tuple[Callable[[Platform], list[dict[str, Any]]], str | None, policy.Needs]] = {
    "userspaces": (userspaces.objects, None, {}),
    "dashboard": (dashboard.objects, None, dashboard.NEEDS),
    "cilium": (lambda p: cilium.render(p, CHARTS), cilium.archive_name(), cilium.NEEDS),
    "ingress": (
        lambda p: ingress.render(p, CHARTS),
        upstream_charts.archive_name(ingress.CHART),
        ingress.NEEDS,
    ),
}


def rendered(name: str, cfg: Platform) -> list[dict[str, Any]]:
    render, archive, _ = ADDONS[name]
    if archive and not (CHARTS / archive).is_file():
        pytest.skip(f"no {CHARTS / archive} (KUBI_LAB_CHARTS): see docs/lab.md")
    return render(cfg)


def schema_problems(objects: list[dict[str, Any]], version: str) -> list[str]:
    """What the schemas refuse in `objects`: the version's own schemas, and for a custom
    resource the openAPIV3Schema its CRD (among `objects`) serves."""
    crds = {}
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            spec = obj["spec"]
            for served in spec["versions"]:
                key = (f"{spec['group']}/{served['name']}", spec["names"]["kind"])
                crds[key] = served["schema"]["openAPIV3Schema"]
    problems = []
    for obj in objects:
        what = policy.workload(obj)
        schema = crds.get((obj["apiVersion"], obj["kind"]))
        try:
            if schema is not None:
                body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
                jsonschema.validate(body, schema)
            else:
                kubernetes_validate.validate(obj, version, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as error:
            where = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{what}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{what}: {error.message}")
    return problems


def test_schema_validation_can_fail():
    """The check below is no formality: a misspelt field, a wrong type and a custom resource
    that breaks its CRD's schema each fail."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    assert schema_problems([cm], "1.33.3") == []
    typo = {**cm, "dta": {"a": "b"}}
    assert "dta" in " ".join(schema_problems([typo], "1.33.3"))
    wrong = {**cm, "data": {"a": 1}}
    assert schema_problems([wrong], "1.33.3") != []
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.org"},
        "spec": {
            "group": "example.org", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "size": {"type": "integer"}}}},
                }},
            }],
        },
    }  # fmt: skip
    widget = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert schema_problems([crd, {**widget, "spec": {"size": 3}}], "1.33.3") == []
    assert "size" in " ".join(schema_problems([crd, {**widget, "spec": {"size": "3"}}], "1.33.3"))
    # a custom resource whose CRD is nowhere is refused too
    assert schema_problems([{**widget, "spec": {"size": 3}}], "1.33.3") != []


def test_the_policy_can_fail():
    pod = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "a"},
        "spec": {"template": {"spec": {
            "hostNetwork": True,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{
                "name": "web", "image": "web:1",
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"},
                },
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
            }],
        }}},
    }  # fmt: skip
    assert policy.problems([pod], {}) == [
        "Deployment a/web: container web has no limits for cpu",
        "Deployment a/web: uses hostNetwork, which nothing declares",
        "Deployment a/web: uses hostPath /, which nothing declares",
        "Deployment a/web: uses web: as root, which nothing declares",
        "Deployment a/web: uses web: capability NET_ADMIN, which nothing declares",
        "Deployment a/web: uses web: may escalate, which nothing declares",
    ]
    needs = {"Deployment a/web": policy.each(["hostNetwork", "hostPID"], "a test")}
    assert "Deployment a/web: declares hostPID, which it no longer uses" in policy.problems(
        [pod], needs
    )
    gone = {"Deployment a/gone": {"hostNetwork": "a test"}}
    assert "Deployment a/gone: declared, but not rendered" in policy.problems([pod], gone)


@pytest.mark.parametrize("name", sorted(ADDONS))
@pytest.mark.parametrize("version", [None, "1.33.3"])  # the default, the lab's
def test_every_rendered_object_fits_the_schemas_of_the_platforms_kubernetes(name, version):
    cfg = platform(version)
    objects = rendered(name, cfg)
    assert objects
    assert schema_problems(objects, cfg.versions.kubernetes) == []


@pytest.mark.parametrize("name", sorted(ADDONS))
def test_every_container_has_requests_and_limits_and_only_declared_privileges(name):
    objects = rendered(name, platform())
    assert policy.problems(objects, ADDONS[name][2]) == []
