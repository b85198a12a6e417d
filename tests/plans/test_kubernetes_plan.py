"""Plans of deploys/kubernetes.py: packages, the cluster PKI and kubeadm's configuration."""

from __future__ import annotations

import json

import pytest
import yaml

from kubi.cluster_pki import cluster_pki
from kubi.secrets import Secrets

from .conftest import managed
from .harness import plan, run_order, uploads

KEYRING = "/etc/apt/keyrings/kubi-kubernetes.gpg"
CONFIG = "/etc/kubernetes/kubi/kubeadm.yaml"
PKI = [
    "ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt",
    "etcd/ca.key", "sa.key", "sa.pub",
]  # fmt: skip
SOURCES = "/etc/apt/sources.list.d/kubi-kubernetes.list"
PINS = "/etc/apt/preferences.d/kubi-kubernetes"
UPSTREAM_KEY = "DE15B14486CD377B9E876E1A234654DA9A296436"
EXTRA = [  # with kubernetes.pod_network bridge, or kubeadm patches
    "/etc/cni/net.d/10-kubi-bridge.conflist", "/usr/local/sbin/kubi-pod-routes",
    "/etc/systemd/system/kubi-pod-routes.service", "/etc/kubernetes/kubi/patches/etcd+json.json",
]  # fmt: skip


def node_state(keyring=None, joined=False, partial=None, names=None):
    return {
        "keyrings": {KEYRING: keyring}, "joined": joined, "partial": partial,
        "control_plane": False, "kubeadm": None, "apiserver_expiry": None,
        "apiserver_names": names,
    }  # fmt: skip


def facts(files=None, installed=None, keyring=None, joined=False, partial=None):
    files = files or {}
    paths = [SOURCES, PINS, CONFIG, *(f"/etc/kubernetes/pki/{name}" for name in PKI), *EXTRA]
    state = node_state(keyring, joined, partial)
    return {
        "facts.kubernetes.KubernetesNodeState": {f"keyring={KEYRING}": state},
        "deb.DebPackages": {"_": installed or {}},
        "kubi.facts.ServiceState": {
            "unit=kubi-pod-routes.service": {"active": False, "enabled": False}
        },
        "kubi.facts.ManagedFile": {f"path={p}": files.get(p) for p in paths},
    }


@pytest.fixture
def node(description, tmp_path):
    description["secrets_dir"] = str(tmp_path / "secrets")
    description["versions"] = {"kubernetes": "1.33.3"}
    description["containerd"] = {"source": "debian"}  # runs 1.33 (Debian 12)
    return description


def test_fresh_control_plane(node, tmp_path):
    lines = plan("deploys/kubernetes.py", "cp1", node, facts())
    key = next(line for line in lines if line.startswith("repository key kubernetes"))
    # The channel's key, kept only when it is the pinned one, through the platform's proxy.
    assert "http://HTTPS///pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key" in key
    assert f"gpg --batch --export {UPSTREAM_KEY}" in key
    written = uploads(lines)
    assert written[SOURCES].splitlines()[-1] == (
        f"deb [signed-by={KEYRING}] http://HTTPS///pkgs.k8s.io/core:/stable:/v1.33/deb/ /"
    )
    for package in ("kubeadm", "kubelet", "kubectl"):
        assert f"Package: {package}\nPin: version 1.33.3-*\nPin-Priority: 1001\n" in written[PINS]
    install = next(line for line in lines if line.startswith("Kubernetes packages "))
    assert "install kubeadm kubelet kubectl" in install
    # The deployer's PKI, the same on every control plane; keys root's alone.
    pki = cluster_pki(Secrets(tmp_path / "secrets"))
    for name, content in pki.pki_files().items():
        assert written[f"/etc/kubernetes/pki/{name}"] == content
    key_install = "\n".join(line for line in lines if line.startswith("cluster PKI ca.key:"))
    assert "install -m 600 -o root -g root /dev/null /etc/kubernetes/pki/ca.key.kubi-new" in (
        key_install
    )  # 0600 before a byte of the key is written
    docs = {d["kind"]: d for d in yaml.safe_load_all(written[CONFIG])}
    assert docs["InitConfiguration"]["bootstrapTokens"][0]["token"] == pki.bootstrap_token
    config = "\n".join(line for line in lines if line.startswith("kubeadm configuration:"))
    assert "kubeadm config validate --config /etc/kubernetes/kubi/kubeadm.yaml" in config
    assert "/dev/null /etc/kubernetes/kubi/kubeadm.yaml.kubi-new" in config  # 0600 from birth


