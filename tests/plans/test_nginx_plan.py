"""Plans of deploys/nginx.py: installed empty on service hosts, nothing elsewhere."""

from __future__ import annotations

from collections import Counter

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
        "facts.nginx.NginxState": {
            "_": {"active": False, "enabled": None, "installed": False, "refused": None}
        },
        # nginx is not installed yet: the service operation reads its state itself.
        "kubi.facts.ServiceState": {"unit=nginx": {"active": False, "enabled": None}},
    }


HEALTHY = {"active": True, "enabled": True, "installed": True, "refused": None}
STRAY = {
    "file": "/etc/nginx/streams.conf.d/x.conf",
    "line": 1,
    "error": 'unknown directive "garbage"',
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
        "facts.nginx.NginxState": {"_": dict(HEALTHY)},
    }


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_fresh_service_host(description, host):
    lines = plan("deploys/nginx.py", host, description, fresh_facts())
    assert lines[0].startswith("nginx packages: ") and (
        "install nginx libnginx-mod-stream 2>&1)" in lines[0]
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


def test_converged_host_checks_nginx_at_no_round_trip_more(description):
    reads: list[str] = []
    assert (
        plan(
            "deploys/nginx.py", "in1", description, converged_facts(description, "in1"), reads=reads
        )
        == []
    )
    # The deploy reads nginx's state and `nginx -t` once, in place of the service
    # operation's reads of ServiceState. kubi's operations ask a fact once while nothing
    # changed the host (planning, then executing): the packages once; the first file alone
    # (the second is not called yet), the second with every file named so far
    # (ManagedFiles). pyinfra's files.directory asks when planned and again when executed.
    assert Counter(reads) == {
        "facts.nginx.NginxState": 1,
        "deb.DebPackages": 1,
        "files.Directory": 4,
        "kubi.facts.ManagedFile": 1,
        "kubi.facts.ManagedFiles": 1,
    }


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_a_file_nginx_refuses_fails_the_host_naming_it(description, host):
    """A stray file kubi does not own: nothing else to do, yet every reload would fail."""
    facts = converged_facts(description, host)
    facts["facts.nginx.NginxState"]["_"]["refused"] = STRAY
    assert plan("deploys/nginx.py", host, description, facts) == [
        "nginx accepts its configuration: echo 'kubi: nginx refuses "
        '/etc/nginx/streams.conf.d/x.conf:1 (unknown directive "garbage"), so every '
        "reload would fail: fix or remove that file, then run again' >&2; exit 1"
    ]


def test_a_refusal_without_a_file_names_nginx_error(description):
    facts = converged_facts(description, "in1")
    facts["facts.nginx.NginxState"]["_"]["refused"] = {
        "file": None,
        "line": None,
        "error": 'cannot load certificate "/etc/nginx/tls/x.pem"',
    }
    [line] = plan("deploys/nginx.py", "in1", description, facts)
    assert line.endswith(
        'nginx refuses its configuration (cannot load certificate "/etc/nginx/tls/x.pem"), '
        "so every reload would fail: fix what nginx names, then run again' >&2; exit 1"
    )


def test_a_new_nginx_conf_is_left_to_its_own_check(description):
    """nginx.conf missing (or another version): kubi writes it and nginx -t checks the whole
    configuration then, failing with nginx's own message if a stray file is still broken."""
    facts = converged_facts(description, "in1")
    facts["kubi.facts.ManagedFile"]["path=/etc/nginx/nginx.conf"] = None
    facts["facts.nginx.NginxState"]["_"]["refused"] = {
        "file": "/etc/nginx/nginx.conf",
        "line": None,
        "error": 'open() "/etc/nginx/nginx.conf" failed (2: No such file or directory)',
    }
    lines = plan("deploys/nginx.py", "in1", description, facts)
    assert [line.partition(": ")[0] for line in lines] == ["nginx.conf", "nginx.conf"]
    assert "if out=$(nginx -t 2>&1); then" in lines[1]


def test_a_missing_module_is_installed_not_refused(description):
    """kubi's nginx.conf loads the stream module: a package the run installs mends it."""
    facts = converged_facts(description, "in1")
    facts["deb.DebPackages"]["_"] = {"nginx": ["1.22.1"]}
    facts["facts.nginx.NginxState"]["_"]["refused"] = {
        "file": "/etc/nginx/nginx.conf",
        "line": 30,
        "error": 'unknown directive "stream"',
    }
    lines = plan("deploys/nginx.py", "in1", description, facts)
    assert [line.partition(": ")[0] for line in lines] == ["nginx packages"]


def test_a_stopped_nginx_is_started_from_the_state_read_with_the_check(description):
    facts = converged_facts(description, "in1")
    facts["facts.nginx.NginxState"]["_"]["active"] = False
    assert plan("deploys/nginx.py", "in1", description, facts) == [
        "nginx running: systemctl start nginx"
    ]


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
