"""Plans of deploys/ingress.py: both controllers' objects, once for the platform, from the
input host, planned by a dry run against the real API server of the unit tier (kubi's
tunnel stands aside for the fixture's direct client; it runs on the lab)."""

from __future__ import annotations

import logging

import pytest

from kubi.config.errors import ConfigError
from tests.unit.test_ingress import CHARTS, needs_chart

from .harness import plan


@pytest.fixture
def on(description):
    description["ingress"] = {"charts": str(CHARTS)}
    return description


@needs_chart
def test_planned_from_the_input_host_by_a_dry_run(on, direct, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    (line,) = plan("deploys/ingress.py", "in1", on, {})
    assert line.startswith("admin and public ingress (NGINX Ingress Controller chart 2.6.4): ")
    assert "FunctionCommand(converge" in line
    said = "\n".join(r.getMessage() for r in caplog.records)
    for controller in ("admin-ingress", "public-ingress"):
        assert f"in1: ingress: DaemonSet {controller}/{controller}-controller: created" in said
    assert "in1: ingress: IngressClass admin: created" in said


@pytest.mark.parametrize("host", ["out1", "repo1", "cp1", "w1"])
def test_nowhere_else(on, host):
    assert plan("deploys/ingress.py", host, on, {}) == []


def test_a_charts_folder_without_the_pinned_archive_is_a_config_error(on, tmp_path):
    on["ingress"] = {"charts": str(tmp_path)}
    with pytest.raises(ConfigError) as refused:
        plan("deploys/ingress.py", "in1", on, {})
    assert refused.value.problems == [
        f"ingress.charts: no {tmp_path}/nginx-ingress-2.6.4.tgz: put the chart archive there "
        "(https://helm.nginx.com/stable/nginx-ingress-2.6.4.tgz)"
    ]