def test_workers_get_no_pki_and_join(node):
    written = uploads(plan("deploys/kubernetes.py", "w1", node, facts()))
    assert not [path for path in written if path.startswith("/etc/kubernetes/pki/")]
    kinds = [d["kind"] for d in yaml.safe_load_all(written[CONFIG])]
    assert kinds == ["JoinConfiguration"]


def test_a_mirror_that_signs_again(node):
    node["kubernetes"] = {
        "apt_mirror": "http://10.20.0.1:3150",
        "packages_key": "0123456789ABCDEF0123456789ABCDEF01234567",
    }
    lines = plan("deploys/kubernetes.py", "w1", node, facts())
    key = next(line for line in lines if line.startswith("repository key kubernetes"))
    assert "http://10.20.0.1:3150/pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key" in key
    assert "--export 0123456789ABCDEF0123456789ABCDEF01234567" in key


def test_converged_node_plans_nothing(node):
    written = uploads(plan("deploys/kubernetes.py", "cp1", node, facts()))
    files = {
        path: managed(content, "600" if path.endswith((".key", ".yaml")) else "644")
        for path, content in written.items()
    }
    installed = {name: ["1.33.3-1.1"] for name in ("kubeadm", "kubelet", "kubectl")}
    keyring = {"fingerprints": [UPSTREAM_KEY], "signing_until": [None]}
    converged = facts(files, installed, keyring, joined=True)
    assert plan("deploys/kubernetes.py", "cp1", node, converged) == []


def commands(lines, name):
    return [line.removeprefix(f"{name}: ") for line in lines if line.startswith(f"{name}: ")]


def test_the_first_control_plane_initialises_without_printing_a_secret(node):
    lines = plan("deploys/kubernetes.py", "cp1", node, facts())
    assert lines[-1] == (
        "kubeadm init (first control plane): kubeadm init --config "
        "/etc/kubernetes/kubi/kubeadm.yaml --upload-certs --skip-token-print "
        "--skip-certificate-key-print"
    )
    assert not [line for line in lines if "join" in line.split(":")[0]]


def test_a_worker_joins_once_the_api_answers(node):
    lines = plan("deploys/kubernetes.py", "w1", node, facts())
    (join,) = commands(lines, "kubeadm join (worker)")
    wait, _, rest = join.partition(" && kubeadm join")
    assert rest == " --config /etc/kubernetes/kubi/kubeadm.yaml"
    assert (
        "curl -skf --max-time 3 -o /dev/null https://kube-api.plan.kubi.internal:6444/readyz"
        in wait
    )
    assert "did not answer in 90 s; did the first control plane" in wait


