"""Shared platform and facts for deploy plan tests."""

from __future__ import annotations

import copy
import hashlib

import pytest

from kubi import components

DESCRIPTION = {
    "name": "plan",
    "domain": "plan.kubi.internal",
    "apt_proxy": "http://10.20.0.1:3142",
    "groups": {
        "input": [("in1", {"ip": "10.20.0.11"})],
        "output": [("out1", {"ip": "10.20.0.12"})],
        "repository": [("repo1", {"ip": "10.20.0.13"})],
        "control_plane": [("cp1", {"ip": "10.20.0.21"})],
        "workers": [("w1", {"ip": "10.20.0.31"})],
    },
}


def managed(content: str, mode: str = "644") -> dict:
    """The ManagedFile fact of a file that already holds `content`."""
    return {
        "mode": mode,
        "user": "root",
        "group": "root",
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
    }


@pytest.fixture
def description():
    return copy.deepcopy(DESCRIPTION)


# An in-cluster add-on as the next issues add them (its deploy does not exist yet): its UIs
# are entries of the component list, and the cockpit and the output host render them.
MONITORING = components.Component(
    "monitoring",
    "Prometheus and Grafana",
    roles=("control_plane",),
    settings=None,
    ui=(
        components.UiRoute("grafana", "Grafana", backend="admin_ingress"),
        components.UiRoute("prometheus", "Prometheus", backend="admin_ingress", output_host=True),
    ),
)


@pytest.fixture
def with_monitoring(monkeypatch):
    """The component list with the monitoring add-on at its end."""
    monkeypatch.setattr(components, "COMPONENTS", (*components.COMPONENTS, MONITORING))
    monkeypatch.setattr(components, "NAMES", (*components.NAMES, MONITORING.name))
