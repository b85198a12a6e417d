"""images: the platform's images in its own registry, and every node pulling through it."""

from __future__ import annotations

import shlex

import pytest

from kubi import images, registry

ACCEPT = "Accept: " + ", ".join(images.MANIFEST_TYPES)


def test_every_image_is_in_the_platform_registry(node, platform):
    for image in images.needed(platform):
        url = f"http://{registry.UPSTREAM}/v2/{image.repository}/manifests/{image.tag}"
        answer = node.check_output(
            f"curl -sSI -o /dev/null --max-time 10 -w '%{{http_code}} "
            f"%header{{docker-content-digest}}' -H {shlex.quote(ACCEPT)} {url}"
        )
        code, _, digest = answer.partition(" ")
        assert code == "200", f"{image.ref}: the platform registry answers {code}"
        if platform.images.archives is not None:  # copied as it is: the archive's digest
            archive = platform.images.archives / image.archive_name
            assert digest == images.archive_digest(archive), image.ref


@pytest.mark.roles("control_plane", "workers")
def test_each_upstream_registry_is_pulled_through_the_platform_registry(node, platform):
    for upstream in images.upstream_registries(platform):
        hosts = node.file(f"{registry.CONTAINERD_CERTS_DIR}/{upstream}/hosts.toml")
        assert hosts.mode == 0o600  # the pull account
        assert f'[host."{registry.url(platform)}/v2/{upstream}"]' in hosts.content_string
        assert "override_path = true" in hosts.content_string


@pytest.mark.roles("control_plane", "workers")
def test_a_node_pulls_the_pause_image_by_its_upstream_name(node, platform):
    """Through the node's registry configuration (as containerd's CRI pulls), in a
    namespace of its own that is removed after."""
    pause = next(i for i in images.needed(platform) if i.repository.endswith("/pause"))
    ctr = "ctr -n kubi-verify"
    try:
        out = node.check_output(
            f"{ctr} images pull --hosts-dir {registry.CONTAINERD_CERTS_DIR} {pause.ref}"
        )
        assert "done" in out
    finally:
        node.run(f"{ctr} images rm {pause.ref}; ctr namespaces rm kubi-verify")
