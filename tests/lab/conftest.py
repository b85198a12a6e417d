"""Lab tier: real Debian hosts (systemd-nspawn) on this machine, one fresh lab per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


LAB = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """Every test here is marked `lab`: the default run (`-m 'not lab'` in pyproject.toml)
    leaves them out; `pytest -m lab tests/lab` runs them.

    The lab's own life cycle test goes last: it re-creates the hosts, which would send
    every later test back to an unconverged lab. The cluster's tests go just before it: they
    grow the lab to three control planes and two workers, which the others do not need."""
    last = ("test_cluster.py", "test_lab_lifecycle.py")
    for item in items:
        if LAB in item.path.parents:
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: last.index(item.path.name) + 1 if item.path.name in last else 0)


@pytest.fixture(scope="session")
def lab_state():
    """A freshly created lab: converges start from scratch, as on new servers.

    KUBI_REUSE_LAB=1 reuses a running lab as it is (and leaves it up): quicker while
    developing; KUBI_KEEP_LAB=1 leaves the fresh lab up at the end.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (systemd-nspawn, network namespaces)")
    from kubi import lab

    reuse = os.environ.get("KUBI_REUSE_LAB") == "1" and lab.load_state() is not None
    if not reuse:
        lab.down()
    state = lab.up()
    yield state
    if not reuse and os.environ.get("KUBI_KEEP_LAB") != "1":
        lab.down()


def address_of(state, role: str) -> str:
    """The address of the (first) lab host of `role`."""
    return next(h for h in state.hosts if h.role == role).address


def pyinfra(
    *args: str, env: dict | None = None, inventory: str = "inventories/lab.py"
) -> subprocess.CompletedProcess:
    """Run the pyinfra CLI against the lab inventory (or a variant) from the project root."""
    return subprocess.run(
        [str(BIN / "pyinfra"), inventory, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _by_op(result: subprocess.CompletedProcess, outcome: str) -> dict[str, list[str]]:
    payload = json.loads(result.stdout)
    # Names read "deploys/seed.py | base packages": keep the operation's own name.
    return {
        op["name"].rpartition(" | ")[2]: op[outcome]
        for op in payload["results"]["operations"]
        if op[outcome]
    }


def changed_ops(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """From `pyinfra --json -y` output: operation name -> hosts where it changed something."""
    return _by_op(result, "success")


def failed_ops(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    return _by_op(result, "error")


def why_failed(result: subprocess.CompletedProcess) -> str:
    """What a failed pyinfra run says of its failure: the failed operations (from --json),
    every line of its output that reports an error, then the end of the output. The end
    alone often shows only the operations the other hosts went on with."""
    try:
        failed = f"failed operations: {failed_ops(result)}\n"
    except (ValueError, KeyError, TypeError):
        failed = ""
    marks = ("rror", "kubi:", "Failed", "failed", "Traceback", "stderr")
    lines = [line for line in result.stderr.splitlines() if any(m in line for m in marks)]
    return failed + "\n".join(lines[-60:]) + "\n...\n" + result.stderr[-2000:]
