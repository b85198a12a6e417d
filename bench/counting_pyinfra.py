# ruff: noqa: I001  (pyinfra_cli is imported first on purpose, see below)
"""Run the pyinfra CLI while counting SSH commands and uploads per host, and timing where the
run's wall time goes.

    python bench/counting_pyinfra.py RECORD.json inventories/lab.py deploys/all.py -y

Every fact and every operation command is one `run_shell_command` (one SSH exec channel
over the host's single connection); every upload is one `put_file` (SFTP).

The record (read by `bench/converge.py --breakdown`) also holds:
- ``stages``: when pyinfra entered each stage (connect, prepare = plan, execute, disconnect);
- ``plan``: per host, the seconds each component's deploy function took while planning
  (its facts and its own work, with the other hosts' planning interleaved);
- ``facts``: each fact call (host, fact, seconds, stage): pyinfra runs an operation's
  function again when it executes it, which may ask its facts again;
- ``ops``: each operation of the execute stage: its name (``<component> | <operation>``),
  its wall time, and when each host finished it (hosts wait for the slowest before the
  next operation).
"""

from __future__ import annotations

# First, as the pyinfra command does: pyinfra_cli patches the standard library for gevent
# when imported, and a module imported before (threading, socket) would stay unpatched,
# mixing real threads with greenlets (runs that hang).
import pyinfra_cli  # noqa: F401

import atexit
import functools
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from pyinfra.api import facts as pyinfra_facts
from pyinfra.api import host as pyinfra_host
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback, State, StateStage

commands: Counter[str] = Counter()
uploads: Counter[str] = Counter()
stages: dict[str, float] = {}
plan: dict[str, dict[str, float]] = defaultdict(dict)
fact_calls: list[tuple[str, str, float, str]] = []
ops: dict[str, dict] = {}
T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def _count(counter: Counter[str], original):
    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        counter[self.name] += 1
        return original(self, *args, **kwargs)

    return wrapper


Host.run_shell_command = _count(commands, Host.run_shell_command)  # type: ignore[method-assign]
Host.put_file = _count(uploads, Host.put_file)  # type: ignore[method-assign]


def _timed_fact(original):
    @functools.wraps(original)
    def wrapper(state, host, cls, *args, **kwargs):
        start = time.monotonic()
        try:
            return original(state, host, cls, *args, **kwargs)
        finally:
            stage = StateStage(state.current_stage).name.lower()
            fact_calls.append((host.name, cls.__name__, time.monotonic() - start, stage))

    return wrapper


pyinfra_host.get_fact = _timed_fact(pyinfra_facts.get_fact)  # what Host.get_fact calls

_set_stage = State.set_stage


def _record_stage(self, stage):
    stages.setdefault(StateStage(stage).name.lower(), now())
    return _set_stage(self, stage)


State.set_stage = _record_stage  # type: ignore[method-assign]


class OperationTimes(BaseStateCallback):
    @staticmethod
    def operation_start(state, op_hash):
        names = sorted(state.get_op_meta(op_hash).names)
        ops[op_hash] = {"name": names[0] if names else op_hash, "start": now(), "hosts": {}}

    @staticmethod
    def operation_host_success(state, host, op_hash, retry_count=0):
        ops[op_hash]["hosts"][host.name] = now()

    @staticmethod
    def operation_host_error(state, host, op_hash, *args, **kwargs):
        ops[op_hash]["hosts"][host.name] = now()

    @staticmethod
    def operation_end(state, op_hash):
        ops[op_hash]["end"] = now()


_init = State.init


def _init_with_times(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback_handler(OperationTimes())


State.init = _init_with_times  # type: ignore[method-assign]


def _time_components() -> None:
    """Time each component's deploy function per host while pyinfra plans."""
    from pyinfra import host

    from kubi import deploy

    choose = deploy.deploy_function

    def timed_deploy_function(spec):
        function = choose(spec)

        def timed(*args, **kwargs):
            start = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                plan[host.name][spec.name] = time.monotonic() - start

        return timed

    deploy.deploy_function = timed_deploy_function


def _write(out: Path) -> None:
    out.write_text(
        json.dumps(
            {
                "commands": commands,
                "uploads": uploads,
                "stages": stages,
                "end": now(),
                "plan": plan,
                "facts": fact_calls,
                "ops": list(ops.values()),
            }
        )
    )


if __name__ == "__main__":
    out = Path(sys.argv.pop(1))
    atexit.register(_write, out)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _time_components()
    from pyinfra_cli.main import main

    sys.argv[0] = "pyinfra"
    sys.exit(main())
