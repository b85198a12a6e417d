"""kubi's cheap stand-ins for two of pyinfra's costs per operation (kubi.deploy) give exactly
what pyinfra's own give: the operation order, for every operation of real plans, and the
global arguments."""

from __future__ import annotations

import importlib

import pytest
from pyinfra.api import util as pyinfra_util

from kubi import components, deploy

from .harness import run_order
from .test_seed_plan import fresh_facts

OPERATION = importlib.import_module("pyinfra.api.operation")
SLOW = pyinfra_util.get_operation_order_from_stack  # pyinfra's own, from inspect.stack()


@pytest.mark.parametrize("deploy_file", ["deploys/seed.py", "deploys/all.py"])
def test_the_order_is_pyinfras(description, monkeypatch, deploy_file):
    assert OPERATION.get_operation_order_from_stack is deploy._operation_order_from_stack
    compared: list[tuple[list[int], list[int]]] = []

    def both(state):
        # one line: the two see this frame at the same line
        pair = (deploy._operation_order_from_stack(state), SLOW(state))  # fmt: skip
        compared.append((list(pair[0]), list(pair[1])))  # pyinfra extends the one it gets
        return pair[1]

    monkeypatch.setattr(OPERATION, "get_operation_order_from_stack", both)
    # all.py: the seed alone (its facts are the case's), through the components' loop
    description["components"] = {name: name == "seed" for name in components.NAMES}
    order = run_order(deploy_file, description, {"cp1": fresh_facts()})
    assert len(order) > 5 and len(compared) >= len(order)
    for fast, slow in compared:
        assert fast == slow
    # multi-line calls and the components' order stubs were among them
    assert len({tuple(fast) for fast, _ in compared}) == len(compared)


def test_the_global_arguments_are_pyinfras():
    arguments = importlib.import_module("pyinfra.api.arguments")
    assert arguments.all_global_arguments is deploy._all_global_arguments
    own = list(arguments.get_type_hints(arguments.AllArguments).items())  # what pyinfra does
    assert deploy._all_global_arguments() == own and len(own) > 10
    deploy._all_global_arguments().clear()  # a caller's copy: the next one is whole
    assert deploy._all_global_arguments() == own