def test_other_control_planes_join_one_at_a_time(node):
    node["groups"]["control_plane"] += [
        ("cp2", {"ip": "10.20.0.22"}),
        ("cp3", {"ip": "10.20.0.23"}),
    ]
    lines = plan("deploys/kubernetes.py", "cp2", node, facts())
    (join,) = commands(lines, "kubeadm join --control-plane (one at a time)")
    assert join.endswith("&& kubeadm join --config /etc/kubernetes/kubi/kubeadm.yaml")
    docs = list(yaml.safe_load_all(uploads(lines)[CONFIG]))
    assert docs[0]["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "10.20.0.22"
    # cp2 gets the deployer's PKI too: what a join downloads is then the same
    assert any(path.startswith("/etc/kubernetes/pki/") for path in uploads(lines))


def test_a_node_in_the_cluster_never_joins_again(node):
    for host in ("cp1", "w1"):
        lines = plan("deploys/kubernetes.py", host, node, facts(joined=True))
        assert not [line for line in lines if line.startswith(("kubeadm init", "kubeadm join"))]


def test_an_unfinished_join_is_undone_first_and_keeps_the_pki(node):
    lines = plan(
        "deploys/kubernetes.py", "cp1", node, facts(partial="/etc/kubernetes/kubelet.conf")
    )
    undo = "undo an unfinished kubeadm init or join (it left /etc/kubernetes/kubelet.conf)"
    names = [line.split(": ")[0] for line in lines]
    assert names.index(undo) < names.index("cluster PKI ca.crt")
    assert lines[names.index(undo)] == (
        f"{undo}: install -d -m 700 /etc/kubernetes/kubi/reset-keeps-pki && kubeadm reset -f "
        "--cri-socket unix:///run/containerd/containerd.sock "
        "--cert-dir /etc/kubernetes/kubi/reset-keeps-pki"
    )  # before the PKI's operations write what a reset removes
    assert lines[-1].startswith("kubeadm init (first control plane): kubeadm init")


def test_joins_in_the_run_get_a_fresh_token_and_certificates(node, tmp_path):
    others = facts()
    state = others.pop("facts.kubernetes.KubernetesNodeState")
    converged = facts(joined=True)
    converged["w1:facts.kubernetes.KubernetesNodeState"] = state  # w1 joins in this run

    lines = plan("deploys/kubernetes.py", "cp1", node, converged, others=("w1",))
    (refresh,) = commands(lines, "bootstrap token and control-plane certificates for the joins")
    token_id = cluster_pki(Secrets(tmp_path / "secrets")).token_id
    assert refresh == (
        "kubeadm init phase upload-config kubeadm --config /etc/kubernetes/kubi/kubeadm.yaml "
        "--kubeconfig /etc/kubernetes/admin.conf >/dev/null && "
        f"kubeadm token delete {token_id} --kubeconfig /etc/kubernetes/admin.conf "
        ">/dev/null 2>&1; kubeadm token create --config /etc/kubernetes/kubi/kubeadm.yaml "
        "--kubeconfig "
        "/etc/kubernetes/admin.conf >/dev/null && kubeadm init phase upload-certs "
        "--upload-certs --config /etc/kubernetes/kubi/kubeadm.yaml --kubeconfig "
        "/etc/kubernetes/admin.conf >/dev/null"
    )
    converged["w1:facts.kubernetes.KubernetesNodeState"] = {
        f"keyring={KEYRING}": node_state(joined=True)
    }
    lines = plan("deploys/kubernetes.py", "cp1", node, converged, others=("w1",))
    assert not commands(lines, "bootstrap token and control-plane certificates for the joins")


def test_bridge_pod_network(node):
    node["kubernetes"] = {"pod_network": "bridge"}
    node["groups"]["workers"] += [("w2", {"ip": "10.20.0.32"})]
    lines = plan("deploys/kubernetes.py", "w1", node, facts())
    written = uploads(lines)
    conflist = json.loads(written["/etc/cni/net.d/10-kubi-bridge.conflist"])
    bridge = conflist["plugins"][0]
    assert bridge["bridge"] == "cni0" and bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.233.95.0/24"}]]  # .31 of 64 /24s
    script = written["/usr/local/sbin/kubi-pod-routes"]
    assert "ip route replace 10.233.85.0/24 via 10.20.0.21 proto 201" in script  # cp1: .21
    assert "ip route replace 10.233.96.0/24 via 10.20.0.32 proto 201" in script  # w2: .32
    assert "10.233.95.0/24" not in script  # its own pods are on its bridge
    assert "ip route replace 10.233.0.0/18 dev" in script
    (check,) = [line for line in lines if line.startswith("pod routes script: sh -c")][-1:]
    assert "sh -n /usr/local/sbin/kubi-pod-routes" in check
    assert "systemctl enable kubi-pod-routes.service" in "\n".join(lines)


def test_bridge_pod_network_refuses_nodes_sharing_a_subnet(node):
    node["kubernetes"] = {"pod_network": "bridge"}
    node["groups"]["workers"] += [("w2", {"ip": "10.20.1.95"})]  # .95 % 64 == .31 % 64
    with pytest.raises(
        ValueError, match="hosts w1 and w2 would both have pod subnet 10.233.95.0/24"
    ):
        plan("deploys/kubernetes.py", "w1", node, facts())


def test_kubeadm_patches_and_preflight_exceptions(node, tmp_path):
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "etcd+json.json").write_text("[]\n")
    node["kubernetes"] = {"kubeadm_patches": str(patches), "ignore_preflight_errors": ["Swap"]}
    written = uploads(plan("deploys/kubernetes.py", "cp1", node, facts()))
    assert written["/etc/kubernetes/kubi/patches/etcd+json.json"] == "[]\n"
    init = next(yaml.safe_load_all(written[CONFIG]))
    assert init["patches"] == {"directory": "/etc/kubernetes/kubi/patches"}
    assert init["nodeRegistration"]["ignorePreflightErrors"] == ["Swap"]


def test_coredns_left_out_is_said_once_by_the_first_control_plane(node, caplog):
    node["kubernetes"] = {"coredns": False}
    node["groups"]["control_plane"] = [("cp1", {"ip": "10.20.0.21"}), ("cp2", {"ip": "10.20.0.22"}),
                                       ("cp3", {"ip": "10.20.0.23"})]  # fmt: skip
    init = next(
        yaml.safe_load_all(uploads(plan("deploys/kubernetes.py", "cp1", node, facts()))[CONFIG])
    )
    assert init["skipPhases"] == ["addon/coredns"]
    said = [r.getMessage() for r in caplog.records if "CoreDNS" in r.getMessage()]
    assert said == [
        "kubernetes: kubernetes.coredns is false: CoreDNS is left out (kubeadm skips its "
        "addon/coredns phase); pods get no cluster DNS"
    ]
    caplog.clear()
    plan("deploys/kubernetes.py", "cp2", node, facts())
    assert not [r for r in caplog.records if "CoreDNS" in r.getMessage()]


