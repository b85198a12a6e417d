"""kubernetes: the kubeadm cluster on the control planes and workers.

This stage installs kubeadm, kubelet and kubectl from the minor's channel on pkgs.k8s.io
(key fingerprint pinned, exact version pinned; directly, through the package proxy, or from
`kubernetes.apt_mirror`), puts the deployer's cluster PKI (kubi/cluster_pki.py) into
/etc/kubernetes/pki on the control planes, and writes each node's kubeadm configuration
(kubi/kubeadm.py), which `kubeadm config validate` checks before it is kept. Then, in one
run: the first control plane's `kubeadm init`, the other control planes' joins one at a
time, the workers' joins all at once. A node already in the cluster is left as it is; an
init or join that did not finish is undone (`kubeadm reset`) and run again.

    pyinfra inventories/lab.py deploys/kubernetes.py
"""

from __future__ import annotations

import shlex

from pyinfra import host, logger, state
from pyinfra.operations import server

import kubi.kubernetes
from facts.kubernetes import KubernetesNodeState
from kubi import kubeadm, ops, pod_network
from kubi.cluster_pki import ClusterPki, cluster_pki
from kubi.config import Host, Platform
from kubi.deploy import addresses, component, entry_script, me, platform, vendor_packages
from kubi.secrets import for_platform
from kubi.templates import render


@component("kubernetes")
def kubernetes() -> None:
    cfg, node = platform(), me()
    source = kubi.kubernetes.apt_source(cfg)
    facts = host.get_fact(KubernetesNodeState, keyring=source.keyring)
    running, wanted = facts["kubeadm"], f"v{cfg.versions.kubernetes}"
    if facts["joined"] and running and running != wanted:
        # A converge would move every node's packages at once, kubelets ahead of their
        # API servers: Kubernetes' version skew forbids it.
        said = (
            f"kubi: {node.name} is a node of a cluster at {running} and versions.kubernetes "
            f"says {wanted}: a cluster changes version by an upgrade (control planes first, "
            "one node at a time, kubeadm upgrade), not by a converge; put the running "
            "version back in the inventory"
        )
        server.shell(
            name="Kubernetes version unchanged", commands=[f"echo {shlex.quote(said)} >&2; exit 1"]
        )
        return
    vendor_packages(
        node, [source], facts["keyrings"], cfg.kubernetes.apt_mirror,
        preferences=kubi.kubernetes.PREFERENCES_PATH, subject="Kubernetes",
    )  # fmt: skip
    if facts["partial"]:
        # First, so that the files it removes are written again below.
        server.shell(
            name=f"undo an unfinished kubeadm init or join (it left {facts['partial']})",
            commands=[kubeadm.UNDO],
        )
    pki = cluster_pki(for_platform(cfg))
    if "control_plane" in node.roles:
        for name, content in pki.pki_files().items():
            key = name.endswith(".key")
            ops.file(
                name=f"cluster PKI {name}",
                path=f"{kubeadm.PKI_DIR}/{name}",
                content=content,
                mode="600" if key else "644",
                make_dirs=True,
            )
    ops.file(
        name="kubeadm configuration",
        path=kubeadm.CONFIG,
        content=kubeadm.config(cfg, node, addresses(), pki),
        mode="600",  # the bootstrap token, and on control planes the certificate key
        check=f"kubeadm config validate --config {kubeadm.CONFIG} >/dev/null",
        make_dirs=True,
    )
    patches = cfg.kubernetes.kubeadm_patches
    for patch in sorted(patches.iterdir()) if patches else ():
        ops.file(
            name=f"kubeadm patch {patch.name}",
            path=f"{kubeadm.PATCHES_DIR}/{patch.name}",
            content=patch.read_text(),
            make_dirs=True,
        )
    if cfg.kubernetes.pod_network == "bridge":
        bridge_network(cfg, node)
    join_cluster(cfg, node, facts, pki, state)


