"""kubeadm's configuration of each node, rendered from the platform config and the cluster
PKI the deployer owns, so that every node's `kubeadm init` or `join` is known at plan time.

The first control plane (the first host of the control_plane group) initialises the cluster;
the others join as control planes, the workers as workers. Every node reaches the API through
its own api_proxy (`Platform.api_endpoint`) and checks the cluster CA by its hash.
"""

from __future__ import annotations

import shlex

from kubi import kubernetes
from kubi.cluster_pki import ClusterPki
from kubi.config import Host, Platform, matrices
from kubi.templates import render

CONFIG_DIR = "/etc/kubernetes/kubi"
CONFIG = f"{CONFIG_DIR}/kubeadm.yaml"
PKI_DIR = "/etc/kubernetes/pki"
PATCHES_DIR = f"{CONFIG_DIR}/patches"  # kubernetes.kubeadm_patches, copied
ADMIN_CONF = "/etc/kubernetes/admin.conf"
ADMIN_KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"  # on a control plane, as its admin
# The static pods of a control plane, which read certificates when they start.
CONTROL_PLANE_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# curl's options to speak to this control plane's etcd as the API server does.
ETCD_CLIENT = (
    f"--cacert {PKI_DIR}/etcd/ca.crt --cert {PKI_DIR}/apiserver-etcd-client.crt "
    f"--key {PKI_DIR}/apiserver-etcd-client.key"
)
ETCD_MEMBERS = "https://127.0.0.1:2379/v3/cluster/member"  # etcd's JSON gateway: /list, /remove
CRI_SOCKET = "unix:///run/containerd/containerd.sock"

# Every command is given the node's configuration file, never a secret on its command line;
# what kubeadm would print of one (the join command, the certificate key) is not printed.
INIT = (
    f"kubeadm init --config {CONFIG} --upload-certs --skip-token-print --skip-certificate-key-print"
)
JOIN = f"kubeadm join --config {CONFIG}"
# An init or join that did not finish is undone before it runs again. The certificates stay
# (kubeadm reset cleans --cert-dir, here an empty folder): the deployer's cluster PKI, and
# what kubeadm made from it, are used again; kubeadm leaves the CNI files and iptables alone.
KEPT_PKI = f"{CONFIG_DIR}/reset-keeps-pki"
# A node leaving the cluster keeps nothing: its certificates (a control plane's CA keys) go.
RESET = f"kubeadm reset -f --cri-socket {CRI_SOCKET}"
UNDO = (
    f"install -d -m 700 {KEPT_PKI} && kubeadm reset -f --cri-socket {CRI_SOCKET} "
    f"--cert-dir {KEPT_PKI}"
)

# Shell test: kubeadm's init or join finished here. The kubelet then uses its own rotated
# client certificate (written by kubeadm init's last kubelet phase, or by the kubelet once
# its join's TLS bootstrap succeeded); anything of kubeadm's short of that did not finish.
JOINED = "grep -qs kubelet-client-current.pem /etc/kubernetes/kubelet.conf"

PARTS = {
    "init": "first control plane (kubeadm init)",
    "join-control-plane": "control plane (kubeadm join --control-plane)",
    "join": "worker (kubeadm join)",
}


def kind_of(platform: Platform, node: Host) -> str:
    """init, join-control-plane or join."""
    control_planes = platform.role("control_plane")
    if node.name == control_planes[0].name:
        return "init"
    return "join-control-plane" if "control_plane" in node.roles else "join"


def cert_sans(platform: Platform, ip_of: dict[str, str]) -> list[str]:
    """Names the API server's certificate holds: the API name every node uses, its own
    loopback (the proxies' health checks), and each control plane by address and name (the
    input host's API stream connects by address)."""
    names = [platform.api_name, "localhost", "127.0.0.1"]
    for cp in platform.role("control_plane"):
        names += [ip_of[cp.name], cp.name, cp.short_name]
    return list(dict.fromkeys(names))


def config(platform: Platform, node: Host, ip_of: dict[str, str], pki: ClusterPki) -> str:
    """The node's kubeadm configuration file."""
    kind = kind_of(platform, node)
    entry = matrices.kubernetes_minor(platform.versions.kubernetes)
    network = platform.network
    return render(
        "kubernetes",
        "kubeadm.yaml",
        kind=kind,
        part=PARTS[kind],
        api=entry.kubeadm_api,
        v1beta4=entry.kubeadm_api.endswith("/v1beta4"),
        node_name=node.name,
        ip=ip_of[node.name],
        token=pki.bootstrap_token,
        certificate_key=pki.certificate_key,
        ca_cert_hash=pki.discovery_hash,
        skip_phases=[] if platform.kubernetes.coredns else ["addon/coredns"],
        cluster_name=platform.name,
        version=platform.versions.kubernetes,
        endpoint=platform.api_endpoint,
        image_repository=kubernetes.UPSTREAM_IMAGES,
        pod_cidr=str(network.pod_cidr),
        service_cidr=str(network.service_cidr),
        dns_domain=network.cluster_domain,
        cert_sans=cert_sans(platform, ip_of),
        cgroup_driver=platform.containerd.cgroup_driver,
        nodes_are_containers=platform.kubernetes.nodes_are_containers,
        ignore_preflight_errors=platform.kubernetes.ignore_preflight_errors,
        patches_dir=PATCHES_DIR if platform.kubernetes.kubeadm_patches else None,
    )


