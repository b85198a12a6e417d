"""Plans of deploys/cockpit.py: UIs and the API stream on the input host's 127.0.0.1."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

PATHS = (
    "/var/www/kubi-cockpit/index.html",
    "/etc/nginx/sites.conf.d/cockpit.conf",
    "/etc/nginx/streams.conf.d/kube-api.conf",
)


def facts(files=None):
    return {"kubi.facts.ManagedFile": {f"path={p}": (files or {}).get(p) for p in PATHS}}


def test_fresh_input_host(description, with_monitoring):
    description["groups"]["control_plane"] = [
        ("cp1", {"ip": "10.20.0.21"}), ("cp2", {"ip": "10.20.0.22"}), ("cp3", {"ip": "10.20.0.23"})
    ]  # fmt: skip
    lines = plan("deploys/cockpit.py", "in1", description, facts())
    written = uploads(lines)
    site = written["/etc/nginx/sites.conf.d/cockpit.conf"]
    stream = written["/etc/nginx/streams.conf.d/kube-api.conf"]
    # Bound to the loopback only, every UI by its own *.localhost name.
    assert {line.strip() for line in site.splitlines() if line.strip().startswith("listen")} == {
        "listen 127.0.0.1:8080 default_server;",
        "listen 127.0.0.1:8080;",
    }
    for ui in ("grafana", "prometheus", "graylog"):
        assert f"server_name {ui}.localhost {ui}.plan.kubi.internal;" in site
        assert f"proxy_set_header Host {ui}.plan.kubi.internal;" in site
    assert "upstream cockpit_admin_ingress {\n    server 10.20.0.31:30080 max_fails" in site
    assert "upstream cockpit_output {\n    server 10.20.0.12:80 max_fails" in site  # Graylog
    assert "proxy_set_header X-Graylog-Server-URL http://$http_host/;" in site
    assert site.count("X-Graylog-Server-URL") == 1  # only in Graylog's own route
    assert "listen 127.0.0.1:6443;" in stream
    for ip in ("10.20.0.21", "10.20.0.22", "10.20.0.23"):
        assert f"server {ip}:6443 max_fails=2 fail_timeout=10s;" in stream
    assert [line for line in lines if "nginx -t" in line and "reload-or-restart nginx" in line]


def test_converged_plans_nothing(description):
    written = uploads(plan("deploys/cockpit.py", "in1", description, facts()))
    assert plan("deploys/cockpit.py", "in1", description, facts(
        {p: managed(c) for p, c in written.items()}
    )) == []  # fmt: skip


@pytest.mark.parametrize("host", ["out1", "repo1", "cp1", "w1"])
def test_only_on_the_input_host(description, host):
    assert plan("deploys/cockpit.py", host, description, {}) == []


def test_routes_are_those_of_the_components_that_are_on(description, with_monitoring):
    """The cockpit renders what the list holds: no add-on, no route and no upstream."""
    description["components"] = {"monitoring": False, "graylog": False, "dashboard": False}
    site = uploads(plan("deploys/cockpit.py", "in1", description, facts()))[
        "/etc/nginx/sites.conf.d/cockpit.conf"
    ]
    assert "upstream cockpit_" not in site and "server_name localhost;" in site
    assert site.count("server_name") == 1 and ".localhost" not in site
    description["components"] = {"graylog": False, "dashboard": False}
    site = uploads(plan("deploys/cockpit.py", "in1", description, facts()))[
        "/etc/nginx/sites.conf.d/cockpit.conf"
    ]
    assert "server_name grafana.localhost grafana.plan.kubi.internal;" in site
    assert "cockpit_output" not in site and "graylog" not in site