def bridge_network(cfg: Platform, node: Host) -> None:
    """The bridge pod network's files (kubi/pod_network.py), before the kubelet starts."""
    ip_of = addresses()
    subnets = pod_network.node_subnets(cfg, ip_of)
    ops.file(
        name="pod network (bridge)",
        path=pod_network.CONFLIST,
        content=render("kubernetes", "bridge.conflist", subnet=str(subnets[node.name])),
        make_dirs=True,
    )
    ops.file(
        name="pod routes script",
        path=pod_network.ROUTES_SCRIPT,
        content=render(
            "kubernetes",
            "kubi-pod-routes.sh",
            proto=pod_network.ROUTES_PROTO,
            routes=pod_network.routes(node.name, subnets, ip_of),
            ip=ip_of[node.name],
            service_cidr=str(cfg.network.service_cidr),
        ),
        mode="755",
        check=f"sh -n {pod_network.ROUTES_SCRIPT}",
        reload=pod_network.ROUTES_SCRIPT,  # the routes now; the unit sets them at boot
    )
    ops.file(
        name="pod routes unit",
        path=f"/etc/systemd/system/{pod_network.ROUTES_UNIT}",
        content=render("kubernetes", "kubi-pod-routes.service", script=pod_network.ROUTES_SCRIPT),
        reload="systemctl daemon-reload",
    )
    ops.service(name="pod routes at boot", unit=pod_network.ROUTES_UNIT)


def join_cluster(cfg: Platform, node: Host, mine: dict, pki: ClusterPki, run) -> None:
    """init, joins, and what a join needs of the first control plane. Each node's state is a
    fact read when pyinfra plans (`mine`: this node's), so only the nodes not yet in the
    cluster do anything."""
    kind = kubeadm.kind_of(cfg, node)
    join = f"{kubeadm.wait_for_api(cfg.api_endpoint)} && {kubeadm.JOIN}"
    if kind == "init":
        if not cfg.kubernetes.coredns:
            logger.warning(
                "kubernetes: kubernetes.coredns is false: CoreDNS is left out (kubeadm skips "
                "its addon/coredns phase); pods get no cluster DNS"
            )
        if not mine["joined"]:
            server.shell(name="kubeadm init (first control plane)", commands=[kubeadm.INIT])
        # Nodes that join in this run need a live token and uploaded certificates.
        elif _waiting(cfg, run):
            server.shell(
                name="bootstrap token and control-plane certificates for the joins",
                commands=[kubeadm.refresh_join(pki.token_id)],
            )
    elif not mine["joined"] and kind == "join-control-plane":
        server.shell(
            name="kubeadm join --control-plane (one at a time)",
            commands=[join],
            _serial=True,  # etcd grows one member at a time
        )
    elif not mine["joined"]:
        server.shell(name="kubeadm join (worker)", commands=[join])
    # Control planes added since its API server certificate was made: its names follow.
    # After the joins in the code: pyinfra runs the first operation of each host after
    # their common ones in line order, so the first control plane's init or refresh must
    # be its first operation here for the joins to come after it.
    if mine["joined"] and mine["apiserver_names"] is not None:
        wanted = kubeadm.cert_sans(cfg, addresses())
        missing = [name for name in wanted if name not in mine["apiserver_names"]]
        if missing:
            server.shell(
                name=f"API server certificate names ({', '.join(missing)} added)",
                commands=[kubeadm.renamed_apiserver(cfg, node, addresses())],
                _serial=True,  # one API server restarts at a time
            )


def _node_state(cfg: Platform, name: str, run) -> dict | None:
    """The KubernetesNodeState of node `name`; None when it is not part of this run."""
    other = run.inventory.get_host(name)
    if other is None or other not in run.activated_hosts or other in run.failed_hosts:
        return None
    return other.get_fact(KubernetesNodeState, keyring=kubi.kubernetes.apt_source(cfg).keyring)


def _waiting(cfg: Platform, run) -> list[str]:
    """Nodes of this run that are not in the cluster yet."""
    waiting = []
    for node in cfg.hosts:
        if node.is_kubernetes_node:
            found = _node_state(cfg, node.name, run)
            if found is not None and not found["joined"]:
                waiting.append(node.name)
    return waiting


if entry_script(__name__):
    kubernetes()
