"""testinfra verification suites, run unchanged against the lab or any environment.

    pytest tests/verify --inventory inventories/lab.py
    pytest tests/verify --inventory inventories/prod.py

The inventory is loaded (and validated) exactly as pyinfra loads it. `test_<component>.py`
verifies the component of that name (`kubi.components`): each test runs once per platform
host that carries one of the component's roles, or of the roles of its own `roles` marker,
and is skipped when the platform has the component off. SSH goes through a
generated ssh_config with connection sharing, so a suite costs one SSH handshake per host.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra

from kubi import components
from kubi.inventory import load

ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("KUBI_INVENTORY", str(ROOT / "inventories" / "lab.py")),
        help="kubi inventory to verify (default: $KUBI_INVENTORY or inventories/lab.py)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "roles(*roles): run on hosts with one of these roles")


def _declared(config):
    if not hasattr(config, "_kubi_declared"):
        config._kubi_declared = load(config.getoption("--inventory"))
    return config._kubi_declared


def component_of(path: Path) -> components.Component:
    """The component a suite verifies, by its file name: test_<component>.py."""
    return components.get(path.stem.removeprefix("test_"))


def pytest_generate_tests(metafunc):
    if "node" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("roles")
    roles = set(marker.args) if marker else set(component_of(metafunc.definition.path).roles)
    hosts = [h.name for h in _declared(metafunc.config).config.hosts if roles & set(h.roles)]
    metafunc.parametrize("node_name", hosts, scope="session")


def pytest_collection_modifyitems(config, items):
    platform = None
    for item in items:
        name = component_of(item.path).name
        platform = platform or _declared(config).config
        if not platform.enabled(name):
            item.add_marker(pytest.mark.skip(reason=f"component {name} is off in this platform"))


@pytest.fixture(scope="session")
def platform(request):
    return _declared(request.config).config


@pytest.fixture(scope="session")
def ssh_config(request, tmp_path_factory):
    declared = _declared(request.config)
    path = tmp_path_factory.mktemp("ssh") / "config"
    ssh = declared.config.ssh
    known_hosts = ssh.known_hosts_file or "~/.ssh/known_hosts"
    entries = []
    for host in declared.config.hosts:
        entries += [
            f"Host {host.name}",
            f"  HostName {host.address}",
            f"  User {host.ssh_user}",
            f"  Port {host.ssh_port}",
            *([f"  IdentityFile {host.ssh_key}", "  IdentitiesOnly yes"] if host.ssh_key else []),
            f"  StrictHostKeyChecking {ssh.strict_host_key_checking}",
            f"  UserKnownHostsFile {known_hosts}",
            f"  ConnectTimeout {ssh.connect_timeout}",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  ControlMaster auto",
            f"  ControlPath {path.parent}/cm-%C",
            "  ControlPersist 120s",
        ]
    path.write_text("\n".join(entries) + "\n")
    return path


@pytest.fixture(scope="session")
def spec(platform, node_name):
    """The host's part of the validated config."""
    return platform.host(node_name)


@pytest.fixture(scope="session")
def node(spec, ssh_config):
    """A testinfra host for the platform host under test."""
    return testinfra.get_host(
        f"ssh://{spec.name}", ssh_config=str(ssh_config), sudo=spec.ssh_user != "root"
    )
