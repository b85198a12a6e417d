"""Plan a deploy file for one host from given facts, without any connection.

The idea of pyinfra's own operation tests, applied to whole deploys: the facts a host
would report are data, and the result is the exact list of operations and commands
pyinfra would run. A fact the deploy asks for but the case does not give is an error
naming it, so a case always states everything the plan depends on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyinfra
from pyinfra.api import Config, FileUploadCommand, Inventory, State
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state

from kubi.facts import ManagedFile, ManagedFiles
from kubi.inventory import declare

ROOT = Path(__file__).resolve().parents[2]


class MissingFact(KeyError):
    pass


def _fact_key(kwargs: dict[str, Any]) -> str:
    """Facts are keyed like pyinfra's tests: 'path=/etc/hosts', several joined by ', '."""
    return ", ".join(f"{k}={_plain(v)}" for k, v in sorted(kwargs.items())) or "_"


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _prepared(description: dict) -> tuple[Inventory, State]:
    """The platform's pyinfra inventory and a state ready to plan, as the CLI makes them."""
    declared = declare(None, **description)
    groups = {role: (hosts, {}) for role, hosts in declared.pyinfra_groups().items()}
    inventory = Inventory(([h.name for h in declared.config.hosts], {}), **groups)
    state = State(inventory, Config())
    state.set_stage(StateStage.Prepare)
    return inventory, state


def plan(
    deploy: str,
    host_name: str,
    description: dict,
    facts: dict[str, dict[str, Any]],
    components: bool = False,
    reads: list[str] | None = None,
    others: tuple[str, ...] = (),
) -> list[str]:
    """Return the planned commands as lines: '<operation name>: <command>'.

    Operation names are the operations' own; with `components`, they carry the component
    that runs them as pyinfra shows it ('seed | base packages'). `reads`, when given,
    collects the name of each fact read on the host: the round trips of the plan, then of
    the execution (listing the commands runs each operation again, as executing does).
    `others`: hosts also part of the run (connected), whose facts a deploy may read.
    """
    inventory, state = _prepared(description)
    host = inventory.get_host(host_name)
    state.activate_host(host)
    for name in others:
        state.activate_host(inventory.get_host(name))

    def fake_get_fact(self: Host, cls, *args, **kwargs):
        if cls is ManagedFiles:  # several ManagedFile in one round trip: the case gives each
            if reads is not None and self is host:
                reads.append(cls.name)
            return {p: fake_get_fact(self, ManagedFile, path=p, batched=True)
                    for p in kwargs["paths"]}  # fmt: skip
        batched = kwargs.pop("batched", False)
        # Facts of other hosts (e.g. their address) are looked up under "<host>:<fact>".
        table = facts.get(cls.name if self is host else f"{self.name}:{cls.name}")
        if reads is not None and self is host and not batched:
            reads.append(cls.name)
        key = _fact_key(kwargs)
        if table is None or key not in table:
            raise MissingFact(f"case gives no fact {cls.name} [{key}] for {self.name}")
        return table[key]

    original = Host.get_fact
    Host.get_fact = fake_get_fact
    try:
        with ctx_state.use(state), ctx_host.use(host):
            source = (ROOT / deploy).read_text()
            exec(compile(source, str(ROOT / deploy), "exec"), {"__file__": str(ROOT / deploy)})
            lines = []
            for op_hash in state.get_op_order():
                if op_hash not in state.ops[host]:
                    continue
                names = sorted(state.op_meta[op_hash].names)
                if not components:
                    names = [name.rpartition(" | ")[2] for name in names]
                op_name = ", ".join(names)
                for command in state.ops[host][op_hash].command_generator():
                    lines.append(f"{op_name}: {_show(command)}")
            return lines
    finally:
        Host.get_fact = original


def _show(command: Any) -> str:
    if isinstance(command, FileUploadCommand):
        content = (
            command.src.getvalue().decode() if hasattr(command.src, "getvalue") else command.src
        )
        staged = command.remote_temp_filename
        via = f" via {staged.rpartition('/')[0]}/" if staged else ""
        return f"upload {command.dest}{via} <<{json.dumps(content)}"
    return str(command.get_raw_value() if hasattr(command, "get_raw_value") else command)


def uploads(lines: list[str]) -> dict[str, str]:
    """Files a plan writes, by final path, with their content (to build converged facts)."""
    found = {}
    for line in lines:
        _, _, command = line.partition(": ")
        if command.startswith("upload "):
            dest, _, content = command[len("upload ") :].partition(" <<")
            dest = dest.partition(" via ")[0]
            found[dest.removesuffix(".kubi-new")] = json.loads(content)
    return found


def run_order(
    deploy: str, description: dict, facts_of: dict[str, dict[str, dict[str, Any]]]
) -> list[tuple[str, list[str]]]:
    """The operations of a run of `deploy` over the hosts of `facts_of` (host -> its facts),
    in the order pyinfra executes them, each with the hosts that have it: what one host's
    plan cannot show, the order between operations of different hosts."""
    inventory, state = _prepared(description)
    for name in facts_of:
        state.activate_host(inventory.get_host(name))

    def fake_get_fact(self: Host, cls, *args, **kwargs):
        if cls is ManagedFiles:  # several ManagedFile in one round trip: the case gives each
            return {p: fake_get_fact(self, ManagedFile, path=p) for p in kwargs["paths"]}
        table = facts_of.get(self.name, {}).get(cls.name)
        key = _fact_key(kwargs)
        if table is None or key not in table:
            raise MissingFact(f"case gives no fact {cls.name} [{key}] for {self.name}")
        return table[key]

    # As the CLI orders operations: by the deploy file's call stack lines, not per host.
    state.current_deploy_filename = str(ROOT / deploy)
    state.current_op_file_number = 0
    original, was_cli = Host.get_fact, pyinfra.is_cli
    Host.get_fact, pyinfra.is_cli = fake_get_fact, True
    try:
        with ctx_state.use(state):
            source = (ROOT / deploy).read_text()
            for name in facts_of:
                with ctx_host.use(inventory.get_host(name)):
                    exec(
                        compile(source, str(ROOT / deploy), "exec"),
                        {"__file__": str(ROOT / deploy)},
                    )
            order = []
            for op_hash in state.get_op_order():
                hosts = [h.name for h in inventory if op_hash in state.ops.get(h, {})]
                op_names = sorted(n.rpartition(" | ")[2] for n in state.op_meta[op_hash].names)
                order.append((", ".join(op_names), hosts))
            return order
    finally:
        Host.get_fact, pyinfra.is_cli = original, was_cli
