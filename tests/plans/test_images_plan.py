"""Plans of deploys/images.py: the platform's images copied into its registry by skopeo on
the repository host, from archives on the deployer or from upstream, only when missing."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from kubi.config import matrices
from kubi.config.errors import ConfigError
from kubi.images import Image

from .harness import plan

DEPLOY = "deploys/images.py"
REFS = [
    "registry.k8s.io/kube-apiserver:v1.33.3",
    "registry.k8s.io/kube-controller-manager:v1.33.3",
    "registry.k8s.io/kube-scheduler:v1.33.3",
    "registry.k8s.io/kube-proxy:v1.33.3",
    "registry.k8s.io/pause:3.10",
    "registry.k8s.io/etcd:3.5.21-0",
    "registry.k8s.io/coredns/coredns:v1.12.0",
]
# Cilium's, the default pod network, pinned by digest as its chart renders them
CILIUM = matrices.upstream_chart("cilium").images
REFS += CILIUM
# the ingress controllers', by tag (upstream publishes no digest for it)
INGRESS = matrices.upstream_chart("nginx-ingress").all_images
REFS += INGRESS
REFS += [matrices.addon_image("dashboard")]  # Headlamp, pinned by digest


def digest_of(ref: str) -> str:
    """The digest of an image's build: its pin, or one made up for it."""
    return Image(ref).digest or "sha256:" + format(abs(hash(ref)), "x").rjust(64, "0")[-64:]


def write_archive(folder, ref, digest=None):
    """An OCI archive whose index names one manifest, as skopeo and the lab write them."""
    index = {"schemaVersion": 2, "manifests": [{"digest": digest or digest_of(ref), "size": 1}]}
    data = json.dumps(index).encode()
    with tarfile.open(folder / Image(ref).archive_name, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def facts(held=None, refs=REFS):
    key = "refs=" + ",".join(refs)
    return {
        "deb.DebPackages": {"_": {"skopeo": ["1.9.3+ds1-1+b10"]}},
        "facts.images.PlatformRegistryImages": {key: held or {ref: None for ref in refs}},
    }


@pytest.fixture
def on(description):
    description["versions"] = {"kubernetes": "1.33.3"}
    description["containerd"] = {"source": "debian"}  # runs 1.33 (Debian 12)
    description["components"] = {"images": True}
    return description


def copies(lines):
    return [line for line in lines if "skopeo copy" in line]


def test_from_upstream_every_platform_of_each_image(on):
    lines = copies(plan(DEPLOY, "repo1", on, facts()))
    assert len(lines) == len(REFS)
    assert lines[0] == (
        "image registry.k8s.io/kube-apiserver:v1.33.3: sh -c 'skopeo copy --quiet --all "
        "--dest-tls-verify=false docker://registry.k8s.io/kube-apiserver:v1.33.3 "
        "docker://127.0.0.1:5000/registry.k8s.io/kube-apiserver:v1.33.3'"
    )
    # skopeo reads no name with both a tag and a digest: a pinned image is read by digest,
    # kept as it is, and tagged as its chart names it.
    agent = Image(CILIUM[0])
    assert agent.repository == "quay.io/cilium/cilium"
    assert lines[REFS.index(agent.ref)] == (
        f"image {agent.ref}: sh -c 'skopeo copy --quiet --all --preserve-digests "
        f"--dest-tls-verify=false docker://quay.io/cilium/cilium@{agent.digest} "
        f"docker://127.0.0.1:5000/quay.io/cilium/cilium:{agent.tag}'"
    )


def test_from_archives_uploaded_then_copied_as_they_are(on, tmp_path):
    for ref in REFS:
        write_archive(tmp_path, ref)
    on["images"] = {"archives": str(tmp_path)}
    lines = plan(DEPLOY, "repo1", on, facts())
    pause = [line for line in lines if line.startswith("image registry.k8s.io/pause:3.10:")]
    assert pause[0].startswith("image registry.k8s.io/pause:3.10: upload /var/tmp/kubi-image-")
    assert pause[0].endswith(f'.tar <<"{tmp_path}/pause_3.10.tar"')
    assert "skopeo copy --quiet --preserve-digests --dest-tls-verify=false" in pause[1]
    assert "docker://127.0.0.1:5000/registry.k8s.io/pause:3.10" in pause[1]
    assert pause[1].count("rm -f /var/tmp/kubi-image-") == 1  # the upload never stays


def test_a_registry_holding_the_archives_digests_plans_nothing(on, tmp_path):
    for ref in REFS:
        write_archive(tmp_path, ref)
    on["images"] = {"archives": str(tmp_path)}
    held = {ref: digest_of(ref) for ref in REFS}
    assert plan(DEPLOY, "repo1", on, facts(held)) == []
    held["registry.k8s.io/pause:3.10"] = "sha256:" + "0" * 64  # an older build of it
    assert [line.split(":")[0] for line in copies(plan(DEPLOY, "repo1", on, facts(held)))] == [
        "image registry.k8s.io/pause"
    ]


def test_upstream_images_already_held_are_kept(on):
    held = {ref: Image(ref).digest or "sha256:" + "1" * 64 for ref in REFS}
    assert plan(DEPLOY, "repo1", on, facts(held)) == []


def test_a_pinned_image_held_at_another_digest_is_copied_again(on):
    held = {ref: Image(ref).digest or "sha256:" + "1" * 64 for ref in REFS}
    held[CILIUM[1]] = "sha256:" + "2" * 64  # the tag moved upstream, or a local rebuild
    assert [line.split(": sh")[0] for line in copies(plan(DEPLOY, "repo1", on, facts(held)))] == [
        f"image {CILIUM[1]}"
    ]


def test_an_archive_of_a_pinned_image_must_hold_that_digest(on, tmp_path):
    for ref in REFS:
        write_archive(tmp_path, ref)
    write_archive(tmp_path, CILIUM[0], digest="sha256:" + "3" * 64)
    on["images"] = {"archives": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"cilium_v1\.19\.6\.tar holds sha256:3{64}, not "):
        plan(DEPLOY, "repo1", on, facts())


def test_with_the_bridge_pod_network_no_cilium_image_is_copied(on):
    # the lab's: the cilium component stays on, and leaves itself out
    on["kubernetes"] = {"pod_network": "bridge"}
    refs = [ref for ref in REFS if ref not in CILIUM]
    assert len(copies(plan(DEPLOY, "repo1", on, facts(refs=refs)))) == len(refs)


def test_without_coredns_its_image_is_not_copied(on):
    on["kubernetes"] = {"coredns": False}
    refs = [ref for ref in REFS if "coredns" not in ref]
    assert len(copies(plan(DEPLOY, "repo1", on, facts(refs=refs)))) == len(refs)


def test_a_missing_archive_stops_before_anything(on, tmp_path):
    write_archive(tmp_path, REFS[0])
    on["images"] = {"archives": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"no .*/pause_3\.10\.tar for registry\.k8s\.io/pause"):
        plan(DEPLOY, "repo1", on, facts())


def test_a_broken_archive_is_named(on, tmp_path):
    for ref in REFS:
        write_archive(tmp_path, ref)
    (tmp_path / "etcd_3.5.21-0.tar").write_text("not a tar")
    on["images"] = {"archives": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"etcd_3\.5\.21-0\.tar: not an OCI image archive"):
        plan(DEPLOY, "repo1", on, facts())


def test_off_by_default_and_only_on_the_repository_host(on):
    assert plan(DEPLOY, "repo1", {**on, "components": {}}, {}) == []
    for host in ("in1", "out1", "cp1", "w1"):
        assert plan(DEPLOY, host, on, {}) == []
