"""`kubi upgrade` (kubi/upgrade.py): the plan as data from what the nodes run, the refusals,
and the run against fake hosts (order, where kubectl runs, a failure's message)."""

from __future__ import annotations

import json
import subprocess

import pytest

from kubi import cli, upgrade
from kubi.inventory import declare
from kubi.ssh import Completed
from kubi.upgrade import Cluster, NodeVersions
from tests.plans.conftest import DESCRIPTION
from tests.unit.fake_hosts import FakeHosts


def platform_at(tmp_path, version: str, control_planes: int = 3, workers: int = 2, **kubernetes):
    description = {
        **DESCRIPTION,
        "secrets_dir": str(tmp_path / "s"),
        "versions": {"kubernetes": version},
        "kubernetes": kubernetes,
        "containerd": {"source": "debian"},  # Debian 12's runs 1.30 to 1.34
    }
    description["groups"] = {
        **DESCRIPTION["groups"],
        "control_plane": [
            (f"cp{i}", {"ip": f"10.20.0.2{i}"}) for i in range(1, control_planes + 1)
        ],
        "workers": [(f"w{i}", {"ip": f"10.20.0.3{i}"}) for i in range(1, workers + 1)],
    }
    return declare(None, **description)


def at(version: str, joined: bool = True) -> NodeVersions:
    return NodeVersions(kubeadm=version, kubelet=version, joined=joined)


NODES = ("cp1", "cp2", "cp3", "w1", "w2")


