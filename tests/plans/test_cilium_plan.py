"""Plans of deploys/cilium.py: Cilium's objects, once for the platform, from the input
host, planned by a dry run against the real API server of the unit tier (kubi's tunnel
stands aside for the fixture's direct client; it runs on the lab)."""

from __future__ import annotations

import logging

import pytest

from kubi.config.errors import ConfigError
from tests.unit.test_cilium import CHARTS, needs_chart

from .harness import plan


@pytest.fixture
def on(description):
    description["cilium"] = {"charts": str(CHARTS)}
    return description


@needs_chart
def test_planned_from_the_input_host_by_a_dry_run(on, direct, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    (line,) = plan("deploys/cilium.py", "in1", on, {})
    assert line.startswith("Cilium 1.19.6: ") and "FunctionCommand(converge" in line
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "in1: cilium: DaemonSet kube-system/cilium: created" in said


@pytest.mark.parametrize("host", ["out1", "repo1", "cp1", "w1"])
def test_nowhere_else(on, host):
    assert plan("deploys/cilium.py", host, on, {}) == []


def test_left_out_with_the_bridge_pod_network(on, caplog):
    on["kubernetes"] = {"pod_network": "bridge"}
    assert plan("deploys/cilium.py", "in1", on, {}) == []
    assert "cilium: kubernetes.pod_network is bridge: Cilium is left out" in caplog.text


@needs_chart
def test_a_kubernetes_minor_upstream_does_not_test_cilium_on_is_said(on, direct, caplog):
    on["versions"] = {"kubernetes": "1.36.3"}  # the default; Cilium 1.19 is tested to 1.35
    plan("deploys/cilium.py", "in1", on, {})
    assert (
        "cilium: cilium 1.19.6 is tested upstream on Kubernetes 1.32 to 1.35, not 1.36 "
        "(kubi/config/upstream_charts.toml)" in caplog.text
    )
    caplog.clear()
    on["versions"] = {"kubernetes": "1.35.7"}
    plan("deploys/cilium.py", "in1", on, {})
    assert "is tested upstream" not in caplog.text


def test_a_charts_folder_without_the_pinned_archive_is_a_config_error(on, tmp_path):
    on["cilium"] = {"charts": str(tmp_path)}
    with pytest.raises(ConfigError) as refused:
        plan("deploys/cilium.py", "in1", on, {})
    assert refused.value.problems == [
        f"cilium.charts: no {tmp_path}/cilium-1.19.6.tgz: put the chart archive there "
        "(https://helm.cilium.io/cilium-1.19.6.tgz)"
    ]
