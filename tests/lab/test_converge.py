"""The real deploys on real hosts: converge, verify, converge again with no change."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kubi import components
from kubi.inventory import load

from .conftest import ROOT, changed_ops, failed_ops, pyinfra

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def first_run(lab_state):
    result = pyinfra("--json", "-y", "deploys/all.py")
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_first_converge_changes_every_host(first_run, lab_state):
    changed = changed_ops(first_run)
    assert failed_ops(first_run) == {}
    names = {h.name for h in lab_state.hosts}
    assert set(changed["system update and upgrade (seed.upgrade=first)"]) == names
    service_hosts = {h.name for h in lab_state.hosts if h.role in ("input", "output", "repository")}
    assert set(changed["nginx packages"]) == service_hosts
    # Every operation is named after the component that runs it.
    names = [op["name"] for op in json.loads(first_run.stdout)["results"]["operations"]]
    # (The cluster is off on a machine without Kubernetes binaries: see lab.platform.)
    enabled = {c.name for c in load("inventories/lab.py").config.enabled_components}
    assert {name.partition(" | ")[0] for name in names} == enabled


def test_verification_suites_pass(first_run):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/verify",
            "--inventory",
            "inventories/lab.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # The only tests allowed to skip: the log stack's, left out when its upstream
    # repositories cannot be reached from this machine, and the cluster's, left out without
    # Kubernetes binaries (the lab's notices say so).
    platform = load("inventories/lab.py").config
    allowed = ["tests/verify/test_graylog.py"]
    allowed += [c.verify_suite for c in components.COMPONENTS if not platform.enabled(c.name)]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all(any(suite in line for suite in allowed) for line in skipped), skipped


def test_second_run_reports_no_changes(first_run):
    planned = pyinfra("--json", "deploys/all.py")  # change detection only (dry)
    assert planned.returncode == 0, planned.stderr[-4000:]
    plan = json.loads(planned.stdout)["plan"]
    assert [op["name"] for op in plan if op["hosts_with_change"]] == []

    again = pyinfra("--json", "-y", "deploys/all.py")  # executed for real
    assert again.returncode == 0, again.stderr[-4000:]
    assert changed_ops(again) == {}
    assert failed_ops(again) == {}


def test_component_redeploys_alone(first_run):
    for component in components.NAMES:
        result = pyinfra("--json", "-y", f"deploys/{component}.py")
        assert result.returncode == 0, result.stderr[-4000:]
        assert changed_ops(result) == {}, component


def input_host(lab_state):
    return next(h for h in lab_state.hosts if h.role == "input")


def curl_on_input(lab_state) -> str:
    """Ask the input host's own nginx (the test site listens on its 127.0.0.1)."""
    from kubi import lab

    command = "curl -s --max-time 5 http://127.0.0.1:8081/"
    return lab.run_on(input_host(lab_state).address, command, timeout=30).stdout


def test_broken_site_is_refused_and_nginx_keeps_serving(first_run, lab_state):
    site = "tests/lab/deploys/probe_site.py"
    good = pyinfra("--json", "-y", site, env={"KUBI_TEST_SITE": "good"})
    assert good.returncode == 0, good.stderr[-3000:]
    assert curl_on_input(lab_state) == "kubi-ok"
    try:
        broken = pyinfra("-y", site, env={"KUBI_TEST_SITE": "broken"})
        assert broken.returncode != 0
        output = broken.stdout + broken.stderr
        assert 'unknown directive "retrun"' in output  # nginx's own message
        assert "refused the change; the previous configuration is kept" in output
        assert curl_on_input(lab_state) == "kubi-ok"
        # A re-run with the good version converges without a change: nothing was broken.
        again = pyinfra("--json", "-y", site, env={"KUBI_TEST_SITE": "good"})
        assert changed_ops(again) == {}
    finally:
        gone = pyinfra("--json", "-y", site, env={"KUBI_TEST_SITE": "absent"})
        assert gone.returncode == 0, gone.stderr[-3000:]
    assert curl_on_input(lab_state) == ""
