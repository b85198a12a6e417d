"""kubernetes: kubeadm, kubelet and kubectl at the platform's version, the deployer's cluster
PKI on the control planes, and a kubeadm configuration kubeadm itself accepts."""

from __future__ import annotations

import json

import pytest

from kubi import kubeadm, kubernetes, pod_network
from kubi.cluster_pki import CAS
from kubi.secrets import for_platform


def test_packages_at_the_pinned_version(node, platform):
    version = platform.versions.kubernetes
    for package in kubernetes.PACKAGES:
        installed = node.package(package)
        assert installed.is_installed and installed.version.startswith(f"{version}-"), package
    # apt keeps them there: the pin wins over anything newer the channel offers.
    policy = node.check_output("apt-cache policy kubeadm")
    assert f"{version}-" in policy.split("Candidate:")[1].splitlines()[0]


def test_the_repository_key_is_the_pinned_one(node, platform):
    keyring = kubernetes.apt_source(platform).keyring
    shown = node.check_output(
        f"t=$(mktemp -d); GNUPGHOME=$t gpg --batch --with-colons --show-keys {keyring}"
        " | grep '^fpr:' | head -1 | cut -d: -f10; rm -rf $t"
    )
    assert shown.strip() == platform.kubernetes.packages_key


def test_kubeadm_accepts_this_node_s_configuration(node):
    config = node.file(kubeadm.CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)
    assert node.run(f"kubeadm config validate --config {kubeadm.CONFIG}").rc == 0


@pytest.mark.roles("control_plane")
def test_the_control_planes_hold_the_deployer_s_cas(node, platform):
    secrets = for_platform(platform)
    for base, _, secret in CAS:
        cert = node.file(f"{kubeadm.PKI_DIR}/{base}.crt")
        assert cert.content_string == secrets.read(f"{secret}.crt"), base
        key = node.file(f"{kubeadm.PKI_DIR}/{base}.key")
        assert (key.user, key.mode) == ("root", 0o600), base


# --- the cluster ---------------------------------------------------------------------------

NODE_KUBECTL = "kubectl --kubeconfig /etc/kubernetes/kubelet.conf"
ADMIN_KUBECTL = f"kubectl --kubeconfig {kubeadm.ADMIN_CONF}"


def test_the_node_is_in_the_cluster_and_ready(node):
    assert node.service("kubelet").is_running and node.service("kubelet").is_enabled
    name = node.check_output("hostname")
    # As the node itself (its kubelet's own credentials), through its api_proxy.
    ready = node.check_output(
        f"{NODE_KUBECTL} get node {name} "
        "-o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'"
    )
    assert ready == "True", f"{name} is not Ready"


def test_the_api_answers_through_this_node_s_api_proxy(node, platform):
    answer = node.check_output(
        f"curl -sS --max-time 10 --cacert {kubeadm.PKI_DIR}/ca.crt "
        f"https://{platform.api_endpoint}/readyz"
    )
    assert answer == "ok"


@pytest.mark.roles("control_plane")
def test_every_node_ready_and_the_control_plane_pods_running(node, platform):
    nodes = node.check_output(
        f"{ADMIN_KUBECTL} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}}="
        '{.status.conditions[?(@.type=="Ready")].status} {end}\''
    )
    wanted = {h.name for h in platform.hosts if h.is_kubernetes_node}
    found = dict(pair.split("=") for pair in nodes.split())
    assert set(found) == wanted and set(found.values()) == {"True"}, found
    name = node.check_output("hostname")
    pods = node.check_output(
        f"{ADMIN_KUBECTL} -n kube-system get pods --field-selector spec.nodeName={name} "
        "-o jsonpath='{range .items[*]}{.metadata.name}={.status.phase} {end}'"
    )
    running = dict(pair.split("=") for pair in pods.split())
    for part in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert running.get(f"{part}-{name}") == "Running", (part, running)


@pytest.mark.roles("control_plane")
def test_etcd_has_one_member_per_control_plane(node, platform):
    pki = f"{kubeadm.PKI_DIR}"
    members = node.check_output(
        f"curl -sS --max-time 10 --cacert {pki}/etcd/ca.crt --cert "
        f"{pki}/apiserver-etcd-client.crt --key {pki}/apiserver-etcd-client.key "
        "-X POST -d '{}' https://127.0.0.1:2379/v3/cluster/member/list"
    )
    names = sorted(m["name"] for m in json.loads(members)["members"])
    assert names == sorted(h.name for h in platform.role("control_plane"))


def test_bridge_pod_network_routes_to_every_other_node(node, platform):
    if platform.kubernetes.pod_network != "bridge":
        pytest.skip("kubernetes.pod_network is not bridge")
    assert node.service(pod_network.ROUTES_UNIT).is_enabled
    routes = node.check_output(f"ip route show proto {pod_network.ROUTES_PROTO}")
    others = [h for h in platform.hosts if h.is_kubernetes_node]
    assert routes.count(" via ") == len(others) - 1, routes


@pytest.mark.roles("control_plane")
def test_the_api_server_certificate_names_every_control_plane(node, platform):
    names = node.check_output(
        f"openssl x509 -noout -ext subjectAltName -in {kubeadm.PKI_DIR}/apiserver.crt"
        " | tail -n +2 | tr -d ' '"
    )
    held = {part.split(":", 1)[-1] for part in names.split(",")}
    ip_of = {h.name: str(h.ip) for h in platform.hosts if h.ip is not None}
    if any(cp.name not in ip_of for cp in platform.role("control_plane")):
        pytest.skip("a control plane has no ip in the inventory: its address is not known here")
    assert set(kubeadm.cert_sans(platform, ip_of)) <= held
