"""Plans of deploys/api_proxy.py: haproxy in front of the API servers, on every node."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

CONFIG = "/etc/haproxy/haproxy.cfg"
HOSTS = ["127.0.0.1\tlocalhost", "10.20.0.31\tw1"]


def facts(config=None, installed=None, active=False, hosts=HOSTS):
    return {
        "files.FileContents": {"path=/etc/hosts": hosts},
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ManagedFile": {f"path={CONFIG}": config},
        "kubi.facts.ServiceState": {"unit=haproxy": {"active": active, "enabled": active}},
    }


@pytest.fixture
def three(description):
    description["groups"]["control_plane"] = [
        (f"cp{i}", {"ip": f"10.20.0.2{i}"}) for i in (1, 2, 3)
    ]
    return description


def test_fresh_node_reaches_every_control_plane_through_its_loopback(three):
    lines = plan("deploys/api_proxy.py", "w1", three, facts())
    written = uploads(lines)
    # The API name is this node's own 127.0.0.1, never a control plane's address.
    assert written["/etc/hosts"].splitlines()[2:] == [
        "# BEGIN kubi api_proxy",
        "127.0.0.1\tkube-api.plan.kubi.internal",
        "# END kubi api_proxy",
    ]
    config = written[CONFIG]
    assert "    bind 127.0.0.1:6444\n" in config
    servers = [line.split() for line in config.splitlines() if line.strip().startswith("server ")]
    assert servers == [["server", f"cp{i}", f"10.20.0.2{i}:6443"] for i in (1, 2, 3)]
    assert "http-check send meth GET uri /readyz" in config  # only API servers that are ready
    install = [line for line in lines if line.startswith("haproxy configuration:")][-1]
    assert install.index("haproxy -c -q -f /etc/haproxy/haproxy.cfg") < install.index(
        "systemctl reload haproxy"
    )


def test_the_control_planes_run_it_too(three):
    assert CONFIG in uploads(plan("deploys/api_proxy.py", "cp2", three, facts()))


def test_converged_plans_nothing(three):
    written = uploads(plan("deploys/api_proxy.py", "w1", three, facts()))
    hosts = written.pop("/etc/hosts").splitlines()
    current = facts(managed(written[CONFIG]), {"haproxy": ["2.6.12"]}, True, hosts)
    assert plan("deploys/api_proxy.py", "w1", three, current) == []


def test_another_port(three):
    three["api_proxy"] = {"port": 7443}
    assert (
        "    bind 127.0.0.1:7443\n"
        in uploads(plan("deploys/api_proxy.py", "w1", three, facts()))[CONFIG]
    )


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_only_on_kubernetes_nodes(three, host):
    assert plan("deploys/api_proxy.py", host, three, {}) == []
