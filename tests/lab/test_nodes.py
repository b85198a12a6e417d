"""Lab hosts that are Kubernetes nodes: what a kubelet and runc need of a host that is a
container (lab only, docs/kubernetes-lab.md §3-4), with the machine's own values untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubi import lab
from kubi.lab import machine, plan

from .conftest import address_of

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("role", ["control_plane", "workers"])
def test_a_node_gives_a_kubelet_what_it_needs(lab_state, role):
    node = address_of(lab_state, role)
    probe = lab.run_on(
        node,
        "systemctl is-active kubi-lab-node.service"
        " && for d in /sys/fs/cgroup/*/; do mkdir ${d}kubi-probe && rmdir ${d}kubi-probe"
        " || exit 1; done && echo cgroups-writable"
        " && cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic"
        " /proc/sys/kernel/panic_on_oops && test -c /dev/kmsg && test -d /lib/modules"
        " && systemctl show -p DefaultTimeoutStopUSec",
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.split() == [
        "active", "cgroups-writable", "1", "10", "1", "DefaultTimeoutStopUSec=10s",
    ]  # fmt: skip


def test_each_node_has_its_own_cgroup_in_every_controller(lab_state):
    nodes = [h for h in lab_state.hosts if h.role in plan.KUBERNETES_NODE_ROLES]
    for host in nodes:
        for directory in machine.host_cgroups(host.name):
            assert machine.cgroup_pids(directory), f"no process of {host.name} in {directory}"
    # Two kubelets would otherwise share (and fight over) the machine-wide kubepods cgroup.
    roots = {str(d.parent.parent) for d in machine.host_cgroups(nodes[0].name)}
    assert "/sys/fs/cgroup/memory" in roots and "/sys/fs/cgroup/cpuset" in roots


def test_the_machine_keeps_its_own_values(lab_state):
    for key, value in plan.KUBELET_PROC_SYS.items():
        machine_value = Path("/proc/sys", key).read_text().strip()
        # The node's value is a file of its own mounted over it; the machine's is untouched
        # (on this machine they differ; where they are equal, the node mounts nothing).
        node_sees = lab.run_on(address_of(lab_state, "workers"), f"cat /proc/sys/{key}")
        assert node_sees.stdout.strip() == value
        if machine_value != value:
            mounted = lab.run_on(address_of(lab_state, "workers"), f"mountpoint -q /proc/sys/{key}")
            assert mounted.returncode == 0, key


def test_service_hosts_keep_the_container_defaults(lab_state):
    argv = Path(f"/proc/{_nspawn_pid('lab-input')}/cmdline").read_bytes().split(b"\0")
    assert b"--capability=all" not in argv and b"--console=passive" in argv


def _nspawn_pid(name: str) -> int:
    return next(pid for pid, host in machine.nspawn_pids().items() if host == name)
