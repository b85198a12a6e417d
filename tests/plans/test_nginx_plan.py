"""Plans of deploys/nginx.py: installed empty on service hosts, nothing elsewhere."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

DIRS = ("/etc/nginx/sites.conf.d", "/etc/nginx/streams.conf.d")


def fresh_facts():
    return {
        "deb.DebPackages": {"_": {}},
        "files.Directory": {f"path={d}": None for d in DIRS},
        "kubi.facts.ManagedFile": {
            "path=/etc/nginx/sites-enabled/default": None,
            "path=/etc/nginx/nginx.conf": None,
        },
        "kubi.facts.ServiceState": {"unit=nginx": {"active": False, "enabled": None}},
    }


def converged_facts(description, host):
    conf = uploads(plan("deploys/nginx.py", host, description, fresh_facts()))[
        "/etc/nginx/nginx.conf"
    ]
    return {
        "deb.DebPackages": {"_": {"nginx": ["1.22.1"], "libnginx-mod-stream": ["1.22.1"]}},
        "files.Directory": {
            f"path={d}": {"mode": 755, "user": "root", "group": "root"} for d in DIRS
        },
        "kubi.facts.ManagedFile": {
            "path=/etc/nginx/sites-enabled/default": None,
            "path=/etc/nginx/nginx.conf": managed(conf),
        },
        "kubi.facts.ServiceState": {"unit=nginx": {"active": True, "enabled": True}},
    }


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_fresh_service_host(description, host):
    lines = plan("deploys/nginx.py", host, description, fresh_facts())
    assert lines[0].startswith("nginx packages: ") and lines[0].endswith(
        "install nginx libnginx-mod-stream"
    )
    # The package creates the default site during this run: pyinfra reads the fact again
    # when it executes the operation (the lab tier proves the site is gone).
    conf = uploads(lines)["/etc/nginx/nginx.conf"]
    assert "include /etc/nginx/sites.conf.d/*.conf;" in conf
    assert "stream {" in conf and "include /etc/nginx/streams.conf.d/*.conf;" in conf
    assert "server_tokens off;" in conf
    install = [line for line in lines if line.startswith("nginx.conf: sh -c")][0]
    assert (
        "if out=$(nginx -t 2>&1); then" in install
        and "systemctl reload-or-restart nginx" in install
    )


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_converged_service_host_plans_nothing(description, host):
    assert plan("deploys/nginx.py", host, description, converged_facts(description, host)) == []


@pytest.mark.parametrize("host", ["cp1", "w1"])
def test_cluster_nodes_get_no_nginx(description, host):
    assert plan("deploys/nginx.py", host, description, {}) == []


def test_default_site_put_back_by_hand_is_removed_again(description):
    facts = converged_facts(description, "in1")
    facts["kubi.facts.ManagedFile"]["path=/etc/nginx/sites-enabled/default"] = managed("server {}")
    assert plan("deploys/nginx.py", "in1", description, facts) == [
        "no default site: sh -c 'rm -f /etc/nginx/sites-enabled/default'"
    ]


def test_worker_connections_from_config(description):
    description["nginx"] = {"worker_connections": 4096}
    conf = uploads(plan("deploys/nginx.py", "in1", description, fresh_facts()))[
        "/etc/nginx/nginx.conf"
    ]
    assert "worker_connections 4096;" in conf
