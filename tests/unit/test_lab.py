"""Pure parts of the lab: planning, naming, parsing and the safety checks. No root, no network:
everything that would touch the machine is replaced by canned command output."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from kubi import lab
from kubi.lab import LabError, LabHost, LabState, hosts, machine, plan, platform

# `ip -4 route show table all` and `ip -4 -o addr` of a lab machine with the lab up.
ROUTES_WITH_LAB = """\
default via 192.0.2.1 dev eth0
10.77.0.0/24 dev kubibr0 proto kernel scope link src 10.77.0.1
blackhole 10.77.0.0/16
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
local 10.77.0.1 dev kubibr0 table local proto kernel scope host src 10.77.0.1
broadcast 10.77.0.255 dev kubibr0 table local proto kernel scope link src 10.77.0.1
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
64: kubibr0    inet 10.77.0.1/24 scope global kubibr0\\       valid_lft forever
""".splitlines()
RESOLV = "nameserver 10.255.255.53\n"

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED_MOUNTINFO = """\
25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
90 80 0:50 / /srv/other/cgroup rw,relatime - cgroup2 cgroup2 rw
"""


# --- planning ------------------------------------------------------------------------------


def test_default_plan_has_one_host_per_role_from_dot_11():
    hosts = lab.plan_hosts()
    assert [(h.name, h.role, h.address) for h in hosts] == [
        ("lab-input", "input", "10.77.0.11"),
        ("lab-output", "output", "10.77.0.12"),
        ("lab-repository", "repository", "10.77.0.13"),
        ("lab-cp1", "control_plane", "10.77.0.14"),
        ("lab-worker1", "workers", "10.77.0.15"),
    ]


def test_extra_hosts_become_workers_and_extra_control_planes_are_numbered():
    hosts = lab.plan_hosts(total=10, control_planes=3)
    names = [h.name for h in hosts]
    assert names[3:6] == ["lab-cp1", "lab-cp2", "lab-cp3"]
    assert names[6:] == ["lab-worker1", "lab-worker2", "lab-worker3", "lab-worker4"]
    assert {h.role for h in hosts} == set(lab.ROLES)
    addresses = [ipaddress.ip_address(h.address) for h in hosts]
    assert len(set(addresses)) == 10
    assert all(a in lab.SUBNET and str(a) != lab.GATEWAY for a in addresses)


@pytest.mark.parametrize(
    ("total", "control_planes", "words"),
    [(4, 1, "use 5 or more"), (6, 3, "use 7 or more"), (5, 0, "at least one"), (300, 1, "fit")],
)
def test_impossible_plans_are_refused_with_advice(total, control_planes, words):
    with pytest.raises(LabError, match=words):
        lab.plan_hosts(total, control_planes)


def test_growing_keeps_running_hosts_and_their_addresses():
    kept = lab.plan_hosts(5)
    grown = lab.assign_hosts(kept, lab.plan_hosts(7))
    assert grown[:5] == kept
    assert [(h.name, h.address) for h in grown[5:]] == [
        ("lab-worker2", "10.77.0.16"),
        ("lab-worker3", "10.77.0.17"),
    ]


def test_new_host_whose_planned_address_is_taken_gets_a_free_one():
    kept = lab.plan_hosts(5)  # lab-worker1 holds .15
    grown = lab.assign_hosts(kept, lab.plan_hosts(6, control_planes=2))  # plans lab-cp2 at .15
    by_name = {h.name: h.address for h in grown}
    assert by_name["lab-worker1"] == "10.77.0.15"
    assert by_name["lab-cp2"] == "10.77.0.16"
    assert len(set(by_name.values())) == len(by_name)


def test_kept_hosts_that_are_no_longer_requested_stay():
    kept = lab.plan_hosts(7)
    assert lab.assign_hosts(kept, lab.plan_hosts(5)) == kept


def test_interface_names_fit_the_kernel_limit():
    for host in lab.plan_hosts(total=200, control_planes=3):
        assert len(lab.veth_name(host.name)) <= 15
    assert lab.veth_name("lab-repository") == "kv-repository"
    assert lab.netns_name("lab-cp1") == "kubi-lab-cp1"
    with pytest.raises(LabError, match="too long"):
        lab.veth_name("lab-a-very-long-host-name")


# --- state file ----------------------------------------------------------------------------


def test_state_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
    assert lab.load_state() is None
    state = LabState(
        hosts=lab.plan_hosts(),
        ssh_key=tmp_path / "id_ed25519",
        bridge=lab.BRIDGE,
        gateway=lab.GATEWAY,
        apt_proxy=lab.APT_PROXY,
    )
    plan.write_state(state)
    assert lab.load_state() == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_unreadable_state_says_how_to_reset(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(LabError, match="kubi lab down"):
        lab.load_state()


# --- route check (the network safety rule) -------------------------------------------------


@pytest.mark.parametrize(
    ("output", "device"),
    [
        ("10.77.0.11 dev kubibr0 src 10.77.0.1 uid 0 cache", "kubibr0"),
        ("10.77.0.11 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0 cache", "eth0"),
        ("local 10.77.0.1 dev lo table local src 10.77.0.1 uid 0 cache", None),
        ("blackhole 10.77.0.11 uid 0 cache", None),
        ("RTNETLINK answers: Invalid argument", None),
        ("", None),
    ],
)
def test_route_device(output, device):
    assert lab.route_device(output) == device


def _fake_route(monkeypatch, code: int, output: str) -> list[str]:
    asked: list[str] = []

    def route_get(address: str) -> tuple[int, str]:
        asked.append(address)
        return code, output

    monkeypatch.setattr(machine, "route_get", route_get)
    return asked


def test_check_route_accepts_the_bridge(monkeypatch):
    _fake_route(monkeypatch, 0, "10.77.0.11 dev kubibr0 src 10.77.0.1 uid 0")
    lab.check_route("10.77.0.11")


@pytest.mark.parametrize(
    ("code", "output"),
    [
        (0, "10.77.0.11 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0"),  # bridge gone, no guard
        (2, "RTNETLINK answers: Invalid argument"),  # only the blackhole guard left
        (0, "10.77.0.11 dev kubibr1 src 10.77.0.1 uid 0"),  # some other bridge
    ],
)
def test_check_route_refuses_a_route_outside_the_bridge(monkeypatch, code, output):
    _fake_route(monkeypatch, code, output)
    with pytest.raises(LabError, match="refusing to connect"):
        lab.check_route("10.77.0.11")


@pytest.mark.parametrize("address", ["10.255.255.53", "192.0.2.1", "10.77.1.5", "10.77.0.1"])
def test_check_route_refuses_non_lab_addresses_without_asking(monkeypatch, address):
    asked = _fake_route(monkeypatch, 0, f"{address} dev kubibr0")
    with pytest.raises(LabError, match="not a lab host address"):
        lab.check_route(address)
    assert asked == []


def test_status_makes_no_connection_when_the_route_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
    plan.write_state(LabState(lab.plan_hosts(), tmp_path / "k", lab.BRIDGE, "", ""))
    monkeypatch.setattr(hosts, "is_running", lambda host: True)
    _fake_route(monkeypatch, 0, "10.77.0.11 via 192.0.2.1 dev eth0")

    def no_connect(*args, **kwargs):
        raise AssertionError("connected despite a wrong route")

    monkeypatch.setattr(machine, "tcp_open", no_connect)
    rows = lab.status()
    assert [r["name"] for r in rows][:1] == ["lab-input"]
    assert all(r["running"] and not r["ssh"] for r in rows)


# --- guard range ---------------------------------------------------------------------------


def test_guard_accepts_this_machine_with_the_lab_up():
    assert lab.guard_conflicts(ROUTES_WITH_LAB, RESOLV) == []


@pytest.mark.parametrize(
    ("extra_line", "resolv", "found"),
    [
        ("10.77.5.0/24 dev eth1 proto kernel scope link src 10.77.5.2", RESOLV, "10.77.5.0/24"),
        ("10.0.0.0/8 via 192.0.2.1 dev eth0", RESOLV, "10.0.0.0/8"),
        ("", "nameserver 10.77.3.3\n", "10.77.3.3"),
    ],
)
def test_guard_refuses_a_range_the_machine_uses(extra_line, resolv, found):
    assert found in lab.guard_conflicts([*ROUTES_WITH_LAB, extra_line], resolv)


# --- parsing helpers -----------------------------------------------------------------------


def test_cgroup_roots_hybrid_uses_named_systemd_every_controller_and_unified():
    # Each host its own cgroup in every v1 controller: two kubelets must never share one.
    assert lab.cgroup_roots(HYBRID_MOUNTINFO) == [
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_cgroup_roots_unified_uses_only_the_top():
    assert lab.cgroup_roots(UNIFIED_MOUNTINFO) == [Path("/sys/fs/cgroup")]


def test_listening_sockets():
    ss = "LISTEN 0 250 127.0.0.1:3142 0.0.0.0:*\nLISTEN 0 250 10.77.0.1:3142 0.0.0.0:*\n"
    assert lab.listening(ss) == {"127.0.0.1:3142", "10.77.0.1:3142"}


def test_launcher_reboots_on_133_in_a_fresh_time_namespace():
    host = LabHost("lab-cp1", "control_plane", "10.77.0.14")
    argv = lab.nspawn_argv(host, Path("/x/merged"))
    for flag in ("--boot", "--register=no", "--keep-unit", "--private-network"):
        assert flag in argv
    assert "--network-namespace-path=/run/netns/kubi-lab-cp1" in argv
    script = lab.launcher_script(argv)
    assert "unshare --time --fork --boottime=" in script
    assert '[ "$rc" -eq 133 ]' in script
    # Joins its own cgroups (a cpuset one with its parent's cpus) before the first boot,
    # and removes the previous boot's cgroups before each boot.
    joined, loop = script.index('echo $$ > "$cg/cgroup.procs"'), script.index("while :")
    assert script.index("cpuset.cpus") < joined < loop < script.index("rmdir")
    # containerd's snapshots on the machine's file system, for Kubernetes nodes only.
    assert "--bind=/x/containerd:/var/lib/containerd" in argv
    assert {"--capability=all", "--bind=/dev/kmsg", "--console=pipe"} <= set(argv)
    assert plan.launcher_env(host)["SYSTEMD_SECCOMP"] == "0"
    input_host = LabHost("lab-input", "input", "10.77.0.11")
    service = lab.nspawn_argv(input_host, Path("/x/merged"))
    assert not [flag for flag in service if flag.startswith(("--bind", "--capability"))]
    assert "--console=passive" in service and "SYSTEMD_SECCOMP" not in plan.launcher_env(input_host)


def test_the_node_boot_script_is_valid_shell_and_leaves_right_values_alone():
    script = plan.node_boot_script()
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    for key, value in plan.KUBELET_PROC_SYS.items():
        assert f'if [ "$(cat /proc/sys/{key})" != {value} ]; then' in script


def test_nspawn_machine_only_matches_lab_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
    ours = ["systemd-nspawn", "--boot", f"--directory={tmp_path}/hosts/lab-cp1/merged"]
    assert machine.nspawn_machine([*ours, "--machine=lab-cp1"]) == "lab-cp1"
    other = ["/usr/bin/systemd-nspawn", "--directory=/srv/other", "--machine=lab-cp1"]
    assert machine.nspawn_machine(other) is None
    assert machine.nspawn_machine(["sshd"]) is None


def test_up_and_down_refuse_without_root(monkeypatch):
    monkeypatch.setattr(machine.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="root"):
        lab.up()
    with pytest.raises(LabError, match="root"):
        lab.down()


def test_reachability_through_the_proxy_is_cached(tmp_path, monkeypatch):
    """An upstream answer (even 404) counts as reachable; the proxy's own 5xx does not."""
    import http.server
    import threading

    asked = []

    class FakeProxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            asked.append(self.path)
            self.send_response(404 if "good" in self.path else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), FakeProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(plan, "APT_PROXY", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
        urls = ["https://good.example.invalid/InRelease", "https://down.example.invalid/InRelease"]
        assert platform.reachable(urls) == {urls[0]: True, urls[1]: False}
        # Asked in the form apt-cacher-ng wants for HTTPS, and only once (then cached).
        assert asked == ["http://HTTPS///good.example.invalid/InRelease",
                         "http://HTTPS///down.example.invalid/InRelease"]  # fmt: skip
        assert platform.reachable(urls) == {urls[0]: True, urls[1]: False}
        assert len(asked) == 2
    finally:
        server.shutdown()


# --- kernel modules ------------------------------------------------------------------------

WANTED = {
    "bridge": "CONFIG_BRIDGE",
    "veth": "CONFIG_VETH",
    "br_netfilter": "CONFIG_BRIDGE_NETFILTER",
}


def test_missing_modules_counts_loaded_builtin_and_configured_ones():
    proc_modules = "bridge 311296 1 br_netfilter, Live 0x0000000000000000\n"
    builtin = "kernel/drivers/net/veth.ko\nkernel/fs/ext4/ext4.ko\n"
    assert plan.missing_modules(WANTED, proc_modules, builtin, "", set()) == ["br_netfilter"]
    assert plan.missing_modules(WANTED, "", "", "CONFIG_BRIDGE_NETFILTER=y\nCONFIG_VETH=m\n",
                                {"bridge"}) == ["veth"]  # fmt: skip
    assert plan.missing_modules(WANTED, "", "", "", set()) == list(WANTED)


def test_the_machine_loads_every_module_kubernetes_nodes_need():
    """Lab hosts share this kernel and cannot load modules: the lab loads seed's for them."""
    import ast

    tree = ast.parse((Path(__file__).parents[2] / "deploys" / "seed.py").read_text())
    needed = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "KUBERNETES_MODULES" for t in node.targets)
    )
    assert set(needed) <= set(machine.KERNEL_MODULES)
    assert {"bridge", "veth", "overlay"} <= set(machine.KERNEL_MODULES)