def wait_for_api(endpoint: str, seconds: int = 90) -> str:
    """Shell that waits, at most `seconds`, for the API at `endpoint` (host:port) to answer
    /readyz through this node's api_proxy, else fails with one line saying why: a join
    would otherwise wait five minutes for a first control plane that failed."""
    tries = seconds // 3
    url = shlex.quote(f"https://{endpoint}/readyz")
    said = shlex.quote(
        f"kubi: the Kubernetes API at {endpoint} did not answer in {seconds} s; did the "
        "first control plane's kubeadm init fail? (see its output above)"
    )
    return (  # one braced command: `a && <this> && b` keeps its meaning
        f"{{ i=0; until curl -skf --max-time 3 -o /dev/null {url}; do i=$((i+1)); "
        f"[ $i -lt {tries} ] || {{ echo {said} >&2; exit 1; }}; sleep 2; done; }}"
    )


def refresh_join(token_id: str) -> str:
    """Before a join: the bootstrap token lives 24 h and the uploaded control-plane
    certificates 2 h, so the first control plane makes both again from its configuration
    file (a token is made, not updated: the old one, named by its public id, goes first),
    after uploading the cluster configuration joins read (a joining control plane's API
    server certificate then names every control plane of the inventory)."""
    return (
        # the ClusterConfiguration joins read: its API server names have the new nodes'
        f"kubeadm init phase upload-config kubeadm --config {CONFIG} "
        f"--kubeconfig {ADMIN_CONF} >/dev/null && "
        f"kubeadm token delete {token_id} --kubeconfig {ADMIN_CONF} >/dev/null 2>&1; "
        f"kubeadm token create --config {CONFIG} --kubeconfig {ADMIN_CONF} >/dev/null && "
        f"kubeadm init phase upload-certs --upload-certs --config {CONFIG} "
        f"--kubeconfig {ADMIN_CONF} >/dev/null"
    )


def until(test: str, said: str, seconds: int) -> str:
    """Shell that runs `test` every 3 s until it succeeds, or fails after `seconds` saying
    `said` (one line). One braced command: `a && <this> && b` keeps its meaning."""
    return (
        f"{{ i=0; until {test}; do i=$((i+3)); "
        f"[ $i -lt {seconds} ] || {{ echo {shlex.quote(said)} >&2; exit 1; }}; sleep 3; done; }}"
    )


def wait_local(url: str, what: str, seconds: int = 180, ca: str | None = None) -> str:
    """Shell that waits for `url` on this node to answer, or fails with one line."""
    trust = f"--cacert {ca}" if ca else "-k"  # -k: a self-signed serving certificate
    return until(
        f"curl -sf --max-time 3 {trust} {url} >/dev/null",
        f"{what} here did not answer {url} within {seconds} s",
        seconds,
    )


def wait_local_api(seconds: int = 180) -> str:
    """Shell that waits for this control plane's own API server to answer /readyz."""
    return wait_local(
        "https://127.0.0.1:6443/readyz", "the API server", seconds, ca=f"{PKI_DIR}/ca.crt"
    )


# The controller manager's and the scheduler's health, on this control plane's loopback.
WAIT_CONTROLLERS = " && ".join(
    (
        wait_local("https://127.0.0.1:10257/healthz", "kube-controller-manager"),
        wait_local("https://127.0.0.1:10259/healthz", "kube-scheduler"),
    )
)


MANIFESTS = "/etc/kubernetes/manifests"
AWAY = f"{CONFIG_DIR}/manifests-away"


def restart_static_pods(names: tuple[str, ...]) -> str:
    """Shell (one subshell) that restarts these static pods, one after the other: each
    manifest leaves the kubelet's folder until its process is gone, then comes back, and
    the kubelet starts a new pod at once (a killed container would wait out the kubelet's
    crash back-off, minutes after a few). A manifest taken away always comes back."""
    back = f'for f in {AWAY}/*.yaml; do [ -e "$f" ] && mv -f "$f" {MANIFESTS}/; done'
    return (
        f"( install -d -m 700 {AWAY} && trap {shlex.quote(back)} EXIT && "
        f"for p in {' '.join(names)}; do mv {MANIFESTS}/$p.yaml {AWAY}/ || exit 1; i=0; "
        "while pgrep -x $p >/dev/null && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done; "
        f"mv {AWAY}/$p.yaml {MANIFESTS}/; done )"
    )


def renamed_apiserver(platform: Platform, node: Host, ip_of: dict[str, str]) -> str:
    """Shell that makes this control plane's API server certificate again, with every name
    `cert_sans` gives today (control planes added since it was made), and restarts the API
    server on it; the old pair comes back if kubeadm fails."""
    pki = PKI_DIR
    sans = ",".join(cert_sans(platform, ip_of))
    make = (
        f"kubeadm init phase certs apiserver --cert-dir {pki} "
        f"--apiserver-advertise-address {ip_of[node.name]} --apiserver-cert-extra-sans {sans} "
        f"--control-plane-endpoint {platform.api_endpoint} "
        f"--kubernetes-version v{platform.versions.kubernetes} "
        f"--service-cidr {platform.network.service_cidr} "
        f"--service-dns-domain {platform.network.cluster_domain}"
    )
    return (
        f"for f in apiserver.crt apiserver.key; do mv -f {pki}/$f {pki}/$f.kubi-old; done; "
        f"if ! out=$({make} 2>&1); then "
        f"for f in apiserver.crt apiserver.key; do mv -f {pki}/$f.kubi-old {pki}/$f; done; "
        'echo "$out" >&2; exit 1; fi; '
        f"rm -f {pki}/apiserver.crt.kubi-old {pki}/apiserver.key.kubi-old; "
        f"{restart_static_pods(('kube-apiserver',))} && {wait_local_api()}"
    )