@pytest.mark.parametrize("host", ["in1", "out1", "repo1"])
def test_only_on_kubernetes_nodes(node, host):
    assert plan("deploys/kubernetes.py", host, node, {}) == []


def test_an_api_server_certificate_follows_control_planes_added_later(node):
    node["groups"]["control_plane"] += [
        ("cp2", {"ip": "10.20.0.22"}),
        ("cp3", {"ip": "10.20.0.23"}),
    ]
    made_with_one = ["kube-api.plan.kubi.internal", "localhost", "127.0.0.1", "10.20.0.21", "cp1"]
    state = facts(joined=True)
    state["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]["apiserver_names"] = (
        made_with_one + ["cp1.plan.kubi.internal", "kubernetes", "10.233.0.1"]
    )
    lines = plan("deploys/kubernetes.py", "cp1", node, state)
    name = "API server certificate names (10.20.0.22, cp2, 10.20.0.23, cp3 added): "
    (renamed,) = [line for line in lines if line.startswith(name)]
    assert "kubeadm init phase certs apiserver --cert-dir /etc/kubernetes/pki" in renamed
    assert "--apiserver-cert-extra-sans kube-api.plan.kubi.internal,localhost,127.0.0.1" in renamed
    assert "mv -f /etc/kubernetes/pki/$f.kubi-old /etc/kubernetes/pki/$f" in renamed  # put back
    assert "mv /etc/kubernetes/manifests/$p.yaml /etc/kubernetes/kubi/manifests-away/" in renamed
    assert "for p in kube-apiserver; do" in renamed and renamed.endswith("sleep 3; done; }")
    # With every name there, nothing.
    wanted = made_with_one + ["10.20.0.22", "cp2", "10.20.0.23", "cp3"]
    state["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]["apiserver_names"] = wanted
    lines = plan("deploys/kubernetes.py", "cp1", node, state)
    assert not [line for line in lines if line.startswith("API server certificate names")]


def test_a_version_change_is_refused_on_a_cluster_node(node):
    state = facts(joined=True)
    state["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]["kubeadm"] = "v1.32.7"
    lines = plan("deploys/kubernetes.py", "w1", node, state)
    assert len(lines) == 1 and lines[0].startswith("Kubernetes version unchanged: echo ")
    assert "w1 is a node of a cluster at v1.32.7 and versions.kubernetes says v1.33.3" in lines[0]
    assert lines[0].endswith(">&2; exit 1")
    # The same version, or a node not in the cluster yet: no refusal.
    state["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]["kubeadm"] = "v1.33.3"
    assert not [
        line for line in plan("deploys/kubernetes.py", "w1", node, state) if "unchanged" in line
    ]
    fresh = facts()
    fresh["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]["kubeadm"] = "v1.32.7"
    assert not [
        line for line in plan("deploys/kubernetes.py", "w1", node, fresh) if "unchanged" in line
    ]


def test_nodes_added_to_a_cluster_join_after_the_first_control_plane_refreshed_the_joins(node):
    """Across hosts, pyinfra orders operations by each host's own sequence, then by line:
    the first control plane's token and certificates must be made before any join runs,
    whatever else that control plane does in the run (here its certificate's new names)."""
    node["groups"]["control_plane"] += [
        ("cp2", {"ip": "10.20.0.22"}),
        ("cp3", {"ip": "10.20.0.23"}),
    ]
    node["groups"]["workers"] += [("w2", {"ip": "10.20.0.32"})]
    old_names = ["kube-api.plan.kubi.internal", "localhost", "127.0.0.1", "10.20.0.21", "cp1"]
    facts_of = {name: facts() for name in ("cp1", "cp2", "cp3", "w1", "w2")}
    for name in ("cp1", "w1"):  # in the cluster before this run
        state = facts_of[name]["facts.kubernetes.KubernetesNodeState"][f"keyring={KEYRING}"]
        state.update(joined=True, apiserver_names=old_names if name == "cp1" else None)
    order = [name for name, _ in run_order("deploys/kubernetes.py", node, facts_of)]
    refresh = order.index("bootstrap token and control-plane certificates for the joins")
    assert refresh < order.index("kubeadm join --control-plane (one at a time)")
    assert refresh < order.index("kubeadm join (worker)")
    assert order.index("kubeadm join --control-plane (one at a time)") < order.index(
        "kubeadm join (worker)"
    )
    assert any(name.startswith("API server certificate names") for name in order)
