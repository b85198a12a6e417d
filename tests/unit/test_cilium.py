"""Cilium's objects (kubi/cilium.py), rendered from the pinned upstream chart by Helm's own
engine, and accepted by a real API server in a server-side dry run.

The chart archive comes from outside the checkout, as the Kubernetes binaries do: charts
are never vendored. `KUBI_LAB_CHARTS` (default /var/cache/kubi-charts) holds
cilium-<version>.tgz; docs/lab.md says where it comes from."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest

from kubi import apply, cilium, upstream_charts
from kubi.config import matrices
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION

CHARTS = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))
needs_chart = pytest.mark.skipif(
    not (CHARTS / cilium.archive_name()).is_file(),
    reason=f"no {CHARTS / cilium.archive_name()} (KUBI_LAB_CHARTS): put Cilium's pinned chart "
    "archive there as docs/lab.md says",
)


def images(objects: list[dict]) -> list[str]:
    """Every image the objects' pods run, in order, once each."""
    found: list[str] = []
    for obj in objects:
        spec = (obj.get("spec") or {}).get("template", {}).get("spec", {})
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            if container["image"] not in found:
                found.append(container["image"])
    return found


@pytest.fixture
def platform(tmp_path):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = str(tmp_path / "s")
    return declare(None, **description).config


@needs_chart
def test_rendered_from_the_pinned_chart_with_the_platforms_values(platform):
    objects = cilium.render(platform, CHARTS)
    assert objects == cilium.render(platform, CHARTS)  # the same twice: a re-run changes nothing
    config = next(o for o in objects if o["metadata"]["name"] == "cilium-config")["data"]
    assert config["ipam"] == "kubernetes"
    assert config["enable-hubble"] == "false"
    agent = next(
        o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "cilium"
    )
    env = {
        e["name"]: e.get("value") for e in agent["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (
        "kube-api.plan.kubi.internal", "6444"
    )  # every node's own api_proxy  # fmt: skip
    operator = next(o for o in objects if o["kind"] == "Deployment")
    assert operator["spec"]["replicas"] == 2
    version = matrices.upstream_chart("cilium").version
    assert all(
        image.startswith("quay.io/cilium/") and "@sha256:" in image for image in images(objects)
    )
    assert f"quay.io/cilium/cilium:v{version}@sha256:" in " ".join(images(objects))
    # exactly the images kubi copies into the platform registry (`kubi images mirror`)
    assert sorted(images(objects)) == sorted(matrices.upstream_chart("cilium").images)
    assert {o["metadata"].get("namespace") for o in objects} <= {
        "kube-system",
        "cilium-secrets",
        None,
    }


@needs_chart
def test_the_api_server_accepts_every_object_in_a_dry_run(platform, apiserver):
    """What the issue asks of the production CNI where its images cannot run: its objects,
    as kubi renders them, pass a real API server's validation and admission."""
    objects = cilium.render(platform, CHARTS)
    api = apply.dynamic_client(apiserver.api_client())
    result = apply.apply(api, objects, component="cilium", platform="cilium-dry", dry_run=True)
    assert len(result.objects) == len(objects)
    assert {a.action for a in result.objects} == {"created"}
    assert not [o for o in api.resources.get(api_version="apps/v1", kind="DaemonSet").get(
        namespace="kube-system").items if o.metadata.name == "cilium"]  # fmt: skip


@needs_chart
def test_an_archive_that_is_not_the_pinned_one_is_refused(platform, tmp_path):
    copy_ = tmp_path / cilium.archive_name()
    shutil.copy(CHARTS / cilium.archive_name(), copy_)
    copy_.write_bytes(copy_.read_bytes() + b"\0")
    with pytest.raises(
        upstream_charts.UpstreamChartError, match=r"sha256 [0-9a-f]{64}, not the pinned"
    ):
        cilium.render(platform, tmp_path)


def test_a_missing_archive_says_where_it_comes_from(platform, tmp_path):
    with pytest.raises(upstream_charts.UpstreamChartError) as missing:
        cilium.render(platform, tmp_path)
    assert str(missing.value) == (
        f"no {tmp_path / cilium.archive_name()}: put the chart archive there "
        f"(https://helm.cilium.io/{cilium.archive_name()})"
    )


def test_the_pin_is_whole():
    pinned = matrices.upstream_chart("cilium")
    assert pinned.repository == "https://helm.cilium.io/"
    assert len(pinned.digest) == 64