def test_up_refuses_a_lab_dir_overlayfs_cannot_take(tmp_path, monkeypatch):
    monkeypatch.setattr(machine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path / "a,b")
    with pytest.raises(LabError, match="KUBI_LAB_DIR"):
        lab.up()
    assert not (tmp_path / "a,b").exists()  # refused before anything was made


def test_lab_dir_of_finds_labs_of_any_folder_and_nothing_else():
    host = LabHost("lab-cp1", "control_plane", "10.77.0.14")
    argv = lab.nspawn_argv(host, Path("/tmp/kubi-ci.x/lab/hosts/lab-cp1/merged"))
    assert plan.lab_dir_of(argv) == Path("/tmp/kubi-ci.x/lab")
    other = ["systemd-nspawn", "--directory=/srv/c/merged", "--network-namespace-path=/run/netns/x"]
    assert plan.lab_dir_of(other) is None
    assert plan.lab_dir_of(["sshd", *argv[1:]]) is None


def test_limits_are_only_raised():
    floors = {"fs.inotify.max_user_instances": 1024, "fs.inotify.max_user_watches": 524288}
    current = {"fs.inotify.max_user_instances": 128, "fs.inotify.max_user_watches": 1048576}
    assert plan.raised_limits(current, floors) == {"fs.inotify.max_user_instances": 1024}
    assert plan.raised_limits({**floors, "fs.inotify.max_user_instances": 8192}, floors) == {}


def test_lab_dir_from_the_environment_is_made_absolute_and_real(tmp_path):
    """mountinfo and nspawn's argv carry real absolute paths; nspawn runs from "/"."""
    import os
    import subprocess
    import sys

    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    printed = subprocess.run(
        [sys.executable, "-c", "from kubi.lab import plan; print(plan.LAB_DIR)"],
        cwd=tmp_path, env={**os.environ, "KUBI_LAB_DIR": "link/lab",
                           "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert printed == str((tmp_path / "real" / "lab").resolve())


def test_stop_and_start_name_an_unknown_host_and_the_lab_s_hosts(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path)
    with pytest.raises(LabError, match=r"no lab host 'w9'; the lab has no hosts \(run `kubi"):
        hosts._named(["w9"])
    plan.write_state(LabState(lab.plan_hosts(), tmp_path / "k", lab.BRIDGE, "", ""))
    with pytest.raises(LabError, match="no lab host 'w9'; the lab has lab-input, lab-output, "):
        hosts._named(["lab-worker1", "w9"])
    state, named = hosts._named(["lab-worker1", "lab-cp1", "lab-worker1"])
    assert [h.name for h in named] == ["lab-worker1", "lab-cp1"]
