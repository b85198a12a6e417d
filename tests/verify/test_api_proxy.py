"""api_proxy: every node reaches the Kubernetes API on its own 127.0.0.1."""

from __future__ import annotations


def test_haproxy_runs_on_the_loopback_only(node, platform):
    service = node.service("haproxy")
    assert service.is_running and service.is_enabled
    sockets = node.check_output("ss -Hltnp | grep '\"haproxy\"' | awk '{print $4}'")
    assert sockets.split() == [f"127.0.0.1:{platform.api_proxy.port}"]


def test_the_api_name_is_this_node_itself(node, platform):
    assert node.check_output(f"getent -s files hosts {platform.api_name}").split()[0] == (
        "127.0.0.1"
    )


def test_every_control_plane_is_a_backend(node, platform):
    assert node.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    config = node.file("/etc/haproxy/haproxy.cfg").content_string
    servers = [
        line.split()[1] for line in config.splitlines() if line.strip().startswith("server ")
    ]
    assert servers == [h.short_name for h in platform.role("control_plane")]
