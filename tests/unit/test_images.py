"""Image names (kubi/images.py): what the platform registry keeps an image as, and the
images a platform needs."""

from __future__ import annotations

import copy

import pytest

from kubi import images
from kubi.config import matrices
from kubi.images import Image
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION

PINNED = "quay.io/cilium/cilium:v1.19.6@sha256:" + "a" * 64


def test_a_name_and_its_parts():
    image = Image("registry.k8s.io/coredns/coredns:v1.12.0")
    assert (image.registry, image.repository, image.tag, image.digest) == (
        "registry.k8s.io", "registry.k8s.io/coredns/coredns", "v1.12.0", None
    )  # fmt: skip
    assert image.archive_name == "coredns_v1.12.0.tar"


def test_a_name_pinned_by_digest_keeps_its_tag_for_the_registry():
    image = Image(PINNED)
    assert (image.repository, image.tag, image.digest) == (
        "quay.io/cilium/cilium", "v1.19.6", "sha256:" + "a" * 64
    )  # fmt: skip
    assert image.archive_name == "cilium_v1.19.6.tar"


@pytest.mark.parametrize(
    "ref",
    [
        "pause:3.10",  # no registry
        "registry.k8s.io/pause",  # no tag
        "registry.k8s.io/pause@sha256:" + "a" * 64,  # a digest alone: no tag to keep it under
        "registry.k8s.io/pause:3.10@sha256:" + "a" * 63,
        "registry.k8s.io/pause:3.10@sha512:" + "a" * 64,
        "registry.k8s.io/Pause:3.10",
        "registry.k8s.io/pause:3.10 ; rm -rf /",
        "registry.k8s.io/pause:3.10\n",
    ],
)
def test_anything_else_is_refused(ref):
    with pytest.raises(ValueError, match="is not an image name"):
        Image(ref)


def platform(**changes):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = "/nonexistent/kubi-test-secrets"
    description.update(changes)
    return declare(None, **description).config


def test_cilium_images_are_needed_only_when_it_is_the_pod_network():
    pinned = matrices.upstream_chart("cilium").images
    refs = [image.ref for image in images.needed(platform())]
    assert [ref for ref in refs if ref in pinned] == pinned
    # docker.io: the ingress; ghcr.io: the dashboard
    registries = ["registry.k8s.io", "quay.io", "docker.io", "ghcr.io"]
    assert images.upstream_registries(platform()) == registries
    bridge = platform(kubernetes={"pod_network": "bridge"})
    assert not {image.ref for image in images.needed(bridge)} & set(pinned)
    assert images.upstream_registries(bridge) == ["registry.k8s.io", "docker.io", "ghcr.io"]
    off = platform(components={"cilium": False})
    assert not {image.ref for image in images.needed(off)} & set(pinned)


def test_the_ingress_images_are_needed_only_with_the_ingress():
    ingress = matrices.upstream_chart("nginx-ingress").all_images
    assert ingress == ["docker.io/nginx/nginx-ingress:5.5.4"]
    assert set(ingress) <= {image.ref for image in images.needed(platform())}
    off = platform(components={"ingress": False, "dashboard": False})
    assert not {image.ref for image in images.needed(off)} & set(ingress)
    assert images.upstream_registries(off) == ["registry.k8s.io", "quay.io"]


def test_the_dashboard_image_is_needed_only_with_the_dashboard():
    headlamp = matrices.addon_image("dashboard")
    assert Image(headlamp).digest is not None  # pinned by digest
    assert headlamp in {image.ref for image in images.needed(platform())}
    off = platform(components={"dashboard": False})
    assert headlamp not in {image.ref for image in images.needed(off)}


def test_every_pin_of_the_chart_table_is_an_image_kubi_can_copy():
    for chart in matrices.upstream_charts().chart.values():
        for ref in chart.images:
            assert Image(ref).digest is not None


def test_a_pin_without_its_digest_is_refused_when_the_table_loads(tmp_path):
    chart = matrices.DATA_DIR / "upstream_charts.toml"
    unpinned = "quay.io/cilium/cilium:v1.19.6"
    text = chart.read_text().replace(matrices.upstream_chart("cilium").images[0], unpinned)
    (tmp_path / "upstream_charts.toml").write_text(text)
    with pytest.raises(matrices.MatrixError, match=r"chart\.cilium\.images\.0: must be an image"):
        matrices.load("upstream_charts", matrices.UpstreamCharts, tmp_path)
