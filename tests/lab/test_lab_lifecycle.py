"""The lab's own life cycle on this machine: up, idempotent up, down leaves nothing, down again.

Other lab tests share one lab per session through a fixture. This test takes the lab down in
the middle, so it runs last (tests/lab/conftest.py) and brings the same lab back at the end
(same host names and addresses, new host keys, which `up` records in the lab's known_hosts).
"""

from __future__ import annotations

import os

import pytest

from kubi import lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the lab needs root (network namespaces, mounts, cgroups)"
    ),
]


def _shape(state: lab.LabState) -> dict[str, int]:
    control_planes = sum(h.role == "control_plane" for h in state.hosts)
    return {"total": len(state.hosts), "control_planes": control_planes}


@pytest.fixture
def lab_restored():
    """Bring back the lab that was running before the test, if any (see module docstring)."""
    before = lab.load_state()
    was_up = before is not None and all(row["running"] for row in lab.status())
    yield
    if was_up:
        lab.up(**_shape(before))


def test_up_up_down_down(lab_restored):
    state = lab.up()
    assert lab.leftovers(), "a running lab must show up in leftovers()"
    for host in state.hosts:
        answer = lab.run_on(host.address, "hostname && systemctl is-system-running", timeout=60)
        assert answer.stdout.split()[0] == host.name, answer.stderr
        # degraded is acceptable in a container; starting/stopping is not
        assert answer.stdout.split()[1] in ("running", "degraded"), answer.stdout

    lines: list[str] = []
    again = lab.up(total=len(state.hosts), control_planes=_shape(state)["control_planes"],
                   log=lines.append)  # fmt: skip
    assert again.hosts == state.hosts
    assert any("0 started" in line for line in lines), lines

    lab.down()
    assert lab.leftovers() == []
    assert lab.load_state() is None
    assert lab.status() == []
    lab.down()  # idempotent
    assert lab.leftovers() == []
