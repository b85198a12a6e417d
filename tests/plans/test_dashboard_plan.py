"""Plans of deploys/dashboard.py: Headlamp's objects, once for the platform, from the input
host, planned by a dry run against the real API server of the unit tier."""

from __future__ import annotations

import logging

import pytest

from .harness import plan


def test_planned_from_the_input_host_by_a_dry_run(description, direct, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    (line,) = plan("deploys/dashboard.py", "in1", description, {})
    assert line.startswith("Kubernetes dashboard (Headlamp v0.44.0): ")
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "in1: dashboard: Deployment dashboard/headlamp: created" in said
    assert "in1: dashboard: Ingress dashboard/headlamp: created" in said


@pytest.mark.parametrize("host", ["out1", "repo1", "cp1", "w1"])
def test_nowhere_else(description, host):
    assert plan("deploys/dashboard.py", host, description, {}) == []
