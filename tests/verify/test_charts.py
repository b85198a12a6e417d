"""charts: the Helm chart repository, served read-only by the repository TLS server."""

from __future__ import annotations

import pytest

from kubi import registry

CURL = "curl -sS --max-time 10"


def test_chart_folder_and_index(node, platform):
    folder = node.file(platform.charts.path)
    assert folder.is_directory and folder.mode == 0o755
    index = node.file(f"{platform.charts.path.rstrip('/')}/index.yaml")
    assert index.mode == 0o644
    assert "apiVersion: v1" in index.content_string


def test_location_inside_the_repository_server(node):
    full = node.check_output("nginx -T 2>/dev/null")
    assert f"# configuration file {registry.EXTENSION_DIR}/charts.conf:" in full
    assert "location /charts/ {" in full


def test_reads_follow_the_pull_policy_and_nothing_is_written(node, platform):
    url = f"{registry.charts_url(platform)}index.yaml"
    code = node.check_output(f"{CURL} -o /dev/null -w '%{{http_code}}' {url}")
    assert code == ("200" if platform.registry.anonymous_pull else "401")
    put = node.check_output(f"{CURL} -o /dev/null -w '%{{http_code}}' -X PUT -d x {url}")
    assert put in ("401", "403")


@pytest.mark.roles("control_plane", "workers")
def test_index_served_to_the_nodes(node, platform):
    """A node reads the index with the pull account it holds (none with anonymous pulls)."""
    folder = registry.containerd_dir(platform)
    # the first of its two equal copies (the [host] entry's and the fallback server's)
    header = (
        f"sed -n 's/^ *Authorization = \"\\(.*\\)\"$/Authorization: \\1/p' {folder}/hosts.toml"
        " | head -n 1"
    )
    url = f"{registry.charts_url(platform)}index.yaml"
    index = node.check_output(f"{header} | {CURL} -f -H @- {url}")
    assert index.startswith("apiVersion: v1")
