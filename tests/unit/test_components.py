"""The component list is the one place that names the components: everything else matches."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kubi import components
from kubi.config import Settings, validate
from tests.plans.conftest import DESCRIPTION

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", components.COMPONENTS, ids=components.NAMES)
def test_each_component_has_its_files_by_its_name(spec):
    deploy = ROOT / spec.deploy_file
    tree = ast.parse(deploy.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert spec.name in functions, f"{spec.deploy_file} defines no function {spec.name}()"
    decorators = [ast.unparse(d) for d in functions[spec.name].decorator_list]
    assert decorators == [f"component({spec.name!r})"]
    assert f"if entry_script(__name__):\n    {spec.name}()" in deploy.read_text()
    assert (ROOT / spec.verify_suite).is_file()
    assert (ROOT / "tests" / "plans" / f"test_{spec.name}_plan.py").is_file()
    if spec.settings is not None:
        assert spec.settings in Settings.model_fields
        if spec.settings == spec.name:
            assert (ROOT / "kubi" / "config" / f"{spec.name}.py").is_file()
    for needed in spec.needs:
        assert components.NAMES.index(needed) < components.NAMES.index(spec.name)


def test_nothing_outside_the_list():
    deploys = {p.stem for p in (ROOT / "deploys").glob("*.py")} - {"all", "__init__"}
    suites = {p.stem.removeprefix("test_") for p in (ROOT / "tests" / "verify").glob("test_*.py")}
    templates = {p.name for p in (ROOT / "templates").iterdir() if p.is_dir()}
    assert deploys == set(components.NAMES)
    assert suites == set(components.NAMES)
    assert templates <= set(components.NAMES)


def test_unknown_or_broken_switches_are_refused():
    raw = {**DESCRIPTION, "components": {"graylgo": False, "nginx": False}}
    with pytest.raises(Exception) as refused:
        validate(raw, source="t")
    message = str(refused.value)
    assert "field 'components.graylgo': unknown component (did you mean 'graylog'?)" in message
    # nginx off while the components that need it are switched on: each one named.
    raw["components"] = {"nginx": False, "cockpit": True, "registry": True, "graylog": True}
    with pytest.raises(Exception) as refused:
        validate(raw, source="t")
    for user in ("cockpit", "registry", "graylog"):
        assert f"{user} is on but nginx, which it needs, is off" in str(refused.value)


def test_components_left_out_with_what_they_need_are_said(caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        platform = validate({**DESCRIPTION, "components": {"nginx": False}}, source="t")
    assert not platform.enabled("cockpit") and not platform.enabled("registry")
    said = caplog.text
    assert "t: components: cockpit is off: it needs nginx, which is off" in said
    assert "t: components: kubernetes is off: it needs containerd, which is off" in said
    assert "t: components: cilium is off: it needs kubernetes and cockpit, which are off" in said


def test_switches_pick_the_components_in_order():
    platform = validate({**DESCRIPTION, "components": {"graylog": False}}, source="t")
    assert [c.name for c in platform.enabled_components] == [
        c.name for c in components.COMPONENTS if c.default and c.name != "graylog"
    ]
    assert [r.name for r in platform.ui_routes] == ["dashboard"]
    assert [r.name for r in validate(DESCRIPTION, source="t").ui_routes] == [
        "dashboard", "graylog"
    ]  # fmt: skip


def test_what_runs_in_the_cluster_is_off_with_kubernetes_unless_switched_on():
    off = validate({**DESCRIPTION, "components": {"kubernetes": False}}, source="t")
    for name in ("cilium", "userspaces", "ingress", "dashboard"):
        assert not off.enabled(name), name
    assert off.enabled("containerd") and off.enabled("cockpit")
    # switched on by name, a component whose need is off is a config error, as before
    with pytest.raises(Exception, match="ingress is on but kubernetes, which it needs, is off"):
        validate({**DESCRIPTION, "components": {"kubernetes": False, "ingress": True}}, "t")
    # and the dashboard follows the ingress it is reached through
    assert not validate({**DESCRIPTION, "components": {"ingress": False}}, "t").enabled("dashboard")


def test_a_component_that_is_off_changes_nothing_and_says_so(caplog):
    import logging

    from tests.plans.harness import plan

    description = {**DESCRIPTION, "components": {"graylog": False}}
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        assert plan("deploys/graylog.py", "out1", description, {}) == []
    # Loading the platform may add its own notice (a Kubernetes minor past end of life).
    assert [r.getMessage() for r in caplog.records if "component" in r.getMessage()] == [
        "out1: component graylog is off in this platform (components.graylog = false); "
        "nothing to do"
    ]


def test_a_component_plans_nothing_outside_its_roles():
    from tests.plans.harness import plan

    for host in ("in1", "repo1", "cp1", "w1"):
        assert plan("deploys/graylog.py", host, DESCRIPTION, {}) == []


def test_a_components_operations_come_after_those_of_the_components_before_it(monkeypatch):
    """pyinfra orders operations by the line numbers of the stack that made them, whatever
    the files: a component later in the list whose operations sit on low lines of its own
    file must still come after one earlier in the list with high lines."""
    import types

    import pyinfra
    from pyinfra.api.util import get_operation_order_from_stack

    from kubi.deploy import _in_order

    run = types.SimpleNamespace(current_deploy_filename=__file__, current_op_file_number=0)
    monkeypatch.setattr(pyinfra, "is_cli", True)

    def low_line():
        return get_operation_order_from_stack(run)

    def padding():  # keeps high_line's call below low_line's in this file
        return None

    def high_line():
        return get_operation_order_from_stack(run)

    # one line, as deploys/all.py calls every component
    earlier, later = _in_order(3, high_line), _in_order(5, low_line)
    assert tuple(earlier) < tuple(later)
    plain_high, plain_low = high_line(), low_line()
    assert tuple(plain_low) < tuple(plain_high)  # without it, the other way round
