"""cockpit: every UI and the Kubernetes API behind the input host's 127.0.0.1 only."""

from __future__ import annotations

import re


def listeners(node, port: int) -> set[str]:
    out = node.check_output(f"ss -Htln 'sport = :{port}'")
    return {line.split()[3] for line in out.splitlines()}


def test_bound_to_the_loopback_only(node, platform):
    assert listeners(node, platform.cockpit.port) == {f"127.0.0.1:{platform.cockpit.port}"}
    assert listeners(node, platform.cockpit.api_port) == {f"127.0.0.1:{platform.cockpit.api_port}"}


def test_landing_page_lists_every_ui(node, platform):
    page = node.check_output(f"curl -sf http://127.0.0.1:{platform.cockpit.port}/")
    for route in platform.ui_routes:
        assert f"http://{route.name}.localhost:{platform.cockpit.port}/" in page


def test_each_ui_has_its_route_and_no_other(node, platform):
    """The routes are exactly those the components that are on declare (kubi.components)."""
    full = node.check_output("nginx -T 2>/dev/null")
    for route in platform.ui_routes:
        # nginx answers for the name (a 502 while the UI itself is not running).
        code = node.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {route.name}.localhost' "
            f"http://127.0.0.1:{platform.cockpit.port}/"
        )
        assert code in ("200", "301", "302", "401", "502", "503", "504"), (route.name, code)
        assert f"server_name {route.name}.localhost {platform.ui_hostname(route.name)};" in full
    assert len(re.findall(r"server_name \S+\.localhost ", full)) == len(platform.ui_routes)


def test_api_stream_balances_every_control_plane(node, platform):
    full = node.check_output("nginx -T 2>/dev/null")
    stream = full[full.index("upstream cockpit_kube_api") :]
    stream = stream[: stream.index("}")]
    assert stream.count(":6443 max_fails=") == len(platform.role("control_plane"))