def test_a_minor_upgrade_goes_control_planes_first_one_node_at_a_time(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    steps = upgrade.plan(declared.config, {n: at("1.33.3") for n in NODES}, Cluster("1.33.3"))
    assert [s.node for s in steps][::5] == list(NODES)  # five steps a node, in this order
    cp1 = [s.what for s in steps[:5]]
    assert cp1 == [
        "kubeadm 1.34.10",
        "kubeadm upgrade apply v1.34.10",
        "drained",
        "kubelet and kubectl 1.34.10, kubelet restarted",
        "Ready at v1.34.10, uncordoned",
    ]
    assert [s.what for s in steps if "upgrade apply" in s.what] == cp1[1:2]  # once
    assert {s.what for s in steps[5:] if s.what.startswith("kubeadm upgrade")} == {
        "kubeadm upgrade node"
    }
    # kubectl steps run as the admin of a control plane, the others on the node itself
    assert [s.on_control_plane for s in steps[:5]] == [False, False, True, False, True]


def test_the_package_steps_move_the_channel_and_the_pins_and_check_the_binary(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    steps = upgrade.plan(declared.config, {n: at("1.33.3") for n in NODES}, Cluster("1.33.3"))
    first, kubelet = steps[0].command, steps[3].command
    channel = "core:/stable:/v1.34/deb/"
    # the new channel answers (its file read alone, under a name apt does not read) before
    # it replaces the old one; an unreachable one leaves the old file in place
    listed = "/etc/apt/sources.list.d/kubi-kubernetes.list"
    check = first.index(f"Dir::Etc::sourcelist={listed}.kubi-new")
    assert first.index(channel) < check < first.index(f"mv -f {listed}.kubi-new {listed}")
    assert first.index(f"rm -f {listed}.kubi-new; exit 1") > check
    assert "Pin: version 1.34.10-*" in first and "Pin: version 1.33" not in first
    assert first.index("install kubeadm") < first.index("= v1.34.10 ]")
    assert "install kubelet kubectl" in kubelet and "'Kubernetes v1.34.10'" in kubelet
    assert kubelet.endswith("systemctl daemon-reload && systemctl restart kubelet")


def test_the_written_files_are_the_converges_own(tmp_path):
    """What the upgrade writes is what deploys/kubernetes.py writes at the new version, byte
    for byte: the converge after an upgrade changes nothing."""
    from kubi import aptsource, kubernetes

    declared = platform_at(tmp_path, "1.34.10")
    node = declared.config.host("w1")
    command = upgrade.packages(declared.config, node, ("kubeadm",))
    source = kubernetes.apt_source(declared.config)
    proxy = declared.config.apt_proxy_for(node)
    for path, content in (
        (source.sources_path, aptsource.sources_list(source, None, proxy)),
        (kubernetes.PREFERENCES_PATH, aptsource.apt_preferences([source])),
    ):
        written = command.split(f"> {path}.kubi-new")[0].rsplit("printf %s ", 1)[1]
        shell = subprocess.run(["sh", "-c", f"printf %s {written}"], capture_output=True)
        assert shell.stdout.decode() == content


def test_kubeadm_gets_the_platforms_patches_and_skipped_phases(tmp_path):
    declared = platform_at(
        tmp_path, "1.33.3", coredns=False, ignore_preflight_errors=["HTTPProxyCIDR"]
    )
    apply = upgrade.upgrade_apply(declared.config)
    assert apply.startswith("kubeadm upgrade apply v1.33.3 --yes --skip-phases addon/coredns ")
    # CoreDNS's upgrade checks fail where there is none (the lab measured it)
    assert (
        "--ignore-preflight-errors HTTPProxyCIDR,CoreDNSUnsupportedPlugins,CoreDNSMigration"
        in apply
    )
    assert "--patches" not in apply  # none configured
    assert apply.index("kubeadm upgrade apply") < apply.index("127.0.0.1:6443/readyz")


def test_a_cluster_at_the_version_has_nothing_to_do(tmp_path):
    declared = platform_at(tmp_path, "1.33.3")
    steps = upgrade.plan(declared.config, {n: at("1.33.3") for n in NODES}, Cluster("1.33.3"))
    assert steps == []
    assert upgrade.render(steps, "1.33.3") == (
        "every node of the cluster runs v1.33.3: nothing to upgrade"
    )


def test_a_run_stopped_half_way_goes_on_from_where_it_stopped(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    observed = {n: at("1.34.10") for n in ("cp1", "cp2", "cp3")}
    observed["w1"] = NodeVersions(kubeadm="1.34.10", kubelet="1.33.3", joined=True)  # stopped
    observed["w2"] = at("1.33.3")
    steps = upgrade.plan(declared.config, observed, Cluster("1.34.10", drained=frozenset({"w1"})))
    assert [s.node for s in steps] == ["w1"] * 5 + ["w2"] * 5
    assert "kubeadm upgrade apply" not in " ".join(s.what for s in steps)


def test_a_node_left_cordoned_by_a_stopped_run_is_uncordoned(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    steps = upgrade.plan(
        declared.config, {n: at("1.34.10") for n in NODES}, Cluster("1.34.10", frozenset({"w2"}))
    )
    assert [(s.node, s.what) for s in steps] == [("w2", "uncordoned")]
    assert f"annotate node w2 {upgrade.DRAINED}-" in steps[0].command


def test_a_node_an_operator_cordoned_stays_cordoned(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    seen = Cluster("1.33.3", cordoned=frozenset({"w1"}))
    steps = upgrade.plan(declared.config, {n: at("1.33.3") for n in NODES}, seen)
    w1 = [s for s in steps if s.node == "w1"]
    assert w1[-1].what == "Ready at v1.34.10, left cordoned as it was"
    assert "uncordon" not in w1[-1].command and upgrade.DRAINED not in w1[2].command
    w2 = [s for s in steps if s.node == "w2"]
    assert "uncordon w2" in w2[-1].command and f"{upgrade.DRAINED}=yes" in w2[2].command


def test_apply_is_pending_until_the_cluster_configuration_moves(tmp_path):
    """kubeadm and the kubelet of cp1 at the version, but `upgrade apply` never finished:
    cp1 runs it again before any other node."""
    declared = platform_at(tmp_path, "1.34.10")
    observed = {n: at("1.33.3") for n in NODES}
    observed["cp1"] = at("1.34.10")
    steps = upgrade.plan(declared.config, observed, Cluster("1.33.3"))
    assert steps[1] == upgrade.Step("cp1", "kubeadm upgrade apply v1.34.10", steps[1].command)


def test_nodes_not_in_the_cluster_are_left_to_the_converge(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    observed = {n: at("1.33.3") for n in NODES}
    observed["w2"] = NodeVersions(kubeadm=None, kubelet=None, joined=False)
    steps = upgrade.plan(declared.config, observed, Cluster("1.33.3"))
    assert "w2" not in {s.node for s in steps}


@pytest.mark.parametrize(
    ("target", "running", "said"),
    [
        (
            "1.34.10",
            "1.32.13",
            "v1.32.13 to 1.34.10 skips a minor: upgrade to a 1.33 release first",
        ),
        ("1.32.13", "1.33.3", "the cluster runs v1.33.3 and versions.kubernetes says 1.32.13"),
        ("1.33.0", "1.33.3", "Kubernetes does not go back a version"),
    ],
)
def test_a_skipped_minor_or_a_downgrade_is_refused(tmp_path, target, running, said):
    declared = platform_at(tmp_path, target)
    with pytest.raises(upgrade.UpgradeRefused, match=said.replace(".", r"\.")):
        upgrade.plan(declared.config, {n: at(running) for n in NODES}, Cluster(running))


def test_a_kubelet_newer_than_the_version_is_refused(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    observed = {n: at("1.34.10") for n in NODES}
    observed["w1"] = at("1.34.11")
    with pytest.raises(upgrade.UpgradeRefused, match="w1's kubelet runs v1.34.11"):
        upgrade.plan(declared.config, observed, Cluster("1.34.10"))


def test_what_the_nodes_say_is_read_as_versions():
    said = "kubeadm=v1.33.3\nkubelet=Kubernetes v1.33.3\njoined=yes\n"
    assert upgrade.parse_node_versions(said) == at("1.33.3")
    assert upgrade.parse_node_versions("kubeadm=\nkubelet=\n") == NodeVersions(None, None, False)
    nodes = {
        "items": [
            {"metadata": {"name": "w1", "annotations": {upgrade.DRAINED: "yes"}},
             "spec": {"unschedulable": True}},
            {"metadata": {"name": "w2"}, "spec": {"unschedulable": True}},  # an operator's
            {"metadata": {"name": "w3", "annotations": {upgrade.DRAINED: "yes"}}, "spec": {}},
        ]
    }  # fmt: skip
    text = "apiVersion: kubeadm.k8s.io/v1beta4\nkubernetesVersion: v1.33.3\n\n---\n"
    assert upgrade.parse_cluster(text + json.dumps(nodes)) == Cluster(
        "1.33.3", drained=frozenset({"w1"}), cordoned=frozenset({"w2"})
    )


def cluster_answers(kubelet="1.33.3", cluster="1.33.3", dead=(), failing=None):
    def answer(host, command):
        if command == upgrade.NODE_VERSIONS:
            said = f"kubeadm=v{kubelet}\nkubelet=Kubernetes v{kubelet}\njoined=yes\n"
            return Completed(0, said.encode(), b"")
        if command == upgrade.CLUSTER_STATE:
            said = f"kubernetesVersion: v{cluster}\n\n---\n" + json.dumps({"items": []})
            return Completed(0, said.encode(), b"")
        if failing and failing[0] == host and failing[1] in command:
            return Completed(1, b"", b"E: Version '1.34.10-*' for 'kubeadm' was not found")
        return None

    return FakeHosts(answer, dead=dead)


def test_gather_then_execute_runs_each_step_where_it_belongs(tmp_path):
    declared = platform_at(tmp_path, "1.34.10", control_planes=3, workers=1)
    hosts = cluster_answers()
    observed, cluster = upgrade.gather(declared, hosts)
    steps = upgrade.plan(declared.config, observed, cluster)
    said: list[str] = []
    upgrade.execute(declared, steps, hosts, said.append)
    ran = [(host, command) for host, command, _ in hosts.ran[5:]]  # after gather
    assert [host for host, _ in ran] == ["cp1", "cp1", "cp2", "cp1", "cp2"] + [
        "cp2", "cp2", "cp1", "cp2", "cp1", "cp3", "cp3", "cp1", "cp3", "cp1",
        "w1", "w1", "cp1", "w1", "cp1"]  # fmt: skip
    assert said[-1] == "w1: Ready at v1.34.10, uncordoned"


def test_an_unreachable_node_stops_the_upgrade_before_it_starts(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    with pytest.raises(upgrade.UpgradeRefused, match="w2 cannot be reached .* kubi node remove"):
        upgrade.gather(declared, cluster_answers(dead=("w2",)))


def test_a_failed_step_stops_and_says_how_to_go_on(tmp_path):
    declared = platform_at(tmp_path, "1.34.10")
    hosts = cluster_answers(failing=("cp2", "install kubeadm"))
    observed, cluster = upgrade.gather(declared, hosts)
    with pytest.raises(upgrade.ClusterOpError) as stopped:
        upgrade.execute(declared, upgrade.plan(declared.config, observed, cluster), hosts, print)
    assert str(stopped.value).startswith(
        "cp2: kubeadm 1.34.10 failed: cp2: E: Version '1.34.10-*' for 'kubeadm' was not found;"
    )
    assert str(stopped.value).endswith("kubi upgrade --yes goes on from here")
    assert hosts.ran[-1][0] == "cp2"  # nothing after it


def test_kubectl_steps_go_to_the_next_control_plane_when_one_is_down(tmp_path):
    declared = platform_at(tmp_path, "1.34.10", control_planes=3, workers=1)
    step = upgrade.Step("w1", "drained", upgrade.drain("w1"), on_control_plane=True)
    hosts = FakeHosts(dead=("cp1",))
    upgrade.execute(declared, [step], hosts, lambda line: None)
    assert [host for host, _, _ in hosts.ran] == ["cp2"]  # then it went no further


def test_the_command_shows_the_plan_and_changes_nothing_without_yes(tmp_path, monkeypatch, capsys):
    declared = platform_at(tmp_path, "1.34.10", control_planes=1, workers=1)
    hosts = cluster_answers()
    monkeypatch.setattr("kubi.inventory.load", lambda path: declared)
    monkeypatch.setattr("kubi.ssh.SshHost", hosts)
    assert cli.main(["upgrade", "--inventory", "inventories/x.py"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "kubi upgrade to v1.34.10, in this order:"
    assert "add --yes" in out.err
    assert all(
        command in (upgrade.NODE_VERSIONS, upgrade.CLUSTER_STATE) for _, command, _ in hosts.ran
    )
