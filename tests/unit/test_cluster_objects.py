"""`ops.cluster_objects`: a component's objects as a pyinfra operation, against the real
API server of the unit tier. pyinfra plans it by a server-side dry run (a converged
component plans nothing), and its one command applies, prunes and waits. kubi's tunnel
(kubi/kubeapi.py) stands aside here for the fixture's direct client; it runs on the lab."""

from __future__ import annotations

import logging

import pytest
from pyinfra.api import FunctionCommand
from pyinfra.context import ctx_host, ctx_state

from kubi import ops
from tests.plans.conftest import DESCRIPTION
from tests.plans.harness import _prepared

KINDS = [("v1", "ConfigMap"), ("v1", "Namespace")]


def objects(namespace: str, **data: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": name, "namespace": namespace}, "data": {"v": value}}
            for name, value in data.items()
        ),
    ]  # fmt: skip


def planned(description: dict, rendered: list[dict]) -> list:
    """The commands pyinfra plans for the operation on the input host."""
    inventory, state = _prepared(description)
    host = inventory.get_host("in1")
    state.activate_host(host)
    with ctx_state.use(state), ctx_host.use(host):
        ops.cluster_objects(name="probe objects", component="probe", objects=rendered, kinds=KINDS)
        return [c for op in state.ops[host].values() for c in op.command_generator()]


@pytest.fixture(autouse=True)
def shown(caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")  # pyinfra's CLI shows its info lines


@pytest.fixture
def description(request):
    name = request.node.name.replace("_", "-")[5:40].strip("-")
    return {**DESCRIPTION, "name": name}


def test_planned_by_dry_run_then_converged_then_nothing_to_do(direct, description, caplog):
    namespace = f"{description['name']}-ns"
    first = planned(description, objects(namespace, a="1"))
    (command,) = first
    assert isinstance(command, FunctionCommand)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert f"probe: ConfigMap {namespace}/a: created" in said  # before anything changed
    assert namespace not in _names(direct, "Namespace")  # a dry run

    command.function()
    assert _data(direct, namespace, "a") == {"v": "1"}
    assert planned(description, objects(namespace, a="1")) == []


def test_a_changed_and_a_dropped_object_are_shown_then_applied_and_pruned(
    direct, description, caplog
):
    namespace = f"{description['name']}-ns"
    planned(description, objects(namespace, a="1", b="1"))[0].function()
    caplog.clear()
    (command,) = planned(description, objects(namespace, a="2"))
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert f"probe: ConfigMap {namespace}/a: changed" in said and "+  v: '2'" in said
    assert f"probe: ConfigMap {namespace}/b: pruned (no longer rendered)" in said
    assert _data(direct, namespace, "b") == {"v": "1"}  # planning changed nothing

    command.function()
    assert _data(direct, namespace, "a") == {"v": "2"}
    assert _data(direct, namespace, "b") is None
    assert planned(description, objects(namespace, a="2")) == []


def _names(api, kind: str) -> list[str]:
    found = api.resources.get(api_version="v1", kind=kind).get()
    return [item.metadata.name for item in found.items]


def _data(api, namespace: str, name: str) -> dict | None:
    resource = api.resources.get(api_version="v1", kind="ConfigMap")
    try:
        return dict(resource.get(name=name, namespace=namespace).data)
    except Exception:  # noqa: BLE001  (not found)
        return None


def test_before_the_cluster_exists_the_objects_are_planned_from_the_render(
    description, caplog, monkeypatch
):
    """A first converge plans before the run made the cluster: nothing answers at the API's
    address, so the objects are shown as rendered and applied when executing."""
    from contextlib import contextmanager

    from kubi import apply

    @contextmanager
    def nothing_there(declared):
        raise apply.ApiUnreachable("discovery at https://127.0.0.1:1: the API server could not")
        yield

    monkeypatch.setattr("kubi.kubeapi.connected", nothing_there)
    (command,) = planned(description, objects("early-ns", a="1"))
    assert isinstance(command, FunctionCommand)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "in1: probe: 2 objects, applied once the cluster's API answers" in said
